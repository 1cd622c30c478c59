"""Labels and head metrics of the sparse head's fit: the solver family of a model, labels checked and mapped to
what the solver wants, and accuracy / loss (or mse / R^2) of a head's logits.

Example:
    >>> family = family_for(model.config)                           # "multinomial" for a single-label classifier
    >>> y = prepare_labels(["pos", "neg"], model.config, family, "my data")   # label names -> class ids
    >>> head_metrics(model.sparse_head(X), y, family)["accuracy"]
"""

from __future__ import annotations

import math

import torch

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


def labels_of(feats, config, family, where, every_class: bool = False) -> torch.Tensor:
    """The labels of cached features `feats` (`prepare_labels`); a column of label names is read from its dataset."""
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
