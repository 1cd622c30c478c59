"""Fixes that work, in the head, on cached features: group-balanced refit and counterfactual augmentation.

Pruning a spurious feature rarely fixes a model: the shortcut is usually spread over several features. What works
(Kirichenko et al. 2022, last-layer retraining) is to refit the head on data where the spurious attribute and the
label are decorrelated: every (group, label) cell gets the same total weight in the elastic-net path, and
worst-group accuracy on held-out data judges the points. The features are cached, so a fix takes seconds.

`balanced_refit` does that and returns a `FixReport` (before/after: accuracy, log-loss, worst-group and per-group
accuracy, the dense head's figures on the same data, recorded identity-audit and error-slice figures, features
added/removed/reweighted and, for `groups=contains_word(...)`, which features carry the word and what the refit did
with each), recorded with the head edits, saved in `audit.json` and listed in the model card.

Example:
    >>> from hf_sparse.audit import balanced_refit, contains_word
    >>> report = balanced_refit(model, groups=contains_word("tuesday"))     # or a column, or slices.group_maker()
    >>> print(report)
    >>> report = balanced_refit(model, groups="identity", augment=identity_swaps(), balance="groups")
"""

from __future__ import annotations

import time

import torch

from hf_sparse.audit.edits import slice_accuracies
from hf_sparse.modeling.fitting import cell_groups, family_for, head_metrics, prepare_labels, reusable_groups
from hf_sparse.modeling.groups import resolve_groups
from hf_sparse.solver.balance import group_accuracy

from .fix_report import FixReport
from .identity import rescore
from .report import _clean, record_report
from .scoring import head_module
from .token_features import features_with_word

#: A feature "carries" a word when the word's label-stratified effect size on it (`features_with_word`) is at least
#: this: the word moves it by half its spread within a label.
WORD_EFFECT_FLAG = 0.5


def _measurement_data(model, dataset, dataset_groups, batch_size, max_length):
    """(X, y, cells or None, rows or None, split): the data a fix is measured on."""
    fit = model.fit_data
    family = family_for(model.config)
    names = {int(i): str(n) for i, n in (model.config.id2label or {}).items()}
    if dataset is not None:
        text_column = fit.text_column if fit else "text"
        label_column = fit.label_column if fit else "label"
        column = text_column if model.modality == "text" else (fit.image_column if fit else "image")
        X = model.encode(list(dataset[column]), batch_size=batch_size, max_length=max_length)
        y = prepare_labels(list(dataset[label_column]), model.config, family, "dataset")
        cells = None
        if dataset_groups is not None:
            g = resolve_groups(dataset_groups, dataset, range(len(dataset)), modality=model.modality,
                               text_column=text_column, image_column=fit.image_column if fit else "image",
                               where="dataset_groups")
            cells = cell_groups(g, y, names)
        return X, y, cells, None, "given dataset"
    feats = fit.features
    y = prepare_labels(feats.labels, model.config, family, "cached features")
    cells = None
    if dataset_groups is not None:
        g = resolve_groups(dataset_groups, fit.dataset, feats.indices, modality=model.modality,
                           text_column=fit.text_column, image_column=fit.image_column, where="eval_groups")
        cells = cell_groups(g, y, names)
    return feats.features.float(), y, cells, feats.indices, "eval" if fit.eval_features is not None else "train"


def head_figures(model, X, y, cells=None, head: str = "sparse") -> dict | None:
    """Accuracy, log-loss, worst-group and per-group accuracy (over `cells`), nnz and features of the installed
    sparse head (or, with `head="dense"`, accuracy and the rest of the model's dense head; None when it has none) on
    (X, y)."""
    family = family_for(model.config)
    if head == "dense":
        module = head_module(model, "dense")
        if module is None:
            return None
        with torch.no_grad():
            logits = module(X.to(module.weight)).double()
    else:
        with torch.no_grad():
            logits = model.sparse_head(X.to(model.sparse_head.values)).double()
    out = head_metrics(logits, y, family)
    if cells is not None and family == "multinomial":
        per_group = group_accuracy(logits.argmax(1) == y, cells.ids)
        out["group_accuracy"] = {cells.names[g]: acc for g, acc in sorted(per_group.items())}
        out["worst_group_accuracy"] = min(per_group.values())
    if head == "sparse":
        out.update(nnz=model.sparse_head.nnz, n_features=int(model.sparse_head.active_features.numel()))
    return _clean(out)


def _used(W: torch.Tensor) -> set:
    """The features (columns) with a nonzero weight in any class."""
    return set((W != 0).any(0).nonzero().flatten().tolist())


def _support_changes(W_before: torch.Tensor, W_after: torch.Tensor) -> tuple[list, list, list]:
    used_before, used_after = _used(W_before), _used(W_after)
    kept = sorted(used_before & used_after)
    changed = [j for j in kept if not torch.allclose(W_before[:, j], W_after[:, j], rtol=1e-4, atol=1e-8)]
    return sorted(used_after - used_before), sorted(used_before - used_after), changed


def _word_reason(flagged: bool, fate: str) -> str:
    """Why a feature left, stayed in or entered the head, in a few words."""
    if flagged:
        return {"removed": "carries the word; the refit dropped it",
                "kept": "carries the word, yet still predicts the label once the word no longer does: kept",
                "added": "carries the word, yet predicts the label on the balanced data: chosen by the refit"}[fate]
    return {"removed": "does not carry the word; replaced by a feature that predicts better on the balanced data",
            "kept": "does not carry the word; kept",
            "added": "does not carry the word; chosen by the refit"}[fate]


def word_feature_fates(model, word: str, W_before: torch.Tensor, W_after: torch.Tensor,
                       threshold: float = WORD_EFFECT_FLAG) -> dict:
    """Which features of the head before or after a fix carry `word` (`features_with_word`: label-stratified effect
    size on the cached train + eval texts, flagged at `|effect| >= threshold`) and what the fix did with each.

    Example:
        >>> word_feature_fates(model, "tuesday", W_before, model.sparse_head.weight)["features"][0]
        {'feature': 209, 'effect': -1.09, 'flagged': True, 'fate': 'removed', 'reason': 'carries the word; ...'}
    """
    before, after = _used(W_before), _used(W_after)
    found = features_with_word(model, word, features=sorted(before | after))
    rows = []
    for item in found:
        j = int(item.feature)
        fate = "kept" if j in before and j in after else ("removed" if j in before else "added")
        flagged = bool(item.score >= threshold)
        rows.append({"feature": j, "effect": float(item.effect), "flagged": flagged, "fate": fate,
                     "reason": _word_reason(flagged, fate)})
    return {"word": word, "threshold": float(threshold), "texts": "train + eval", "features": rows}


def _groups_name(groups) -> str:
    if isinstance(groups, str):
        return f"column {groups!r}"
    name = getattr(groups, "name", None)
    if name:
        return str(name)
    values = groups.tolist() if hasattr(groups, "tolist") else list(groups)
    return f"the given group values ({len(set(values))} groups)"


def _describe(groups, balance, augment, rule) -> str:
    bits = []
    if balance == "groups":
        bits.append(f"equal weight for every (group, label) cell of {_groups_name(groups)}")
    elif balance == "group":
        bits.append(f"equal weight for every group of {_groups_name(groups)}")
    elif balance == "labels":
        bits.append("equal weight for every class")
    if augment is not None:
        bits.append(f"training features augmented with {getattr(augment, 'name', repr(augment))}")
    bits.append(f"selection: {rule}")
    return "; ".join(bits)


def balanced_refit(
    model,
    groups=None,
    *,
    eval_groups=None,
    balance: str | None = "groups",
    augment=None,
    features_per_class: int | None = None,
    max_accuracy_drop: float | None = None,
    lam: float | None = None,
    relax: bool | None = None,
    selection_metric: str | None = None,
    dataset=None,
    dataset_groups=None,
    dataset_name: str | None = None,
    word: str | None = None,
    record: bool = True,
    progress: bool = False,
    batch_size: int = 64,
    max_length: int | None = 128,
    **fit_options,
) -> FixReport:
    """Refit the sparse head on the cached training features with group-balanced weights (and/or counterfactual
    augmentation) and report before/after.

    Args:
        groups: which group each training example is in: a column name, one value per training example, or a
            function of the text/image (`contains_word("tuesday")`, `slices.group_maker()`).
        eval_groups: the same for the evaluation data (default: `groups` when it is a column or a function); the
            fix is judged, and with `selection_metric="worst_group_accuracy"` selected, by worst-group accuracy.
        balance: "groups" (every (group, label) cell the same total weight), "group", "labels" or None.
        augment: a function text -> counterfactual texts (`identity_swaps()`), added with the original labels.
        features_per_class / max_accuracy_drop / lam, relax: the selection (default: the last fit's).
        dataset, dataset_groups: measure on this dataset (encoded once) instead of the cached evaluation features;
            `dataset_name` names it in the report ("test"; default "given dataset").
        word: report which features of the head before or after carry this word and what the refit did with each
            (`FixReport.word_features`; default: the word of `groups=contains_word(word)`, for a text model).
        fit_options: passed to `model.refit_sparse_head` (alpha, n_lambdas, lambda_min_ratio, solver_kwargs...).
    """
    if groups is None and augment is None and balance not in (None, "labels"):
        raise ValueError("balanced_refit needs groups= (a column, values, or a function such as "
                         "contains_word('tuesday')) for balance='groups', or augment=.")
    fit = model.fit_data
    if fit is None:
        raise ValueError("balanced_refit works on the features cached by fit_sparse_head: call "
                         "model.fit_sparse_head(train_dataset, eval_dataset, ...) first.")
    if eval_groups is None and fit.eval_features is not None:
        eval_groups = reusable_groups(groups)
    if dataset is not None and dataset_groups is None:
        dataset_groups = reusable_groups(groups)
    measure_groups = dataset_groups if dataset is not None else eval_groups
    X, y, cells, rows, split = _measurement_data(model, dataset, measure_groups, batch_size, max_length)
    if dataset is not None and dataset_name:
        split = str(dataset_name)
    if word is None and model.modality == "text":
        word = getattr(groups, "word", None)
    family = family_for(model.config)
    identity = model.audit_reports.get("identity")
    if identity is not None and getattr(identity, "_cache", None) is None:
        identity = None

    before = head_figures(model, X, y, cells)
    audit_before = rescore(model, identity).summary() if identity is not None else None
    slice_data, slice_split = _slice_data(model, X, y, rows, split)
    slices_before = slice_accuracies(model, *slice_data, family)
    W_before = model.sparse_head.weight.detach().double().cpu().clone()
    started = time.perf_counter()  # the fix itself: measuring before/after is not counted
    if relax is None:
        relax = "relax_gain" in (model.config.selection or {})

    model.refit_sparse_head(features_per_class=features_per_class, max_accuracy_drop=max_accuracy_drop, lam=lam,
                            relax=relax, groups=groups, eval_groups=eval_groups, balance=balance, augment=augment,
                            selection_metric=selection_metric, progress=progress, batch_size=batch_size,
                            max_length=max_length, **fit_options)

    seconds = time.perf_counter() - started
    after = head_figures(model, X, y, cells)
    audit_after = rescore(model, identity).summary() if identity is not None else None
    slices_after = slice_accuracies(model, *slice_data, family)
    W_after = model.sparse_head.weight.detach().double().cpu()
    added, removed, reweighted = _support_changes(W_before, W_after)
    word_features, word_note = None, None
    if word:
        try:
            word_features = word_feature_fates(model, word, W_before, W_after)
        except (ValueError, TypeError, KeyError) as err:  # no cached texts to search: say so, keep the fix
            word_note = f"Which features carry {word!r} was not measured: {err}"
    selection = model.config.selection or {}
    rule = f"{selection.get('method')}={selection.get('value')}"
    if (selection.get("training") or {}).get("selection_metric") == "worst_group_accuracy":
        rule += ", judged by worst-group accuracy on the evaluation data"
    method = "group-balanced refit" if balance not in (None, "labels") else (
        "counterfactual augmentation" if augment is not None else "class-balanced refit")
    if augment is not None and balance not in (None, "labels"):
        method = "group-balanced refit with counterfactual augmentation"
    notes = []
    training = selection.get("training") or {}
    if training.get("augmented_examples"):
        notes.append(f"{training['augmented_examples']} counterfactual training examples were encoded and added.")
    if word_note:
        notes.append(word_note)
    for key, label in (("worst_group_accuracy", "worst-group accuracy"), ("accuracy", "accuracy")):
        if before.get(key) is not None and after.get(key) is not None and after[key] < before[key]:
            notes.append(f"The fix lowered {label} on {split} ({before[key]:.3f} -> {after[key]:.3f}).")
    report = FixReport(
        method=method, description=_describe(groups, balance, augment, rule), split=split,
        n_examples=int(X.shape[0]), before=before, after=after, features_added=added, features_removed=removed,
        features_reweighted=reweighted, audit_before=audit_before, audit_after=audit_after,
        slice_accuracy=_clean({r: {"before": v, "after": slices_after.get(r), "members": _n_members(model, r),
                                   "split": slice_split} for r, v in slices_before.items()}),
        notes=notes, seconds=seconds, dense=head_figures(model, X, y, cells, head="dense"),
        word_features=word_features,
    )
    if record:
        _record(model, report)
    return report


def _slice_data(model, X, y, rows, split):
    """((X, y, rows), split): the data on which to measure the recorded error slices' accuracy. The measurement data
    when the slices were found on it, else the cached features they were found on (a fix measured on a test set still
    shows how the slices found on the evaluation data fare); rows None (no slice figures) when neither holds."""
    slices = (model.audit_reports or {}).get("error_slices")
    if slices is None or (rows is not None and slices.split == split):
        return (X, y, rows), split
    fit = model.fit_data
    cached = None
    if fit is not None:
        cached = {"eval": fit.eval_features, "train": fit.train_features}.get(slices.split)
    if cached is None:
        return (X, y, None), split
    y_cached = prepare_labels(cached.labels, model.config, family_for(model.config), "cached features")
    return (cached.features.float(), y_cached, cached.indices), slices.split


def _n_members(model, rank) -> int | None:
    slices = (model.audit_reports or {}).get("error_slices")
    for s in slices or []:
        if str(s.rank) == str(rank):
            return int(s.n_members)
    return None


def _record(model, report: FixReport) -> None:
    config = model.config
    edits = list(config.edits or [])
    entry = {"fix": report.method, "description": report.description, "split": report.split,
             "n_examples": report.n_examples, "added": report.features_added, "removed": report.features_removed}
    for key in ("accuracy", "loss", "worst_group_accuracy", "nnz"):
        entry[f"{key}_before"], entry[f"{key}_after"] = report.before.get(key), report.after.get(key)
    edits.append(_clean(entry))
    config.edits = edits
    report.index = len(edits)
    sparse_metrics = dict(config.sparse_metrics or {})
    if sparse_metrics:
        # The refit measured the new head on its evaluation split (`sparse_metrics`): they describe the head after
        # this fix (the card shows them), whichever split the fix itself was measured on.
        sparse_metrics["edited"] = True
        if sparse_metrics.get("split") == report.split:
            sparse_metrics.update(accuracy=report.after.get("accuracy"), loss=report.after.get("loss"))
        config.sparse_metrics = _clean(sparse_metrics)
    record_report(model, "edits", report)
