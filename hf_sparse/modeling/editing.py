"""Head edits: remove or reweight named features of the sparse head, optionally refit the rest, and report.

The head is fit on standardized features, `logit = sum_j w_j (x_j - mean_j) / std_j + b`, and stored on raw ones.
An edit acts on that standardized form, as in Wong et al. (2021):

- **remove** feature j: its standardized weight becomes 0 in every class. On raw features that is the feature held
  at its training mean: `W[:, j] = 0` and `b += W[:, j] * mean_j`, so the average logit does not move;
- **reweight** feature j by f (all classes, or {class: f}): the standardized weight is scaled by f, i.e.
  `W[c, j] *= f` and `b[c] += (1 - f) * W[c, j] * mean_j`;
- **refit** (`refit=True`, with removals only): the remaining weights are refit on the training features kept by
  `fit_sparse_head`, support fixed, at the installed point's lambda, with the solver's own support-restricted refit
  (`RegularizationPath` refit, the one `select(features_per_class=...)` uses). Refitting would undo a reweighting,
  so the two cannot be combined. Removed features stay at zero (the support is fixed). The removal alone is measured
  too (`report.no_refit`); when the refit lowers accuracy, or the worst recorded error slice's accuracy, below the
  removal alone, the refit is kept but `report.notes` says so with the numbers (make the edit with `refit=False`
  to keep the removal alone).

Naming a feature the head does not use is an error (nothing would change, which usually means a wrong index).
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
import operator
from collections.abc import Mapping

import torch

from .fitting import _clean, family_for, head_metrics, prepare_labels


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


def _factors(model, remove, reweight) -> tuple[list[int], dict[int, torch.Tensor], dict]:
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


def _evaluation_data(model, dataset, text_column, label_column, batch_size, max_length):
    family = family_for(model.config)
    if dataset is not None:
        fit = getattr(model, "fit_data", None)
        text_column = text_column or (fit.text_column if fit else "text")
        label_column = label_column or (fit.label_column if fit else "label")
        cols = list(getattr(dataset, "column_names", None) or getattr(dataset, "columns", None) or [])
        for col in (text_column, label_column):
            if col not in cols:
                raise ValueError(f"dataset has no column {col!r}; its columns are {cols}.")
        X = model.encode([str(t) for t in dataset[text_column]], batch_size=batch_size, max_length=max_length)
        y = prepare_labels(list(dataset[label_column]), model.config, family, "dataset")
        return X, y, None, "given dataset"
    fit = getattr(model, "fit_data", None)
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
    return _clean(out)


def slice_accuracies(model, X, y, rows, family) -> dict:
    """{slice rank: accuracy over its members} for recorded error slices found on the same cached data."""
    reports = getattr(model, "audit_reports", None) or {}
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


def _refit(model, W: torch.Tensor, b: torch.Tensor):
    from hf_sparse.solver.path import PathPoint

    path = getattr(model, "regularization_path", None)
    fit = getattr(model, "fit_data", None)
    if path is None or fit is None:
        raise ValueError("refit=True needs the regularization path and training features of fit_sparse_head in this "
                         "session (they are not saved with the model); call fit_sparse_head first, or edit without refit.")
    refit = path._refit
    if refit is None:
        from hf_sparse.solver.fit import make_refitter

        y = prepare_labels(fit.train_features.labels, model.config, family_for(model.config), "training features")
        refit = make_refitter(path, fit.train_features.features.float(), y)
    lam = path.selected.lam if path.selected is not None else float(model.config.selected_lambda)
    support = W != 0
    point = refit(lam, support, PathPoint.from_dense(lam, W.float(), b.float()))
    return point.weight, point.bias, lam


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
):
    """Remove and/or reweight features of the sparse head; returns an `EditReport` (before/after).

    Args:
        remove: feature indices whose standardized weights become 0 in every class (the feature held at its mean).
        reweight: {feature: factor} or {feature: {class name or id: factor}} scaling standardized weights.
        refit: refit the remaining weights on the cached training features, support fixed (removals only); the
            removal alone is measured too (`report.no_refit`), and a note says when the refit does worse than it.
        dataset: measure accuracy and loss on this dataset (`text_column`, `label_column`) instead of the cached
            evaluation features.
        audit: recompute the recorded identity audit's summary and error slices' accuracy before and after.
        record: append the edit to `model.config.edits` and the report to `model.audit_reports["edits"]`.
    """
    from hf_sparse.audit.report import EditReport, record_report

    removed, factors, reweighted = _factors(model, remove, reweight)
    if refit and reweighted:
        raise ValueError("refit=True refits every remaining weight, which would undo reweight=. Reweight without "
                         "refit, or remove features and refit.")
    family = family_for(model.config)
    X, y, rows, split = _evaluation_data(model, dataset, text_column, label_column, batch_size, max_length)
    identity = (getattr(model, "audit_reports", None) or {}).get("identity") if audit else None
    if identity is not None and identity._cache is None:
        identity = None

    from hf_sparse.audit.identity import rescore

    before = _metrics(model, X, y, family)
    audit_before = rescore(model, identity).summary() if identity is not None else None
    slices_before = slice_accuracies(model, X, y, rows, family) if audit else {}

    head = model.sparse_head
    W = head.weight.detach().double().cpu()
    b = head.bias.detach().double().cpu()
    mean = model.feature_mean.detach().double().cpu()
    selection = copy.deepcopy(model.config.selection)
    notes = []
    no_refit = None
    for j, f in factors.items():
        b = b + (1 - f) * W[:, j] * mean[j]
        W[:, j] = W[:, j] * f
    if refit:
        W_refit, b_refit, lam = _refit(model, W, b)  # before any install: a refit that cannot run changes nothing
        if removed and bool((W_refit[:, removed] != 0).any()):
            raise RuntimeError(f"the refit gave removed features {removed} nonzero weights; the edit was not applied.")
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
        config.sparse_metrics = _clean(sparse_metrics)
    entry = {"removed": removed, "reweighted": reweighted, "refit": bool(refit), "split": split,
             "n_examples": int(X.shape[0])}
    for key in ("accuracy", "loss", "nnz"):
        entry[f"{key}_before"], entry[f"{key}_after"] = before.get(key), after.get(key)
    if no_refit is not None:
        entry["accuracy_no_refit"] = no_refit["accuracy"]
    entry = _clean(entry)
    edits = list(config.edits or [])
    if record:
        edits.append(entry)
        config.edits = edits
    report = EditReport(
        removed=removed, reweighted=reweighted, refit=bool(refit), split=split, n_examples=int(X.shape[0]),
        before=before, after=after, audit_before=audit_before, audit_after=audit_after,
        slice_accuracy=_clean(slice_accuracy), notes=notes, index=max(1, len(edits)),
        no_refit=_clean(no_refit),
    )
    if record:
        record_report(model, "edits", report)
    return report
