"""Head edits with their before/after report: `edit_features` (`model.edit_features(...)` on the public classes).

The weight arithmetic (remove, reweight, refit with the support fixed) is the model layer's
(`hf_sparse.modeling.editing`); this module measures the head before and after it and writes the `EditReport`.
With `refit=True` the removal alone is measured too (`report.no_refit`); when the refit lowers accuracy, or the
worst recorded error slice's accuracy, below the removal alone, the refit is kept but `report.notes` says so with
the numbers (make the edit with `refit=False` to keep the removal alone).

Accuracy and loss are measured before and after on the cached evaluation features (or `dataset=`); when an identity
audit was recorded, its per-group flip rate and mean |dp| are recomputed from its kept features, and recorded error
slices get their accuracy before and after. The edit is appended to `model.config.edits` and the `EditReport` to
`model.audit_reports["edits"]`.

Example:
    >>> report = model.edit_features(remove=[12, 301])              # or edit_features(model, remove=[12, 301])
    >>> report.before["accuracy"], report.after["accuracy"]
    >>> model.edit_features(reweight={40: 0.5, 7: {"positive": 0.0}})
    >>> model.edit_features(remove=[12], refit=True)
"""

from __future__ import annotations

import copy

import torch

from ..modeling.editing import edit_factors, edited_weights, refit_weights
from ..modeling.fit_config import declared_options
from ..modeling.labels import family_for, head_metrics, prepare_labels
from ..utils import json_safe
from .identity import rescore
from .report import EditReport, record_report


def _evaluation_data(model, dataset, text_column, label_column, batch_size, max_length):
    family = family_for(model.config)
    if dataset is not None:
        fit = model.fit_data
        text_column = text_column or (fit.text_column if fit else "text")
        label_column = label_column or (fit.label_column if fit else "label")
        cols = list(getattr(dataset, "column_names", None) or getattr(dataset, "columns", None) or [])
        for col in (text_column, label_column):
            if col not in cols:
                raise ValueError(f"dataset has no column {col!r}; its columns are {cols}.")
        X = model.encode([str(t) for t in dataset[text_column]], batch_size=batch_size, max_length=max_length)
        y = prepare_labels(list(dataset[label_column]), model.config, family, "dataset")
        return X, y, None, "given dataset"
    fit = model.fit_data
    if fit is None:
        raise ValueError("Pass dataset= to measure the edit on: this model holds no cached features from fit_sparse_head.")
    feats = fit.features
    y = prepare_labels(feats.labels, model.config, family, "cached features")
    return feats.features.float(), y, feats.indices, "eval" if fit.eval_features is not None else "train"


def _metrics(model, X, y, family) -> dict:
    with torch.no_grad():
        logits = model.sparse_head(X.to(model.sparse_head.values))
    out = head_metrics(logits, y, family)
    out.update(nnz=model.sparse_head.nnz, n_features=int(model.sparse_head.active_features.numel()))
    return json_safe(out)


def slice_accuracies(model, X, y, rows, family) -> dict:
    """{slice rank: accuracy over its members} for recorded error slices found on the same cached data."""
    reports = model.audit_reports
    slices = reports.get("error_slices")
    if slices is None or rows is None:
        return {}
    where = {int(r): i for i, r in enumerate(rows.tolist())}
    with torch.no_grad():
        logits = model.sparse_head(X.to(model.sparse_head.values)).double()
    out = {}
    for s in slices:
        members = [where[r] for r in s.member_indices if r in where]
        if len(members) != len(s.member_indices) or not members:
            continue
        idx = torch.tensor(members)
        out[str(s.rank)] = head_metrics(logits[idx], y[idx], family)["accuracy"]
    return out


def _refit_notes(before: dict, after: dict, alone: dict, slices_before: dict, slices_after: dict) -> list[str]:
    """Notes for a refit that lowered accuracy, or the worst error slice's accuracy, below the removal alone."""
    notes = []
    figures = [("accuracy", before.get("accuracy"), alone.get("accuracy"), after.get("accuracy"))]
    if slices_after and alone.get("worst_slice_accuracy") is not None:
        worst_after = [v for v in slices_after.values() if v is not None]
        figures.append(("worst error-slice accuracy", min(slices_before.values()) if slices_before else None,
                        alone["worst_slice_accuracy"], min(worst_after) if worst_after else None))
    for name, start, removal, refit in figures:
        if removal is None or refit is None or not refit < removal - 1e-12:
            continue
        undid = ("undid part of the removal's gain" if start is not None and removal > start
                 else "made it worse than the removal alone")
        notes.append(f"The refit {undid} on {name}: {_pct(start)} before the edit, {_pct(removal)} after the "
                     f"removal without refit, {_pct(refit)} after the refit. The refit is kept; to keep the removal "
                     "alone, make this edit with refit=False instead.")
    return notes


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@declared_options
def edit_features(
    model,
    remove=None,
    reweight=None,
    *,
    refit: bool = False,
    dataset=None,
    audit: bool = True,
    text_column: str | None = None,
    label_column: str | None = None,
    batch_size: int = 64,
    max_length: int | None = 128,
    record: bool = True,
) -> EditReport:
    """Remove and/or reweight features of the sparse head; returns an `EditReport` (before/after).

    The options are these typed keywords (the method `model.edit_features` is this function); an unknown keyword
    is a TypeError that lists them.

    Args:
        remove: feature indices whose standardized weights become 0 in every class (the feature held at its mean).
        reweight: {feature: factor} or {feature: {class name or id: factor}} scaling standardized weights.
        refit: refit the remaining weights on the cached training features, support fixed (removals only); the
            removal alone is measured too (`report.no_refit`), and a note says when the refit does worse than it.
        dataset: measure accuracy and loss on this dataset instead of the cached evaluation features.
        text_column / label_column: its columns (default: those of the last `fit_sparse_head`, else text / label).
        batch_size / max_length: how `dataset`'s texts are encoded (rows per forward pass, tokens kept).
        audit: recompute the recorded identity audit's summary and error slices' accuracy before and after.
        record: append the edit to `model.config.edits` and the report to `model.audit_reports["edits"]`.

    Example:
        >>> report = edit_features(model, remove=[12], refit=True)      # or model.edit_features(remove=[12], ...)
        >>> report.before["accuracy"], report.no_refit["accuracy"], report.after["accuracy"]
    """
    removed, factors, reweighted = edit_factors(model, remove, reweight)
    if refit and reweighted:
        raise ValueError("refit=True refits every remaining weight, which would undo reweight=. Reweight without "
                         "refit, or remove features and refit.")
    family = family_for(model.config)
    X, y, rows, split = _evaluation_data(model, dataset, text_column, label_column, batch_size, max_length)
    identity = model.audit_reports.get("identity") if audit else None
    if identity is not None and identity._cache is None:
        identity = None

    before = _metrics(model, X, y, family)
    audit_before = rescore(model, identity).summary() if identity is not None else None
    slices_before = slice_accuracies(model, X, y, rows, family) if audit else {}

    W, b = edited_weights(model, factors)
    selection = copy.deepcopy(model.config.selection)
    notes = []
    no_refit = None
    if refit:
        W_refit, b_refit, lam = refit_weights(model, W, b, removed)  # before any install: a failed refit changes nothing
        model.install_sparse_head(W.float(), b.float(), selection=selection)  # the removal alone, to compare
        alone = _metrics(model, X, y, family)
        alone_slices = slice_accuracies(model, X, y, rows, family) if audit else {}
        no_refit = {"accuracy": alone.get("accuracy"), "loss": alone.get("loss"),
                    "worst_slice_accuracy": min(alone_slices.values()) if alone_slices else None,
                    "slice_accuracy": alone_slices}
        W, b = W_refit, b_refit
        notes.append(f"The remaining weights were refit on the cached training features at lambda {lam:.4g} "
                     "(support fixed).")
    model.install_sparse_head(W.float(), b.float(), selection=selection)

    after = _metrics(model, X, y, family)
    audit_after = rescore(model, identity).summary() if identity is not None else None
    slices_after = slice_accuracies(model, X, y, rows, family) if audit else {}
    slice_accuracy = {r: {"before": slices_before[r], "after": slices_after.get(r)} for r in slices_before}
    if no_refit is not None:
        notes += _refit_notes(before, after, no_refit, slices_before, slices_after)
    config = model.config
    sparse_metrics = dict(config.sparse_metrics or {})
    if sparse_metrics.get("split") == split and dataset is None:
        sparse_metrics.update(accuracy=after.get("accuracy"), loss=after.get("loss"), nnz=after["nnz"],
                              n_features=after["n_features"], edited=True)
        config.sparse_metrics = json_safe(sparse_metrics)
    entry = {"removed": removed, "reweighted": reweighted, "refit": bool(refit), "split": split,
             "n_examples": int(X.shape[0])}
    for key in ("accuracy", "loss", "nnz"):
        entry[f"{key}_before"], entry[f"{key}_after"] = before.get(key), after.get(key)
    if no_refit is not None:
        entry["accuracy_no_refit"] = no_refit["accuracy"]
    entry = json_safe(entry)
    edits = list(config.edits or [])
    if record:
        edits.append(entry)
        config.edits = edits
    report = EditReport(
        removed=removed, reweighted=reweighted, refit=bool(refit), split=split, n_examples=int(X.shape[0]),
        before=before, after=after, audit_before=audit_before, audit_after=audit_after,
        slice_accuracy=json_safe(slice_accuracy), notes=notes, index=max(1, len(edits)),
        no_refit=json_safe(no_refit),
    )
    if record:
        record_report(model, "edits", report)
    return report
