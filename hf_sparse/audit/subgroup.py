"""Subgroup AUC, BPSN AUC and BNSP AUC (Borkan et al. 2019) and the Jigsaw final bias metric.

For each identity subgroup `s` (examples that mention it), with labels `y` (1 = the audited label) and scores:

- **subgroup AUC**: ROC AUC on the examples in `s` only;
- **BPSN AUC** (background positive, subgroup negative): on the negatives in `s` and the positives outside it; low
  when the subgroup's harmless examples score higher than other harmful ones (false positives for `s`);
- **BNSP AUC** (background negative, subgroup positive): on the positives in `s` and the negatives outside it; low
  when the subgroup's harmful examples score lower than other harmless ones.

The generalized mean `M_p(m) = (mean_s m_s^p)^(1/p)` with `p = -5` leans towards the worst subgroups; the final score
is `w0 * overall AUC + sum over the three metrics of w * M_p`, with all weights 0.25 (the Jigsaw Unintended Bias in
Toxicity Classification metric). The figures are computed by the `bias_auc` evaluate module shipped in
`hf_sparse.metrics` (AUCs from `sklearn.metrics.roc_auc_score`); an AUC whose data lacks a class is undefined (None)
and left out of the means.

Each head is scored on the same features; `report.disagreements` lists where the sparse head and the dense one
(the model the user started from) tell different stories: an AUC on opposite sides of 0.5, or any figure more than
`DISAGREEMENT_MARGIN` apart (see `find_subgroup_disagreements`). Reports print them as WARNING lines.

Example:
    >>> report = subgroup_metrics(model, ds, text_column="comment", label_column="toxic")   # terms found in text
    >>> report.final_score["sparse"], report.final_score["dense"]
    >>> subgroup_metrics({"mine": scores}, labels=y, subgroups={"gay": mask})             # your own scores
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import metrics
from ..metrics.bias_auc.bias_auc import (  # the formulas, re-exported as before (see __all__)
    METRICS, auc_or_none, bias_aucs, final_bias_score, generalized_mean)
from . import scoring
from .report import record_report
from .subgroup_report import SubgroupReport
from .terms import find_terms, resolve_groups

#: Two heads disagree on a figure (an AUC, a generalized mean, the final score) when they differ by more than this.
DISAGREEMENT_MARGIN = 0.05
#: ... or on an AUC when one is above 0.5 and the other below, one of them at least this far from 0.5.
SIDE_MIN = 0.01
_NAMES = {"overall_auc": "overall AUC", "subgroup_auc": "subgroup AUC", "bpsn_auc": "BPSN AUC",
          "bnsp_auc": "BNSP AUC", "final_score": "final score"}


# ------------------------------------------------------------------------------------------- the formulas
# They live in the `bias_auc` evaluate module (hf_sparse/metrics/bias_auc), which the audit computes through.


def _compare(first: str, other: str, x, y, *, what: str, subgroup, measure: str, auc: bool, margin: float,
             side_min: float) -> dict | None:
    if x is None or y is None:
        return None
    if auc and (x - 0.5) * (y - 0.5) < 0 and max(abs(x - 0.5), abs(y - 0.5)) >= side_min:
        reason, why = "side", "one above 0.5 (chance), the other below"
    elif abs(x - y) > margin:
        reason, why = "margin", f"more than {margin:g} apart"
    else:
        return None
    where = f" of subgroup {subgroup}" if subgroup is not None else ""
    return {"what": what, "subgroup": subgroup, "measure": measure, "heads": [first, other],
            "values": {first: x, other: y}, "reason": reason,
            "message": f"the {first} and {other} heads disagree on the {what}{where}: {first} {x:.3f}, "
                       f"{other} {y:.3f} ({why})"}


def find_subgroup_disagreements(report, margin: float = DISAGREEMENT_MARGIN, side_min: float = SIDE_MIN) -> list[dict]:
    """Where the report's first head and each other head disagree: per subgroup on its subgroup, BPSN and BNSP AUC,
    and on the overall AUC, each metric's generalized mean and the final score. An AUC-valued figure disagrees when
    one head puts it above 0.5 and the other below (one at least `side_min` from 0.5), and any figure when the two
    differ by more than `margin`. Undefined figures (None) are skipped.

    Example:
        >>> find_subgroup_disagreements(report)[0]["message"]
        'the sparse and dense heads disagree on the BPSN AUC of subgroup gay: sparse 0.612, dense 0.801 (more
        than 0.05 apart)'
    """
    heads = list(report.heads)
    out: list[dict] = []
    if len(heads) < 2:
        return out
    first = heads[0]
    kw = dict(margin=margin, side_min=side_min)
    for other in heads[1:]:
        found = [_compare(first, other, report.overall_auc.get(first), report.overall_auc.get(other),
                          what="overall AUC", subgroup=None, measure="overall_auc", auc=True, **kw)]
        for row in report.rows:
            for m in METRICS:
                values = row.get(m) or {}
                found.append(_compare(first, other, values.get(first), values.get(other), what=_NAMES[m],
                                      subgroup=row["subgroup"], measure=m, auc=True, **kw))
        power = f"{report.power:g}"
        for m in METRICS:
            gm = report.generalized_mean
            found.append(_compare(first, other, (gm.get(first) or {}).get(m), (gm.get(other) or {}).get(m),
                                  what=f"generalized mean (p={power}) of the {_NAMES[m]}", subgroup=None,
                                  measure=f"generalized_mean.{m}", auc=True, **kw))
        # The final score is on the AUC scale only with weights summing to 1 (the default): then 0.5 is chance too.
        weights_sum = sum((report.weights or {"overall": 1.0}).values())
        found.append(_compare(first, other, report.final_score.get(first), report.final_score.get(other),
                              what="final score", subgroup=None, measure="final_score",
                              auc=abs(weights_sum - 1.0) < 1e-9, **kw))
        out += [d for d in found if d is not None]
    return out


# ------------------------------------------------------------------------------------------- data handling
def _columns(dataset) -> list[str]:
    for attr in ("column_names", "columns"):
        cols = getattr(dataset, attr, None)
        if cols is not None:
            return list(cols)
    if isinstance(dataset, Mapping):
        return list(dataset.keys())
    raise TypeError(f"dataset must be a datasets.Dataset, a pandas DataFrame or a dict of columns, not "
                    f"{type(dataset).__name__}")


def _column(dataset, name: str, what: str) -> list:
    cols = _columns(dataset)
    if name not in cols:
        raise ValueError(f"The dataset has no {what} column {name!r}; its columns are {cols}. Pass {what}_column=.")
    return list(dataset[name])


def binary_labels(values, ids: list[int], label2id: Mapping | None = None) -> np.ndarray:
    """1 where an example has the audited label: class ids in `ids`, label names mapped by `label2id`, booleans,
    or scores in [0, 1] (1 when >= 0.5, as for Jigsaw's annotator fractions)."""
    values = list(values)
    if values and isinstance(values[0], str):
        label2id = {str(k).lower(): int(v) for k, v in (label2id or {}).items()}
        unknown = sorted({v for v in values if v.lower() not in label2id})
        if unknown:
            raise ValueError(f"label values {unknown[:10]} are not labels of this model ({sorted(label2id)})")
        values = [label2id[v.lower()] for v in values]
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"labels must be one value per example, got shape {arr.shape}")
    if np.all(arr == np.round(arr)):
        return np.isin(arr.astype(int), ids).astype(int)
    if arr.min() >= 0 and arr.max() <= 1:
        return (arr >= 0.5).astype(int)
    raise ValueError("labels must be class ids, label names, booleans or scores in [0, 1]")


def _membership(values) -> np.ndarray:
    arr = np.asarray([0.0 if v is None else float(v) for v in values], dtype=float)
    return np.nan_to_num(arr) >= 0.5


def detected_subgroups(texts, groups=None, *, by: str = "term") -> dict[str, np.ndarray]:
    """{subgroup: mask over `texts`} from the identity terms found in them (`by="term"` or `"group"`)."""
    if by not in ("term", "group"):
        raise ValueError(f"by must be 'term' or 'group', got {by!r}")
    groups = resolve_groups(groups)
    texts = list(texts)
    masks: dict[str, np.ndarray] = {}
    for i, text in enumerate(texts):
        for m in find_terms(text or "", groups):
            name = m.term if by == "term" else m.group
            masks.setdefault(name, np.zeros(len(texts), dtype=bool))[i] = True
    return dict(sorted(masks.items()))


# ------------------------------------------------------------------------------------------- the entry point
def subgroup_metrics(
    model_or_scores,
    dataset=None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    identity_columns=None,
    groups=None,
    by: str = "term",
    labels=None,
    subgroups: Mapping | None = None,
    target_label=None,
    heads=("sparse", "dense"),
    min_size: int = 10,
    power: float = -5.0,
    disagreement_margin: float = DISAGREEMENT_MARGIN,
    weights: Mapping | None = None,
    batch_size: int = 64,
    max_length: int | None = 128,
    record: bool = True,
    progress: bool = True,
) -> SubgroupReport:
    """Subgroup, BPSN and BNSP AUC per subgroup, their generalized means and the final score, per head.

    `model_or_scores` is either
    - a sparse-head model: `dataset` (texts and labels) is encoded once and scored by each of `heads` on the same
      features; with `dataset=None`, the evaluation data cached by `fit_sparse_head` is used (no forward pass);
    - scores: an array (n,) or a dict {name: array (n,)}, with `labels=` (n,) 0/1, or a `dataset` + `label_column`.

    Subgroups: `subgroups=` {name: boolean mask}; or `identity_columns=` (dataset columns, member when the value is
    true or >= 0.5); or, by default, the identity terms found in the texts (`groups=`, `by="term"` or `"group"`).
    Subgroups with fewer than `min_size` examples are listed in `skipped`, not scored.
    With several heads (or score sets), `report.disagreements` lists where the first and another differ by more
    than `disagreement_margin` or, for an AUC, fall on opposite sides of 0.5 (`find_subgroup_disagreements`).
    `progress`: a progress bar over the encoding of `dataset` (the slow part; the cached data needs none).
    """
    is_model = hasattr(model_or_scores, "sparse_head")
    target_name = "label 1"
    ids = [1]
    label2id = None
    texts = None
    if is_model:
        model = model_or_scores
        ids, target_name = scoring.target_ids(model, target_label)
        label2id = model.config.label2id
        if dataset is None:  # the cached evaluation features, in their own row order
            fit = model.fit_data
            if fit is None:
                raise ValueError("Pass dataset= (texts and labels): this model holds no cached data from fit_sparse_head.")
            rows = fit.features.indices.tolist()
            text_column = text_column or fit.text_column
            label_column = label_column or fit.label_column
            all_texts = _column(fit.dataset, text_column, "text")
            all_labels = _column(fit.dataset, label_column, "label") if labels is None else None
            texts = [str(all_texts[r]) for r in rows]
            if labels is None:
                labels = [all_labels[r] for r in rows]
            features = fit.features.features
        else:
            text_column, label_column = text_column or "text", label_column or "label"
            texts = [str(t) for t in _column(dataset, text_column, "text")]
            features = scoring.encode_texts(model, texts, batch_size=batch_size, max_length=max_length,
                                            progress=progress, desc="subgroup audit: encoding texts")
        scores = {h: scoring.target_probability(model, features, ids, h).numpy() for h in heads}
    else:
        scores = dict(model_or_scores) if isinstance(model_or_scores, Mapping) else {"scores": model_or_scores}
        scores = {k: np.asarray(v, dtype=float).reshape(-1) for k, v in scores.items()}
    if labels is None:
        if dataset is None:
            raise ValueError("Pass labels= (0/1 per example), or dataset= with label_column=.")
        labels = _column(dataset, label_column or "label", "label")
    y = binary_labels(labels, ids, label2id)
    n = y.size
    for name, s in scores.items():
        if s.shape[0] != n:
            raise ValueError(f"scores {name!r} have {s.shape[0]} values but there are {n} labels")

    if subgroups is not None:
        masks = {str(k): np.asarray(v, dtype=bool).reshape(-1) for k, v in subgroups.items()}
        source = "the given subgroups"
    elif identity_columns is not None:
        if dataset is None:
            raise ValueError("identity_columns= needs dataset=")
        cols = [identity_columns] if isinstance(identity_columns, str) else list(identity_columns)
        masks = {c: _membership(_column(dataset, c, "identity")) for c in cols}
        source = "identity columns " + ", ".join(cols)
    else:
        if texts is None:
            if dataset is None:
                raise ValueError("Pass subgroups= (masks), identity_columns=, or dataset= with text_column= to find "
                                 "identity terms in.")
            texts = [str(t) for t in _column(dataset, text_column or "text", "text")]
        masks = detected_subgroups(texts, groups, by=by)
        source = f"identity {by}s found in the texts"
    for name, m in masks.items():
        if m.shape[0] != n:
            raise ValueError(f"subgroup {name!r} has {m.shape[0]} entries but there are {n} examples")

    kept = {k: m for k, m in masks.items() if int(m.sum()) >= min_size}
    weights = dict(weights or {"overall": 0.25, **{m: 0.25 for m in METRICS}})
    # Through the `bias_auc` evaluate module: one list of (kept) subgroup names per example.
    member_of = [[] for _ in range(n)]
    for name, m in kept.items():
        for i in np.flatnonzero(m):
            member_of[i].append(name)
    results = {h: metrics.compute("bias_auc", predictions=s, references=y, subgroups=member_of, power=float(power),
                                  weights=weights, min_size=1) for h, s in scores.items()}
    rows = []
    for name, m in kept.items():
        row = {"subgroup": name, "n": int(m.sum()), "n_positive": int(y[m].sum())}
        for metric in METRICS:
            row[metric] = {h: results[h][metric][name] for h in scores}
        rows.append(row)
    overall = {h: results[h]["overall_auc"] for h in scores}
    gmeans = {h: dict(results[h]["generalized_mean"]) for h in scores}
    final = {h: results[h]["final_score"] for h in scores}
    report = SubgroupReport(
        heads=list(scores), target_label=target_name, source=source, overall_auc=overall, rows=rows,
        generalized_mean=gmeans, final_score=final, power=float(power), weights=weights, n_examples=int(n),
        n_positive=int(y.sum()), skipped={k: int(m.sum()) for k, m in masks.items() if k not in kept},
        min_size=int(min_size), disagreement_margin=float(disagreement_margin),
    )
    report.disagreements = find_subgroup_disagreements(report, margin=float(disagreement_margin))
    if record and is_model:
        record_report(model_or_scores, "subgroup", report)
    return report


__all__ = ["DISAGREEMENT_MARGIN", "METRICS", "SIDE_MIN", "auc_or_none", "bias_aucs", "binary_labels",
           "detected_subgroups", "final_bias_score", "find_subgroup_disagreements", "generalized_mean",
           "subgroup_metrics"]
