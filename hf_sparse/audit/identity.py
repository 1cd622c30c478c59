"""Identity-term perturbation audit (counterfactual token fairness, Garg et al. 2019).

A *frame* is one sentence with an identity slot and the group whose terms fill it: a template from
`hf_sparse.audit.terms` (or yours) with every term of a group, or a real text (`texts=`) in which the group's terms
were found and swapped for each of the group's terms. In each frame the model's probability of the audited label is
compared across the terms:

- **change (dp)** of a term = its probability minus the mean probability over all the group's terms in the same
  frame (the reference: no term is privileged, and the changes of a frame add up to zero);
- **flip rate** = share of term pairs in a frame whose predicted labels differ (per group: all pairs; per term:
  the pairs that include it);
- for a sparse head, each active feature's **contribution** `x_j * m_j` to the target margin (`m` from
  `scoring.margin_weights`: for two classes the logit difference) is compared the same way, which names the features
  that carry the change.

Example:
    >>> report = identity_audit(model)                                  # the project's groups and templates
    >>> report = identity_audit(model, groups=["religion"], texts=comments, target_label="toxic")
    >>> report.groups[0]["flip_rate"], report.terms[0]["top_features"]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from . import scoring
from .report import IdentityAuditReport, record_report
from .terms import detected_groups, fill_template, resolve_groups, swap_terms, template_texts

REFERENCE = "the mean over the group's terms in the same sentence"
CONTRIBUTION = "feature value times its weight in the target margin (target logit minus the mean of the others)"


@dataclass
class _Frame:
    group: str
    source: str          # the template, or the original text
    terms: list[str]
    rows: list[int]      # row of each term's text in the encoded batch
    original: str | None = None


def _template_frames(groups: dict, templates: list[str]) -> tuple[list[_Frame], list[str]]:
    texts: dict[str, int] = {}
    frames = []
    for template in templates:
        for group, terms in groups.items():
            rows = [texts.setdefault(fill_template(template, t), len(texts)) for t in terms]
            frames.append(_Frame(group, template, list(terms), rows))
    return frames, list(texts)


def _text_frames(groups: dict, texts: list[str]) -> tuple[list[_Frame], list[str]]:
    batch: dict[str, int] = {}
    frames = []
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must be strings; got {type(text).__name__}")
        for group, found in detected_groups(text, groups).items():
            terms = groups[group]
            rows = [batch.setdefault(swap_terms(text, group, t, groups), len(batch)) for t in terms]
            frames.append(_Frame(group, text, list(terms), rows, original=found[0]))
    return frames, list(batch)


def identity_audit(
    model,
    groups=None,
    templates=None,
    texts=None,
    *,
    target_label=None,
    head: str = "sparse",
    batch_size: int = 64,
    max_length: int | None = 128,
    top_features: int = 5,
    n_examples: int = 5,
    record: bool = True,
) -> IdentityAuditReport:
    """Swap identity terms and measure, per group and term, the change of the probability of `target_label`.

    Args:
        groups: None (the project's `IDENTITY_TERMS`), group names, or your own {group: [terms]}.
        templates: None (the project's `TEMPLATES`) or your own strings with a `{term}`, `{Term}` or `{a_term}` slot.
            Ignored when `texts` is given.
        texts: real sentences: the groups' terms are found in them (`terms.find_terms`) and swapped for each term
            of the same group; texts without a term are skipped.
        target_label: the audited label (name, id, or a list); default class 1 of a two-class model, else a label
            named "toxic", "positive", ...
        head: "sparse" (default; feature contributions are reported) or "dense".
        record: store the report as `model.audit_reports["identity"]`.

    Returns an `IdentityAuditReport`; see `hf_sparse.audit.report` for its tables.
    """
    groups = resolve_groups(groups)
    ids, target_name = scoring.target_ids(model, target_label)
    if texts is not None:
        texts = [texts] if isinstance(texts, str) else list(texts)
        frames, batch = _text_frames(groups, texts)
        mode, used_templates = "texts", None
        if not frames:
            raise ValueError(f"None of the {len(texts)} texts contains an identity term of the groups "
                             f"{sorted(groups)}; pass other texts or groups= with the terms they use.")
    else:
        used_templates = template_texts(templates)
        frames, batch = _template_frames(groups, used_templates)
        mode = "templates"
    X = model.encode(batch, batch_size=batch_size, max_length=max_length)
    report = score_frames(model, X, frames, batch, mode=mode, ids=ids, target_name=target_name, head=head,
                          groups=groups, templates=used_templates, top_features=top_features, n_examples=n_examples)
    report.n_source_texts = len(texts) if texts is not None else None
    if record:
        record_report(model, "identity", report)
    return report


def rescore(model, report: IdentityAuditReport) -> IdentityAuditReport:
    """The same audit scored again with the model's current head, from the features kept by `identity_audit`
    (no forward pass); used by head edits for their before/after comparison."""
    if report._cache is None:
        raise ValueError("This report holds no features (it was loaded from JSON): run identity_audit again.")
    X, frames, batch, settings = report._cache
    new = score_frames(model, X, frames, batch, **settings)
    new.n_source_texts = report.n_source_texts
    return new


def score_frames(model, X, frames, batch, *, mode, ids, target_name, head, groups, templates, top_features=5,
                 n_examples=5) -> IdentityAuditReport:
    """Compute the report's tables from the features `X` of `batch` (the texts of all frames)."""
    probs = scoring.probabilities(model, X, head)
    p = probs[:, ids].sum(1).clamp(max=1.0)
    pred = scoring.predictions(model, probs, ids)
    use_features = head == "sparse"
    if use_features:
        active = model.sparse_head.active_features.cpu()
        margin = scoring.margin_weights(model, ids)[active]
        contrib = torch.as_tensor(X).double()[:, active] * margin  # (n_texts, n_active)

    term_stats: dict[tuple[str, str], dict] = {}
    group_stats: dict[str, dict] = {}
    gaps = []
    for frame in frames:
        rows = torch.tensor(frame.rows)
        pf, predf = p[rows], pred[rows]
        delta = pf - pf.mean()
        gs = group_stats.setdefault(frame.group, {"n": 0, "abs": 0.0, "gap": 0.0, "pairs": 0, "flips": 0,
                                                  "contrib": None})
        gs["n"] += 1
        gs["abs"] += float(delta.abs().mean())
        gs["gap"] += float(pf.max() - pf.min())
        if use_features:
            dc = contrib[rows] - contrib[rows].mean(0)  # (n_terms, n_active)
            gs["contrib"] = dc.abs().mean(0) + (gs["contrib"] if gs["contrib"] is not None else 0)
        for i, term in enumerate(frame.terms):
            ts = term_stats.setdefault((frame.group, term), {"n": 0, "p": 0.0, "d": 0.0, "abs": 0.0, "pairs": 0,
                                                              "flips": 0, "contrib": None})
            ts["n"] += 1
            ts["p"] += float(pf[i])
            ts["d"] += float(delta[i])
            ts["abs"] += float(delta[i].abs())
            if use_features:
                ts["contrib"] = dc[i] + (ts["contrib"] if ts["contrib"] is not None else 0)
        for i, j in itertools.combinations(range(len(frame.terms)), 2):
            flip = int(predf[i] != predf[j])
            gs["pairs"] += 1
            gs["flips"] += flip
            for k in (i, j):
                term_stats[(frame.group, frame.terms[k])]["pairs"] += 1
                term_stats[(frame.group, frame.terms[k])]["flips"] += flip
        hi, lo = int(pf.argmax()), int(pf.argmin())
        gaps.append((float(pf[hi] - pf[lo]), frame, hi, lo, pf))

    def feature_list(values, key, n):
        order = torch.argsort(values.abs(), descending=True)[:n]
        out = []
        for o in order.tolist():
            if abs(float(values[o])) <= 1e-12:  # the feature does not change with the term
                continue
            item = {"feature": int(active[o]), key: float(values[o])}
            if key == "mean_abs_delta_contribution":
                item["weight"] = float(margin[o])
            out.append(item)
        return out

    group_rows = []
    for g, s in group_stats.items():
        group_rows.append({
            "group": g, "n_frames": s["n"], "n_terms": len(groups[g]),
            "mean_abs_delta": s["abs"] / s["n"], "mean_gap": s["gap"] / s["n"],
            "flip_rate": s["flips"] / s["pairs"] if s["pairs"] else None,
            "top_features": feature_list(s["contrib"] / s["n"], "mean_abs_delta_contribution", top_features)
            if use_features and active.numel() else [],
        })
    term_rows = []
    for (g, t), s in term_stats.items():
        term_rows.append({
            "group": g, "term": t, "n": s["n"], "mean_probability": s["p"] / s["n"],
            "mean_delta": s["d"] / s["n"], "mean_abs_delta": s["abs"] / s["n"],
            "flip_rate": s["flips"] / s["pairs"] if s["pairs"] else None,
            "top_features": feature_list(s["contrib"] / s["n"], "mean_delta_contribution", 3)
            if use_features and active.numel() else [],
        })
    examples = []
    for gap, frame, hi, lo, pf in sorted(gaps, key=lambda item: -item[0])[:n_examples]:
        examples.append({"group": frame.group, "term_high": frame.terms[hi], "term_low": frame.terms[lo],
                         "text_high": batch[frame.rows[hi]], "text_low": batch[frame.rows[lo]],
                         "p_high": float(pf[hi]), "p_low": float(pf[lo]), "gap": gap})
    settings = dict(mode=mode, ids=ids, target_name=target_name, head=head, groups=groups, templates=templates,
                    top_features=top_features, n_examples=n_examples)
    return IdentityAuditReport(
        mode=mode, head=head, target_label=target_name, target_ids=list(ids), reference=REFERENCE,
        groups=group_rows, terms=term_rows, examples=examples, group_terms={g: list(t) for g, t in groups.items()},
        templates=templates, n_frames=len(frames), n_texts=len(batch),
        contribution=CONTRIBUTION if use_features else None, _cache=(X, frames, batch, settings),
    )
