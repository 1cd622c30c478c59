"""`fit_sparse_head` and `refit_sparse_head` on the model: the functions of `hf_sparse.modeling.fitting` themselves,
so the method has their typed, documented keywords (help() and IDEs show them) and refuses unknown ones.

Example:
    >>> path = model.fit_sparse_head(train_ds, eval_dataset=val_ds, text_column="sentence", features_per_class=5)
    >>> model.refit_sparse_head(groups="group", balance="groups")
"""

from __future__ import annotations

from . import fitting


class FittingMixin:
    """Fitting the sparse head (mixed into `SparseHeadPreTrainedModel`).

    `fit_sparse_head(train_dataset, eval_dataset=None, **options)`: cache features, fit the elastic-net path,
    select a point and install it as the head; returns the regularization path. `refit_sparse_head(**options)`:
    fit the head again on the features cached by the last fit (no encoder pass), e.g. `groups=...,
    balance="groups"` to undo a shortcut (`hf_sparse.audit.balanced_refit` does the same and reports before/after).
    The options are `hf_sparse.modeling.fit_config.FitConfig`'s fields.
    """

    fit_sparse_head = fitting.fit_sparse_head
    refit_sparse_head = fitting.refit_sparse_head
