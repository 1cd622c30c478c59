"""Head edits, the weight arithmetic: remove or reweight named features of the sparse head, optionally refit the rest.

The head is fit on standardized features, `logit = sum_j w_j (x_j - mean_j) / std_j + b`, and stored on raw ones.
An edit acts on that standardized form, as in Wong et al. (2021):

- **remove** feature j: its standardized weight becomes 0 in every class. On raw features that is the feature held
  at its training mean: `W[:, j] = 0` and `b += W[:, j] * mean_j`, so the average logit does not move;
- **reweight** feature j by f (all classes, or {class: f}): the standardized weight is scaled by f, i.e.
  `W[c, j] *= f` and `b[c] += (1 - f) * W[c, j] * mean_j`;
- **refit** (removals only): the remaining weights are refit on the training features kept by `fit_sparse_head`,
  support fixed, at the installed point's lambda, with the solver's own support-restricted refit (the path's
  `refitter`, the one `select(features_per_class=...)` uses). Removed features stay at zero.

Naming a feature the head does not use is an error (nothing would change, which usually means a wrong index).
The before/after measurements and the `EditReport` are the audit layer's: `hf_sparse.audit.edits.edit_features`
(`model.edit_features(...)` on the public classes).

Example:
    >>> removed, factors, record = edit_factors(model, remove=[12], reweight={40: 0.5})
    >>> W, b = edited_weights(model, factors)
    >>> model.install_sparse_head(W.float(), b.float(), selection=model.config.selection)
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

import torch

from .fitting import family_for, prepare_labels


def _check_feature(model, j, what: str) -> int:
    if isinstance(j, bool) or not hasattr(j, "__index__"):
        raise TypeError(f"{what}: feature indices must be integers, got {j!r}")
    j = operator.index(j)
    d = model.sparse_head.in_features
    if not 0 <= j < d:
        raise ValueError(f"{what}: feature {j} is out of range; this head has features 0..{d - 1}.")
    active = set(model.sparse_head.active_features.tolist())
    if j not in active:
        raise ValueError(f"{what}: feature {j} is not used by the sparse head, so editing it changes nothing. "
                         f"The head uses features {sorted(active)}.")
    return j


def _class_id(model, c) -> int:
    names = {str(v).lower(): int(k) for k, v in (model.config.id2label or {}).items()}
    if isinstance(c, str):
        if c.lower() in names:
            return names[c.lower()]
        raise ValueError(f"reweight: {c!r} is not a label of this model ({sorted(names)})")
    c = int(c)
    if not 0 <= c < model.sparse_head.out_features:
        raise ValueError(f"reweight: class {c} is out of range 0..{model.sparse_head.out_features - 1}")
    return c


def edit_factors(model, remove, reweight) -> tuple[list[int], dict[int, torch.Tensor], dict]:
    """Removed features, {feature: (num_labels,) factor per class}, and the reweighting as given (for the record)."""
    k = model.sparse_head.out_features
    remove = [remove] if hasattr(remove, "__index__") and not isinstance(remove, bool) else (remove or [])
    removed = sorted({_check_feature(model, j, "remove") for j in remove})
    factors: dict[int, torch.Tensor] = {}
    record: dict = {}
    if reweight is not None and not isinstance(reweight, Mapping):
        raise TypeError("reweight must be a dict {feature: factor} or {feature: {class: factor}}")
    for j, spec in (reweight or {}).items():
        j = _check_feature(model, j, "reweight")
        if j in removed:
            raise ValueError(f"feature {j} is both removed and reweighted; choose one.")
        f = torch.ones(k, dtype=torch.float64)
        if isinstance(spec, Mapping):
            for c, value in spec.items():
                f[_class_id(model, c)] = float(value)
            record[str(j)] = {str(c): float(v) for c, v in spec.items()}
        else:
            f[:] = float(spec)
            record[str(j)] = float(spec)
        if not bool(torch.isfinite(f).all()):
            raise ValueError(f"reweight: factors for feature {j} must be finite")
        factors[j] = f
    for j in removed:
        factors[j] = torch.zeros(k, dtype=torch.float64)
    if not factors:
        raise ValueError("Nothing to edit: pass remove=[feature, ...] and/or reweight={feature: factor}.")
    return removed, factors, record


def edited_weights(model, factors: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's (W, b) on raw features (float64, CPU) after scaling each standardized weight of feature j by
    `factors[j]` (one factor per class), with the bias moved so that the feature is held at its training mean.

    Example:
        >>> W, b = edited_weights(model, {12: torch.zeros(model.config.num_labels, dtype=torch.float64)})
    """
    head = model.sparse_head
    W = head.weight.detach().double().cpu()
    b = head.bias.detach().double().cpu()
    mean = model.feature_mean.detach().double().cpu()
    for j, f in factors.items():
        b = b + (1 - f) * W[:, j] * mean[j]
        W[:, j] = W[:, j] * f
    return W, b


def _refit(model, W: torch.Tensor, b: torch.Tensor):
    from hf_sparse.solver.path import PathPoint

    path = model.regularization_path
    fit = model.fit_data
    if path is None or fit is None:
        raise ValueError("refit=True needs the regularization path and training features of fit_sparse_head in this "
                         "session (they are not saved with the model); call fit_sparse_head first, or edit without refit.")
    refit = path.refitter
    if refit is None:
        from hf_sparse.solver.refit import make_refitter

        y = prepare_labels(fit.train_features.labels, model.config, family_for(model.config), "training features")
        refit = make_refitter(path, fit.train_features.features.float(), y)
    lam = path.selected.lam if path.selected is not None else float(model.config.selected_lambda)
    support = W != 0
    point = refit(lam, support, PathPoint.from_dense(lam, W.float(), b.float()))
    return point.weight, point.bias, lam


def refit_weights(model, W: torch.Tensor, b: torch.Tensor, removed: list[int]):
    """Refit the nonzero weights of (W, b) on the cached training features, support fixed; returns (W, b, lambda).
    Nothing is installed: a refit that cannot run changes nothing.

    Example:
        >>> W, b, lam = refit_weights(model, *edited_weights(model, factors), removed=[12])
    """
    W_refit, b_refit, lam = _refit(model, W, b)
    if removed and bool((W_refit[:, removed] != 0).any()):
        raise RuntimeError(f"the refit gave removed features {removed} nonzero weights; the edit was not applied.")
    return W_refit, b_refit, lam
