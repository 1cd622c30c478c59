"""`fit_sparse_head`: cache features, fit the elastic-net path, select a point, install it as the head.

The labels and metrics are in `labels.py`, the groups, counterfactuals and worst-group scores in `fit_groups.py`
(their names are importable from here too); the options are declared in `fit_config.py`.

Example:
    >>> path = fit_sparse_head(model, train_ds, eval_dataset=val_ds, features_per_class=5)
    >>> refit_sparse_head(model, groups="has_shortcut", balance="groups")
"""

from __future__ import annotations

import torch

from hf_sparse.features.collapse import check_feature_collapse
from hf_sparse.features.inputs import as_dataset
from hf_sparse.solver.target import FeatureCounts, SparsityTarget

from ..utils import json_safe
from .encode import FitData
from .encoder_head import BASE_KIND_ENCODER, HEAD_NAME
from .fit_config import FIT, REFIT, FitConfig, declared_options
from .fit_groups import augmented_examples, cell_groups, reusable_groups, worst_group_scorer
from .groups import Groups, resolve_groups
from .labels import FAMILY_OF_PROBLEM, family_for, head_metrics, labels_of, prepare_labels

__all__ = [
    "fit_on_cached_features", "fit_sparse_head", "refit_sparse_head", "summarize_path",
    # defined in labels.py and fit_groups.py, importable from here as before
    "FAMILY_OF_PROBLEM", "cell_groups", "family_for", "head_metrics", "prepare_labels", "reusable_groups",
]


def summarize_path(path) -> list[dict]:
    """Per point: lambda, mean and max features per class, distinct features, nnz, train/val accuracy and loss."""
    rows = []
    for point in path:
        m = point.metrics
        counts = FeatureCounts(m.get("features_per_class") or [], m.get("n_features"), m.get("nnz"))
        rows.append(
            json_safe(
                {
                    "lambda": float(point.lam),
                    # saved key names (model configs, the card's plot): "features_per_class" is the mean here
                    "features_per_class": counts.mean_per_class,
                    "max_features_per_class": counts.max_per_class,
                    "n_features": m.get("n_features"),
                    "nnz": m.get("nnz"),
                    "train_accuracy": m.get("train_accuracy"),
                    "val_accuracy": m.get("val_accuracy"),
                    "train_loss": m.get("train_loss"),
                    "val_loss": m.get("val_loss"),
                }
            )
        )
    return rows


def _extract(model, dataset, processor, columns, batch_size, max_length, cache_dir, show_progress, where):
    from hf_sparse.features import extract_features

    if dataset is None:
        return None
    kwargs = dict(
        text_column=columns["text"],
        image_column=columns["image"],
        label_column=columns["label"],
        batch_size=batch_size,
        cache_dir=cache_dir,
        show_progress=show_progress,
    )
    if model.modality == "text":
        kwargs["max_length"] = max_length
    else:
        kwargs["image_processor"] = processor
    # an hf_sparse model is read through the classifier it wraps (`features.locate.wrapped_classifier`)
    return extract_features(model, dataset, processor if model.modality == "text" else None, **kwargs)


@declared_options
def fit_sparse_head(
    model,
    train_dataset,
    eval_dataset=None,
    *,
    tokenizer=None,
    image_processor=None,
    text_column: str = "text",
    image_column: str = "image",
    label_column: str = "label",
    features_per_class: int | None = None,
    max_accuracy_drop: float | None = None,
    lam: float | None = None,
    relax: bool = False,
    groups=None,
    eval_groups=None,
    balance: str | None = None,
    sample_weight=None,
    augment=None,
    selection_metric: str | None = None,
    alpha: float = 0.99,
    n_lambdas: int = 100,
    lambda_min_ratio: float = 1e-3,
    whole_path: bool = True,
    solver_kwargs: dict | None = None,
    max_length: int | None = None,
    batch_size: int = 64,
    cache_dir: str | None = None,
    progress: bool = False,
):
    """Fit the model's sparse head on its own features and install the selected point.

    1. caches the input of the model's final linear layer over `train_dataset` (and `eval_dataset`) with
       `hf_sparse.features.extract_features` (a second call reuses the cache);
    2. fits the elastic-net path (`hf_sparse.solver.fit_path`, family from the model's `problem_type`:
       multinomial, multilabel, or gaussian for regression);
    3. selects the point of the sparsity target (exactly one of `features_per_class`, `max_accuracy_drop`, `lam`:
       a `hf_sparse.solver.target.SparsityTarget`), with `relax` (see `RegularizationPath.select`);
    4. installs it as the head, records the fit in `model.config` (selection, path summary, dense and sparse
       metrics on `eval_dataset`, or on `train_dataset` without one) and returns the path.

    `groups`, `balance`, `sample_weight` and `augment` fix a shortcut or a bias (last-layer retraining, Kirichenko
    et al. 2022). The keyword options are the fields of `hf_sparse.modeling.fit_config.FitConfig`, documented
    there (listed below); an unknown keyword is a TypeError listing them.

    Example:
        ```python
        >>> path = model.fit_sparse_head(train_ds, eval_dataset=val_ds, text_column="sentence", features_per_class=5)
        >>> model.config.dense_metrics["accuracy"], model.config.sparse_metrics["accuracy"]
        >>> model.fit_sparse_head(train_ds, eval_dataset=val_ds, features_per_class=5, relax=True,
        ...                       groups=contains_word("tuesday"), balance="groups")
        ```
    """
    config = FitConfig(**{name: value for name, value in locals().items() if name in FitConfig.names(FIT)})
    target = config.target()
    train_dataset, eval_dataset = as_dataset(train_dataset), as_dataset(eval_dataset)
    processor = tokenizer if model.modality == "text" else image_processor
    if processor is None:
        processor = tokenizer if tokenizer is not None else image_processor
    if processor is None:
        processor = model.processor
    if processor is None:
        arg = "tokenizer" if model.modality == "text" else "image_processor"
        raise ValueError(f"No {arg} was found with this model (in its folder or its base model's); pass {arg}=.")
    model.processor = processor

    columns = {"text": text_column, "image": image_column, "label": label_column}
    extract = dict(batch_size=batch_size, max_length=max_length, cache_dir=cache_dir, show_progress=progress)
    train = _extract(model, train_dataset, processor, columns, where="train_dataset", **extract)
    val = _extract(model, eval_dataset, processor, columns, where="eval_dataset", **extract)
    fit = FitData(train, train_dataset, val, eval_dataset, text_column, image_column, label_column)
    return fit_on_cached_features(model, fit, target, config)


def fit_on_cached_features(model, fit: FitData, target: SparsityTarget | dict, fit_config: FitConfig | None = None,
                           **options):
    """Steps 2-4 of `fit_sparse_head` on features already cached (`fit`: a `FitData`); returns the path.

    `target`: the sparsity target (a `SparsityTarget` or `{rule: value}`); `fit_config`: the options (a
    `FitConfig`), with `options` (its field names) replacing some. `model.refit_sparse_head(...)` calls this with
    the features of the last fit: a fix costs no encoder pass over rows already cached.

    Example:
        >>> fit_on_cached_features(model, model.fit_data, {"features_per_class": 2}, groups="group", balance="groups")
    """
    from hf_sparse.solver import fit_path
    from hf_sparse.solver.balance import group_balanced_weights, worst_group_accuracy
    from hf_sparse.solver.select import select_point

    target = SparsityTarget.coerce(target)
    fit_config = FitConfig.build(fit_config, where="fit_on_cached_features", **options)
    relax, groups, eval_groups, balance = fit_config.relax, fit_config.groups, fit_config.eval_groups, fit_config.balance
    sample_weight, augment, alpha = fit_config.sample_weight, fit_config.augment, fit_config.alpha
    progress = fit_config.progress
    config = model.config
    family = family_for(config)
    train, val = fit.train_features, fit.eval_features
    y = labels_of(train, config, family, "train_dataset", every_class=True)
    X = train.features.float()
    X_val = y_val = None
    if val is not None:
        y_val = labels_of(val, config, family, "eval_dataset")
        X_val = val.features.float()
    if eval_groups is None and val is not None:
        eval_groups = reusable_groups(groups)
    where = dict(modality=model.modality, text_column=fit.text_column, image_column=fit.image_column)
    train_groups = None if groups is None else resolve_groups(groups, fit.train_dataset, train.indices,
                                                              where="groups", **where)
    val_groups = None
    if eval_groups is not None:
        if val is None:
            raise ValueError("eval_groups= needs eval_dataset= (the held-out data that worst-group accuracy is "
                             "measured on).")
        val_groups = resolve_groups(eval_groups, fit.eval_dataset, val.indices, where="eval_groups", **where)

    weights = None
    if sample_weight is not None:
        weights = torch.as_tensor(sample_weight, dtype=torch.float64).flatten()
        if weights.shape[0] != len(fit.train_dataset):
            raise ValueError(f"sample_weight has {weights.shape[0]} entries for {len(fit.train_dataset)} training "
                             "examples.")
        weights = weights[train.indices]
    if balance is not None:
        if family != "multinomial":
            raise ValueError("balance= needs a single-label classifier (one class id per example).")
        if balance != "labels" and train_groups is None:
            raise ValueError(f"balance={balance!r} needs groups= (a column, values or a function saying which group "
                             "each training example is in), e.g. groups=contains_word('tuesday').")
    augmented = None
    if augment is not None:
        augmented = augmented_examples(model, fit, augment, y, None if train_groups is None else train_groups.ids,
                               fit_config.batch_size, fit_config.max_length)
        if augmented is not None:
            X_new, y_new, g_new, source = augmented
            # An example and its counterfactuals share the example's weight: versions of one text must not
            # multiply its weight (that would upweight whatever mentions the swapped terms, shifting calibration).
            share = 1.0 / (1.0 + torch.bincount(source, minlength=X.shape[0]).double())
            base = torch.ones(X.shape[0], dtype=torch.float64) if weights is None else weights
            weights = torch.cat([base * share, base[source] * share[source]])
            X, y = torch.cat([X, X_new]), torch.cat([y, y_new])
            if train_groups is not None:
                train_groups = Groups(torch.cat([train_groups.ids, g_new]), train_groups.names)
    if balance is not None:
        weights = group_balanced_weights(None if train_groups is None else train_groups.ids, y, balance=balance,
                                         base_weight=weights)

    label_names = {int(i): str(n) for i, n in (config.id2label or {}).items()}
    metric = fit_config.selection_metric or ("worst_group_accuracy" if val_groups is not None else "accuracy")
    val_cells = None
    if val_groups is not None and family == "multinomial":
        val_cells = cell_groups(val_groups, y_val, label_names)
        score = worst_group_scorer(X_val, y_val, val_cells)
    elif metric == "worst_group_accuracy":
        raise ValueError("selection_metric='worst_group_accuracy' needs eval_groups= (and eval_dataset=) on a "
                         "single-label classifier.")

    else:
        score = None
    fit_kwargs = dict(fit_config.solver_kwargs or {})
    if family == "multinomial":
        fit_kwargs.setdefault("n_classes", config.num_labels)
    if target.features_per_class is not None and not fit_config.whole_path:  # the denser rest is not needed
        fit_kwargs.setdefault("stop_at_features_per_class", target.features_per_class)
    path = fit_path(
        X, y, family=family, alpha=alpha, n_lambdas=fit_config.n_lambdas, lambda_min_ratio=fit_config.lambda_min_ratio,
        X_val=X_val, y_val=y_val, sample_weight=weights, progress=progress, **fit_kwargs,
    )
    if score is not None:
        for point in path:
            point.metrics["val_worst_group_accuracy"] = score(point)
    use_score = score if metric == "worst_group_accuracy" else None
    index = select_point(path, target, relax=relax, score=use_score, score_name="val_worst_group_accuracy")
    point = path.selected if path.selected is not None else path[index]

    selection = {"method": target.rule, "value": target.value, "index": int(index)}
    selection.update(json_safe({k: v for k, v in (path.selection or {}).items() if k not in selection}))
    selection["path_stop_reason"] = (path.info or {}).get("stop_reason")  # None: the whole lambda grid was fitted
    if balance is not None or augmented is not None or sample_weight is not None:
        selection["training"] = json_safe({
            "balance": balance, "groups": None if train_groups is None else train_groups.names,
            "augmented_examples": 0 if augmented is None else len(augmented[3]),
            "sample_weight": sample_weight is not None, "selection_metric": metric})
    model.install_sparse_head(point.weight, point.bias, feature_mean=path.mean, feature_std=path.std, selection=selection)

    X_eval, y_eval, split = (X_val, y_val, "eval") if X_val is not None else (X[: train.features.shape[0]],
                                                                           y[: train.features.shape[0]], "train")
    with torch.no_grad():
        dense_logits = model.dense_head(X_eval.to(model.dense_head.weight))
        sparse_logits = model.sparse_head(X_eval.to(model.sparse_head.values))
    head = model.head_summary()
    dense_metrics = head_metrics(dense_logits, y_eval, family)
    dense_metrics.update(split=split, n_examples=int(X_eval.shape[0]), features_per_class=float(X.shape[1]),
                         n_features=int(X.shape[1]))
    sparse_metrics = head_metrics(sparse_logits, y_eval, family)
    sparse_metrics.update(split=split, n_examples=int(X_eval.shape[0]), features_per_class=head["mean_features_per_class"],
                          n_features=head["n_features"], nnz=head["nnz"])
    if val_cells is not None:
        for metrics, logits in ((dense_metrics, dense_logits), (sparse_metrics, sparse_logits)):
            correct = logits.argmax(1) == y_eval
            metrics["worst_group_accuracy"] = worst_group_accuracy(correct, val_cells.ids)

    config.family = family
    config.alpha = float(alpha)
    config.selected_lambda = float(point.lam)
    config.path_summary = summarize_path(path)
    config.dense_metrics = json_safe(dense_metrics)
    config.sparse_metrics = json_safe(sparse_metrics)
    config.feature_source = f"input of {config.head_module} (the final nn.Linear of {config.base_architecture})"
    if getattr(config, "base_kind", None) == BASE_KIND_ENCODER:
        # The dense classifier of an encoder is the zero placeholder of `from_encoder`: there is no dense head to
        # compare with, so only where the metrics were taken is kept (the card reads it from here). Here rather than
        # in the model's method, so that a refit (`refit_sparse_head`, `balanced_refit`) does the same.
        config.dense_metrics = {k: dense_metrics[k] for k in ("split", "n_examples")} | {
            "note": "no dense head: a pretrained encoder (from_encoder)"}
        config.feature_source = (f"{config.pooling} pooling of the {config.base_architecture} encoder's output (the "
                                 f"input of its linear {HEAD_NAME})")
    config.standardization = {
        "method": "train mean/std, folded into the head's weights (the head takes raw features)",
        "buffers": ["feature_mean", "feature_std"],
        "n_train": int(X.shape[0]),
        "n_eval": None if X_val is None else int(X_val.shape[0]),
        "label_counts": _label_counts(y[: train.features.shape[0]], family, label_names),
    }
    collapse = check_feature_collapse(train.features, model.sparse_head.active_features.tolist())
    config.feature_health = json_safe({"top_direction_share": collapse.top_share,
                                    "participation_ratio": collapse.participation_ratio,
                                    "collapsed": collapse.collapsed,
                                    "near_duplicate_features": collapse.duplicate_groups})
    model.regularization_path = path
    model.fit_data = fit
    return path


def _label_counts(y, family: str, names: dict) -> dict | None:
    """{label name: training examples of it} (multilabel: examples carrying it); None for regression."""
    if family == "multinomial":
        counts = torch.bincount(y.long().flatten(), minlength=len(names)).tolist()
    elif family == "multilabel":
        counts = [int(c) for c in (y > 0.5).sum(0).tolist()]
    else:
        return None
    return {names.get(i, str(i)): int(c) for i, c in enumerate(counts)}


@declared_options
def refit_sparse_head(
    model,
    *,
    features_per_class: int | None = None,
    max_accuracy_drop: float | None = None,
    lam: float | None = None,
    relax: bool = False,
    groups=None,
    eval_groups=None,
    balance: str | None = None,
    sample_weight=None,
    augment=None,
    selection_metric: str | None = None,
    alpha: float | None = None,
    n_lambdas: int = 100,
    lambda_min_ratio: float = 1e-3,
    whole_path: bool = True,
    solver_kwargs: dict | None = None,
    max_length: int | None = None,
    batch_size: int = 64,
    progress: bool = False,
):
    """Fit the head again on the features cached by the last `fit_sparse_head` (no encoder pass), e.g. with
    group-balanced weights; returns the new path. The options are `fit_sparse_head`'s (`FitConfig`'s fields), except
    two defaults: without a sparsity target the last fit's is reused, and `alpha=None` is the last fit's alpha.

    Example:
        ```python
        >>> model.refit_sparse_head(groups="has_shortcut", balance="groups", relax=True)
        ```
    """
    values = {name: value for name, value in locals().items() if name in FitConfig.names(REFIT)}
    fit = model.fit_data
    if fit is None:
        raise ValueError("refit_sparse_head works on the features cached by fit_sparse_head in this session; call "
                         "model.fit_sparse_head(train_dataset, eval_dataset, ...) first (its features are cached, so "
                         "a second call with the same data runs no forward pass).")
    if features_per_class is None and max_accuracy_drop is None and lam is None:
        last = model.config.selection or {}
        method, value = last.get("method"), last.get("value")
        if method not in ("features_per_class", "max_accuracy_drop", "lam"):
            raise ValueError("Pass features_per_class=, max_accuracy_drop= or lam=: the last fit's rule is unknown.")
        values[method] = value
    if alpha is None:
        values["alpha"] = model.config.alpha if getattr(model.config, "alpha", None) else FitConfig.default("alpha")
    config = FitConfig(**values)
    return fit_on_cached_features(model, fit, config.target(), config)


fit_sparse_head.__doc__ += "\n" + FitConfig.docs(FIT)
refit_sparse_head.__doc__ += "\n" + FitConfig.docs(REFIT)
