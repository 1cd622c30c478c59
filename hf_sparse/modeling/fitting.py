"""`fit_sparse_head`: cache features, fit the elastic-net path, select a point, install it as the head."""

from __future__ import annotations

import math
from typing import Any

import torch

from hf_sparse.features.collapse import check_feature_collapse

from .encode import FitData
from .groups import Groups, resolve_groups

FAMILY_OF_PROBLEM = {
    "multi_label_classification": "multilabel",
    "regression": "gaussian",
    "single_label_classification": "multinomial",
}


def family_for(config) -> str:
    """The solver family for a model's `problem_type` (multilabel, gaussian for regression, else multinomial)."""
    if config.problem_type in FAMILY_OF_PROBLEM:
        return FAMILY_OF_PROBLEM[config.problem_type]
    return "gaussian" if config.num_labels == 1 else "multinomial"


def prepare_labels(raw, config, family: str, where: str, *, every_class: bool = False) -> torch.Tensor:
    """Check labels against the model's labels and return them as the solver wants them.

    Class ids must lie in `[0, num_labels)`; label names are mapped through `config.label2id`; multi-label targets
    must be (n, num_labels) 0/1; regression targets are floats with `num_labels` columns. `every_class=True`
    (training labels): every class of a single-label model must occur, else the head would have classes it never
    learned (e.g. labels {3, 7} on an 8-class model).
    """
    k = config.num_labels
    names = {int(i): n for i, n in (config.id2label or {}).items()}
    if raw is None:
        raise ValueError(f"{where} has no labels: pass label_column= naming the column that holds them.")
    if isinstance(raw, torch.Tensor):
        values = raw
    else:
        values = list(raw)
        if values and isinstance(values[0], str):
            label2id = dict(config.label2id or {})
            unknown = sorted({v for v in values if v not in label2id})
            if unknown:
                raise ValueError(
                    f"{where} has label values {unknown[:10]} that are not labels of this model "
                    f"({sorted(label2id)}). Map them to the model's labels first."
                )
            values = [label2id[v] for v in values]
        values = torch.as_tensor(values)
    if family == "multinomial":
        if values.dim() != 1:
            raise ValueError(
                f"{where}: a single-label classifier needs one class id per example; got labels of shape "
                f"{tuple(values.shape)}. Is the model's problem_type multi_label_classification?"
            )
        if values.is_floating_point():
            if not bool(torch.all(values == values.round())):
                raise ValueError(f"{where}: labels must be class ids (integers); got non-integer values.")
        values = values.long()
        bad = values[(values < 0) | (values >= k)]
        if bad.numel():
            raise ValueError(
                f"{where} has label values {sorted(set(bad.tolist()))[:10]} outside this model's labels "
                f"0..{k - 1} ({names}). Map them to the model's labels (or fine-tune a model with these labels)."
            )
        absent = sorted(set(range(k)) - set(values.unique().tolist())) if every_class and k > 1 else []
        if absent:
            present = sorted(set(values.unique().tolist()))
            raise ValueError(
                f"{where} has no example of {len(absent)} of this model's {k} classes ({[names.get(c, c) for c in absent][:10]}"
                f"{'...' if len(absent) > 10 else ''}): its labels are only {present[:10]}, so the head would never "
                "predict those classes. Give training data with every class, or a model with only these classes "
                f"(e.g. from_encoder(..., num_labels={len(present)}) with the labels renumbered 0..{len(present) - 1})."
            )
        return values
    if family == "multilabel":
        if values.dim() != 2 or values.shape[1] != k:
            raise ValueError(
                f"{where}: a multi-label model with {k} labels needs (n, {k}) 0/1 targets; got shape "
                f"{tuple(values.shape)}."
            )
        values = values.float()
        if bool(((values < 0) | (values > 1)).any()):
            raise ValueError(f"{where}: multi-label targets must be 0/1 (or probabilities in [0, 1]).")
        return values
    values = values.float()
    if k > 1 and (values.dim() != 2 or values.shape[1] != k):
        raise ValueError(f"{where}: a regression model with {k} outputs needs (n, {k}) targets; got {tuple(values.shape)}.")
    if k == 1 and values.dim() == 2:
        if values.shape[1] != 1:
            raise ValueError(f"{where}: a regression model with one output needs (n,) targets; got {tuple(values.shape)}.")
        values = values[:, 0]
    return values


def _labels_of(feats, config, family, where, every_class: bool = False):
    try:
        labels = feats.labels
    except (TypeError, ValueError, RuntimeError):  # e.g. a column of label names
        labels = feats.dataset["label"]
    return prepare_labels(labels, config, family, where, every_class=every_class)


def head_metrics(logits: torch.Tensor, y: torch.Tensor, family: str) -> dict[str, float]:
    """Accuracy and loss (classification) or mean squared error and R^2 (regression) of logits."""
    logits = logits.double()
    if family == "multinomial":
        loss = torch.nn.functional.cross_entropy(logits, y)
        return {"accuracy": float((logits.argmax(1) == y).double().mean()), "loss": float(loss)}
    if family == "multilabel":
        yd = y.double()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yd)
        acc = ((logits > 0) == (yd > 0.5)).double().mean()
        exact = ((logits > 0) == (yd > 0.5)).all(1).double().mean()
        return {"accuracy": float(acc), "exact_match": float(exact), "loss": float(loss)}
    pred = logits[:, 0] if logits.shape[1] == 1 and y.dim() == 1 else logits
    yd = y.double().reshape(pred.shape)
    mse = float(((pred - yd) ** 2).mean())
    var = float(((yd - yd.mean(0)) ** 2).mean())
    return {"mse": mse, "r2": 1.0 - mse / var if var > 0 else math.nan}


def _clean(value: Any) -> Any:
    """JSON-safe copy (floats that are NaN/inf become None)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _clean(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def summarize_path(path) -> list[dict]:
    """Per point: lambda, mean and max features per class, distinct features, nnz, train/val accuracy and loss."""
    rows = []
    for point in path:
        m = point.metrics
        per_class = m.get("features_per_class") or []
        rows.append(
            _clean(
                {
                    "lambda": float(point.lam),
                    "features_per_class": (sum(per_class) / len(per_class)) if per_class else 0.0,
                    "max_features_per_class": max(per_class) if per_class else 0,
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
    if model._modality == "text":
        kwargs["max_length"] = max_length
    else:
        kwargs["image_processor"] = processor
    with model.dense_head_installed() as base:
        return extract_features(base, dataset, processor if model._modality == "text" else None, **kwargs)


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
    max_length: int | None = None,
    batch_size: int = 64,
    cache_dir: str | None = None,
    solver_kwargs: dict | None = None,
    progress: bool = False,
):
    """Fit the model's sparse head on its own features and install the selected point.

    1. caches the input of the model's final linear layer over `train_dataset` (and `eval_dataset`) with
       `hf_sparse.features.extract_features` (a second call reuses the cache);
    2. fits the elastic-net path (`hf_sparse.solver.fit_path`, family from the model's `problem_type`:
       multinomial, multilabel, or gaussian for regression) with `alpha`, `n_lambdas`, `lambda_min_ratio`;
    3. selects one point: `features_per_class=k` (exactly k features per class, refit), `max_accuracy_drop=d`
       (the sparsest point within d of the path's best validation accuracy), or `lam=x`; `relax=True` refits
       the selected support with a light penalty and keeps it if better (see `RegularizationPath.select`);
    4. installs it as the head, records the fit in `model.config` (selection, path summary, dense and sparse
       metrics on `eval_dataset`, or on `train_dataset` without one) and returns the path.

    Fixing a shortcut or a bias (last-layer retraining, Kirichenko et al. 2022):

    - `groups`: which group each training example is in (a column name, one value per example, or a function of
      the text/image such as `hf_sparse.audit.contains_word("tuesday")`); with `balance="groups"` every
      (group, label) cell gets the same total weight (`"labels"`: every class; `"group"`: every group);
    - `eval_groups`: the same for `eval_dataset` (default: `groups` when it is a column name or a function and
      there is an `eval_dataset`); the
      path then records worst-group accuracy, and `selection_metric="worst_group_accuracy"` (the default when
      eval groups are known) makes `max_accuracy_drop` and `relax` judge points by it;
    - `sample_weight`: your own row weights (multiplied with the balancing weights);
    - `augment`: a function text -> list of counterfactual texts (e.g. `hf_sparse.audit.identity_swaps()`):
      each is encoded and added to the training features with the original example's label and group
      (only these new texts pass through the encoder).

    The tokenizer (text) or image processor (images) is loaded from the model's path unless given.

    Example:
        ```python
        >>> path = model.fit_sparse_head(train_ds, eval_dataset=val_ds, text_column="sentence", features_per_class=5)
        >>> model.config.dense_metrics["accuracy"], model.config.sparse_metrics["accuracy"]
        >>> model.fit_sparse_head(train_ds, eval_dataset=val_ds, features_per_class=5, relax=True,
        ...                       groups=contains_word("tuesday"), balance="groups")
        ```
    """
    chosen = selection_target(features_per_class, max_accuracy_drop, lam)
    train_dataset, eval_dataset = _as_dataset(train_dataset), _as_dataset(eval_dataset)
    processor = tokenizer if model._modality == "text" else image_processor
    if processor is None:
        processor = tokenizer if tokenizer is not None else image_processor
    if processor is None:
        processor = model.processor
    if processor is None:
        arg = "tokenizer" if model._modality == "text" else "image_processor"
        raise ValueError(f"No {arg} was found with this model (in its folder or its base model's); pass {arg}=.")
    model.processor = processor

    columns = {"text": text_column, "image": image_column, "label": label_column}
    extract = dict(batch_size=batch_size, max_length=max_length, cache_dir=cache_dir, show_progress=progress)
    train = _extract(model, train_dataset, processor, columns, where="train_dataset", **extract)
    val = _extract(model, eval_dataset, processor, columns, where="eval_dataset", **extract)
    fit = FitData(train, train_dataset, val, eval_dataset, text_column, image_column, label_column)
    return fit_on_cached_features(
        model, fit, chosen, relax=relax, groups=groups, eval_groups=eval_groups, balance=balance,
        sample_weight=sample_weight, augment=augment, selection_metric=selection_metric, alpha=alpha,
        n_lambdas=n_lambdas, lambda_min_ratio=lambda_min_ratio, solver_kwargs=solver_kwargs, progress=progress,
        batch_size=batch_size, max_length=max_length,
    )


def _as_dataset(data):
    """A pandas DataFrame becomes a `datasets.Dataset` (its index dropped); anything else is returned as it is."""
    if type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "columns"):
        from datasets import Dataset

        return Dataset.from_pandas(data, preserve_index=False)
    return data


def selection_target(features_per_class=None, max_accuracy_drop=None, lam=None) -> dict:
    """{name: value} of the one selection rule given; a clear error otherwise."""
    chosen = {k: v for k, v in dict(features_per_class=features_per_class, max_accuracy_drop=max_accuracy_drop,
                                    lam=lam).items() if v is not None}
    if len(chosen) != 1:
        raise ValueError(
            "Pass exactly one of features_per_class= (e.g. 5), max_accuracy_drop= (e.g. 0.01) or lam= to choose "
            f"the point of the path to install; got {sorted(chosen) or 'none'}."
        )
    if features_per_class is not None and (int(features_per_class) != features_per_class or features_per_class < 1):
        raise ValueError(f"features_per_class must be a positive integer, got {features_per_class!r}")
    return chosen


def reusable_groups(groups):
    """`groups` when it also names the groups of another dataset (a column name or a function of the text or
    image), else None (values given row by row belong to one dataset)."""
    return groups if isinstance(groups, str) or callable(groups) else None


def cell_groups(groups: Groups, y: torch.Tensor, label_names: dict) -> Groups:
    """(group, label) cells as groups, named "group / label": what worst-group accuracy is taken over."""
    cells, ids = {}, []
    for g, c in zip(groups.ids.tolist(), y.tolist()):
        ids.append(cells.setdefault((g, int(c)), len(cells)))
    names = [None] * len(cells)
    for (g, c), i in cells.items():
        names[i] = f"{groups.name_of(g)} / {label_names.get(c, c)}"
    return Groups(torch.tensor(ids, dtype=torch.long), names)


def _augmented(model, fit: FitData, augment, y, groups, weights, batch_size, max_length):
    """Counterfactual texts of each training example, encoded, with its label, group and weight."""
    if model._modality != "text":
        raise TypeError("augment= makes counterfactual texts: it needs a text model.")
    texts = fit.train_dataset[fit.text_column]
    rows = fit.train_features.indices.tolist()
    new_texts, source = [], []
    for i, r in enumerate(rows):
        for t in augment(str(texts[r])) or []:
            if t != texts[r]:
                new_texts.append(t)
                source.append(i)
    if not new_texts:
        return None
    X_new = model.encode(new_texts, batch_size=batch_size, max_length=max_length)
    src = torch.tensor(source)
    return (X_new, y[src], None if groups is None else groups[src], None if weights is None else weights[src],
            len(new_texts))


def _worst_group_scorer(X_val, y_val, cells: Groups):
    """point -> the worst (group, label) cell's accuracy of its head on the evaluation features."""
    from hf_sparse.solver.balance import worst_group_accuracy

    def score(point) -> float:
        correct = (X_val @ point.weight.T.float() + point.bias.float()).argmax(1) == y_val
        return worst_group_accuracy(correct, cells.ids)

    return score


def fit_on_cached_features(model, fit: FitData, chosen: dict, *, relax=False, groups=None, eval_groups=None,
                           balance=None, sample_weight=None, augment=None, selection_metric=None, alpha=0.99,
                           n_lambdas=100, lambda_min_ratio=1e-3, solver_kwargs=None, progress=False,
                           batch_size=64, max_length=None):
    """Steps 2-4 of `fit_sparse_head` on features already cached (`fit`: a `FitData`); returns the path.

    `model.refit_sparse_head(...)` calls this with the features of the last fit: a fix costs no encoder pass
    over rows already cached.
    """
    from hf_sparse.solver import fit_path
    from hf_sparse.solver.balance import BALANCE_MODES, group_balanced_weights, worst_group_accuracy

    config = model.config
    family = family_for(config)
    train, val = fit.train_features, fit.eval_features
    y = _labels_of(train, config, family, "train_dataset", every_class=True)
    X = train.features.float()
    X_val = y_val = None
    if val is not None:
        y_val = _labels_of(val, config, family, "eval_dataset")
        X_val = val.features.float()
    if eval_groups is None and val is not None:
        eval_groups = reusable_groups(groups)
    where = dict(modality=model._modality, text_column=fit.text_column, image_column=fit.image_column)
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
        if balance not in BALANCE_MODES:
            raise ValueError(f"balance must be one of {BALANCE_MODES} or None; got {balance!r}.")
        if family != "multinomial":
            raise ValueError("balance= needs a single-label classifier (one class id per example).")
        if balance != "labels" and train_groups is None:
            raise ValueError(f"balance={balance!r} needs groups= (a column, values or a function saying which group "
                             "each training example is in), e.g. groups=contains_word('tuesday').")
    augmented = None
    if augment is not None:
        augmented = _augmented(model, fit, augment, y, None if train_groups is None else train_groups.ids,
                               weights, batch_size, max_length)
        if augmented is not None:
            X_new, y_new, g_new, w_new, _ = augmented
            X, y = torch.cat([X, X_new]), torch.cat([y, y_new])
            if train_groups is not None:
                train_groups = Groups(torch.cat([train_groups.ids, g_new]), train_groups.names)
            if weights is not None:
                weights = torch.cat([weights, w_new])
    if balance is not None:
        balanced = group_balanced_weights(None if train_groups is None else train_groups.ids, y, balance=balance)
        weights = balanced if weights is None else weights * balanced

    label_names = {int(i): str(n) for i, n in (config.id2label or {}).items()}
    metric = selection_metric or ("worst_group_accuracy" if val_groups is not None else "accuracy")
    if metric not in ("accuracy", "worst_group_accuracy"):
        raise ValueError(f"selection_metric must be 'accuracy' or 'worst_group_accuracy'; got {metric!r}.")
    val_cells = None
    if val_groups is not None and family == "multinomial":
        val_cells = cell_groups(val_groups, y_val, label_names)
        score = _worst_group_scorer(X_val, y_val, val_cells)
    elif metric == "worst_group_accuracy":
        raise ValueError("selection_metric='worst_group_accuracy' needs eval_groups= (and eval_dataset=) on a "
                         "single-label classifier.")

    else:
        score = None
    fit_kwargs = dict(solver_kwargs or {})
    if family == "multinomial":
        fit_kwargs.setdefault("n_classes", config.num_labels)
    if "features_per_class" in chosen:  # the denser rest of the path is not needed
        fit_kwargs.setdefault("stop_at_features_per_class", chosen["features_per_class"])
    path = fit_path(
        X, y, family=family, alpha=alpha, n_lambdas=n_lambdas, lambda_min_ratio=lambda_min_ratio,
        X_val=X_val, y_val=y_val, sample_weight=weights, progress=progress, **fit_kwargs,
    )
    if score is not None:
        for point in path:
            point.metrics["val_worst_group_accuracy"] = score(point)
    use_score = score if metric == "worst_group_accuracy" else None
    index = path.select(**chosen, relax=relax, score=use_score, score_name="val_worst_group_accuracy")
    point = path.selected if path.selected is not None else path[index]

    selection = {"method": next(iter(chosen)), "value": next(iter(chosen.values())), "index": int(index)}
    selection.update(_clean({k: v for k, v in (path.selection or {}).items() if k not in selection}))
    if balance is not None or augmented is not None or sample_weight is not None:
        selection["training"] = _clean({
            "balance": balance, "groups": None if train_groups is None else train_groups.names,
            "augmented_examples": 0 if augmented is None else augmented[4],
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
    config.dense_metrics = _clean(dense_metrics)
    config.sparse_metrics = _clean(sparse_metrics)
    config.feature_source = f"input of {config.head_module} (the final nn.Linear of {config.base_architecture})"
    config.standardization = {
        "method": "train mean/std, folded into the head's weights (the head takes raw features)",
        "buffers": ["feature_mean", "feature_std"],
        "n_train": int(X.shape[0]),
        "n_eval": None if X_val is None else int(X_val.shape[0]),
    }
    collapse = check_feature_collapse(train.features, model.sparse_head.active_features.tolist())
    config.feature_health = _clean({"top_direction_share": collapse.top_share,
                                    "participation_ratio": collapse.participation_ratio,
                                    "collapsed": collapse.collapsed,
                                    "near_duplicate_features": collapse.duplicate_groups})
    model.regularization_path = path
    model.fit_data = fit
    return path


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
    solver_kwargs: dict | None = None,
    progress: bool = False,
    batch_size: int = 64,
    max_length: int | None = None,
):
    """Fit the head again on the features cached by the last `fit_sparse_head` (no encoder pass), e.g. with
    group-balanced weights; the arguments are `fit_sparse_head`'s. Without a selection rule, the last fit's
    (`features_per_class`, `max_accuracy_drop` or `lam`) is reused. Returns the new path.

    Example:
        ```python
        >>> model.refit_sparse_head(groups="has_shortcut", balance="groups", relax=True)
        ```
    """
    fit = getattr(model, "fit_data", None)
    if fit is None:
        raise ValueError("refit_sparse_head works on the features cached by fit_sparse_head in this session; call "
                         "model.fit_sparse_head(train_dataset, eval_dataset, ...) first (its features are cached, so "
                         "a second call with the same data runs no forward pass).")
    if features_per_class is None and max_accuracy_drop is None and lam is None:
        last = model.config.selection or {}
        method, value = last.get("method"), last.get("value")
        if method not in ("features_per_class", "max_accuracy_drop", "lam"):
            raise ValueError("Pass features_per_class=, max_accuracy_drop= or lam=: the last fit's rule is unknown.")
        chosen = {method: value}
    else:
        chosen = selection_target(features_per_class, max_accuracy_drop, lam)
    return fit_on_cached_features(
        model, fit, chosen, relax=relax, groups=groups, eval_groups=eval_groups, balance=balance,
        sample_weight=sample_weight, augment=augment, selection_metric=selection_metric,
        alpha=model.config.alpha if alpha is None and getattr(model.config, "alpha", None) else (alpha or 0.99),
        n_lambdas=n_lambdas, lambda_min_ratio=lambda_min_ratio, solver_kwargs=solver_kwargs, progress=progress,
        batch_size=batch_size, max_length=max_length,
    )
