"""Identity-term perturbation audit (counterfactual token fairness, Garg et al. 2019), sparse and dense heads together.

A *frame* (`identity_frames.py` builds them) is one sentence with an identity slot and the group whose terms fill
it: a template from `hf_sparse.audit.terms` (or yours) with every term of a group, or a real text (`texts=`) in which
the group's terms were found and swapped for each of the group's terms (gendered nouns: every one flipped to its
female, then its male counterpart, "my father and his sons" -> "my mother and his daughters"). Adjective groups fill
`TEMPLATES`, person groups (first names by race and gender, gendered nouns and pronouns) fill `PERSON_TEMPLATES`.
This module scores them: in each frame the probability of the audited label is compared across the terms, for every
head in `heads` on the same features:

- **change (dp)** of a term = its probability minus the mean probability over all the group's terms in the same
  frame (the reference: no term is privileged, and the changes of a frame add up to zero);
- **flip rate** = share of term pairs in a frame whose predicted labels differ (per group: all pairs; per term:
  the pairs that include it);
- **term sets** (`terms.TERM_SETS`: names_female, names_black, gender_nouns_male, ...): mean probability and mean
  change of the set's terms;
- **contrasts** A - B (`contrasts=`, plus `terms.DEFAULT_CONTRASTS` where their groups are audited): in each frame
  holding both, the mean probability over A's terms minus the mean over B's; their mean over frames with a 95%
  t-interval over frames, and n;
- for a sparse head, each active feature's **contribution** `x_j * m_j` to the target margin (`m` from
  `scoring.margin_weights`: for two classes the logit difference) is compared the same way, which names the features
  that carry the change;
- **disagreements** between the heads (a contrast or a mean change of opposite sign, or apart by more than
  `report.DISAGREEMENT_MARGIN`) are listed in `report.disagreements` and printed as WARNING lines: an audit of the
  sparse head is not an audit of the model the user started from.

Example:
    >>> report = identity_audit(model)                      # project groups and templates, sparse and dense heads
    >>> report.contrast("black names", "white names")["by_head"]   # {"sparse": {difference, ci_low, ...}, "dense": ...}
    >>> report = identity_audit(model, texts=comments, target_label="toxic", swap_ambiguous=True)
    >>> print(report)                                       # WARNING lines where the heads disagree
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from . import scoring
from .contrasts import CONTRAST_INTERVAL, DISAGREEMENT_MARGIN, SIGN_MIN, find_disagreements, paired_contrast
from .identity_frames import (  # noqa: F401  (SWAP_AMBIGUOUS_HOW stays importable from here)
    SWAP_AMBIGUOUS_HOW,
    Frame,
    audited_term_sets,
    no_terms_message,
    resolve_contrasts,
    template_frames,
    text_frames,
)
from .identity_report import IdentityAuditReport
from .report import record_report
from .terms import PERSON_GROUPS, resolve_groups, template_texts

REFERENCE = "the mean over the group's terms in the same sentence"
CONTRIBUTION = "feature value times its weight in the target margin (target logit minus the mean of the others)"


@dataclass
class _AuditCache:
    """What `rescore` and `report.contrast` need: the features, frames, texts, settings and each head's P(target)."""

    X: torch.Tensor
    frames: list[Frame]
    batch: list[str]
    settings: dict
    probs: dict | None = None


def _default_heads(model) -> tuple[str, ...]:
    """("sparse", "dense") when the model keeps a dense head worth comparing (not the zero placeholder of a bare
    encoder wrapped by `from_encoder`), else ("sparse",)."""
    dense = getattr(model, "dense_head", None)
    if dense is None or getattr(model.config, "base_kind", None) == "encoder":
        return ("sparse",)
    if not bool(torch.count_nonzero(dense.weight.detach())):
        return ("sparse",)
    return ("sparse", "dense")


def _resolve_heads(model, heads, head) -> list[str]:
    if isinstance(heads, str):
        heads = (heads,)
    if heads is None:
        heads = (head,) if head is not None else _default_heads(model)
    elif head is not None and head != (list(heads) or [None])[0]:
        raise ValueError(f"head={head!r} and heads={tuple(heads)!r} disagree: pass only heads= (the first is the "
                         "one whose figures the rows carry).")
    heads = list(heads)
    bad = [h for h in heads if h not in scoring.HEADS]
    if bad or not heads or len(set(heads)) != len(heads):
        raise ValueError(f"heads must be distinct names from {scoring.HEADS}, e.g. ('sparse', 'dense'); got {heads!r}")
    if "dense" in heads and getattr(model, "dense_head", None) is None:
        raise ValueError("This model keeps no dense head: audit heads=('sparse',).")
    return heads


def identity_audit(
    model,
    groups=None,
    templates=None,
    texts=None,
    *,
    target_label=None,
    heads=None,
    head: str | None = None,
    contrasts=None,
    swap_ambiguous: bool = False,
    batch_size: int = 64,
    max_length: int | None = 128,
    top_features: int = 5,
    n_examples: int = 5,
    record: bool = True,
    progress: bool = True,
) -> IdentityAuditReport:
    """Swap identity terms and measure, per group, term set and term, the change of the probability of
    `target_label`, for the sparse and the dense head side by side.

    Args:
        groups: None (the project's: `IDENTITY_TERMS` adjectives, and `PERSON_GROUPS`: `names` by race and gender,
            `gender_nouns`), group names, or your own {group: [terms]}.
        templates: None (the project's `TEMPLATES` for adjective groups and `PERSON_TEMPLATES` for person groups) or
            your own strings with a `{term}` / `{Term}` / `{a_term}` slot, or a `{person}` / `{Person}` slot (the
            person as the subject). Ignored when `texts` is given.
        texts: real sentences: the groups' terms are found in them (`terms.find_terms`) and swapped for each term
            of the same group (gendered nouns: flipped to female, then male); texts without a term are skipped.
        heads: the heads to score, first one first in the rows: default ("sparse", "dense") when the model keeps a
            dense head, else ("sparse",). `head="dense"` is short for `heads=("dense",)`.
        contrasts: pairs (A, B) reported as A - B with a 95% t-interval over frames, added to the defaults (black vs
            white names, female vs male names and nouns); a side is a term set ("names_female", or in words "female
            names"), a group, a term, or a list of terms. `report.contrast(A, B)` computes others afterwards.
        swap_ambiguous: in `texts`, swap the adjectives that are also everyday words (`AMBIGUOUS_TERMS`: black,
            white, old, young, ...) wherever they occur; by default only before a word for people ("black people"),
            and the report counts the texts where some were left unswapped.
        target_label: the audited label (name, id, or a list); default class 1 of a two-class model, else a label
            named "toxic", "positive", ...
        record: store the report as `model.audit_reports["identity"]`.
        progress: a progress bar over the encoding of the filled sentences (the slow part: every frame times every
            term of its group, about 2,000 texts with the default groups); off with `progress=False` or
            `datasets.disable_progress_bars()`.

    Returns an `IdentityAuditReport`; see `hf_sparse.audit.report` for its tables.

    Example:
        >>> report = identity_audit(model, groups=["names", "gender_nouns"])
        >>> report.contrast("names_black", "names_white", head="dense")["difference"]
    """
    groups = resolve_groups(groups)
    ids, target_name = scoring.target_ids(model, target_label)
    heads = _resolve_heads(model, heads, head)
    notes: list[str] = []
    unswapped = None
    if texts is not None:
        texts = [texts] if isinstance(texts, str) else list(texts)
        frames, batch, unswapped = text_frames(groups, texts, bool(swap_ambiguous))
        mode, used_templates = "texts", None
        if not frames:
            raise ValueError(no_terms_message(groups, texts, unswapped))
    else:
        used_templates = template_texts(templates)
        frames, batch = template_frames(groups, used_templates, user_templates=templates is not None)
        mode = "templates"
        unfilled = [g for g in groups if not any(f.group == g for f in frames)]
        if not frames:
            raise ValueError(f"No template has a slot for the groups {sorted(groups)}: adjective groups need "
                             "{term}, {Term}, {a_term} or {A_term}; person groups "
                             f"({sorted(PERSON_GROUPS)}) need {{person}} or {{Person}}.")
        if unfilled:
            notes.append(f"groups with no template of their kind, not audited: {', '.join(unfilled)} (person groups "
                         "need a {person} slot, adjective groups a {term} slot).")
    term_sets = audited_term_sets(groups)
    resolved = resolve_contrasts(contrasts, term_sets, groups, frames)
    X = scoring.encode_texts(model, batch, batch_size=batch_size, max_length=max_length, progress=progress,
                             desc="identity audit: encoding sentences")
    meta = {"n_source_texts": len(texts) if texts is not None else None, "ambiguous_unswapped": unswapped,
            "swap_ambiguous": bool(swap_ambiguous) if texts is not None else None, "notes": notes}
    report = score_frames(model, X, frames, batch, mode=mode, ids=ids, target_name=target_name, heads=heads,
                          groups=groups, templates=used_templates, top_features=top_features, n_examples=n_examples,
                          contrasts=resolved, term_sets=term_sets, meta=meta)
    if record:
        record_report(model, "identity", report)
    return report


def rescore(model, report: IdentityAuditReport) -> IdentityAuditReport:
    """The same audit scored again with the model's current heads, from the features kept by `identity_audit`
    (no forward pass); used by head edits for their before/after comparison."""
    if report._cache is None:
        raise ValueError("This report holds no features (it was loaded from JSON): run identity_audit again.")
    cache = report._cache
    return score_frames(model, cache.X, cache.frames, cache.batch, **cache.settings)


def _head_tables(p, pred, frames):
    """Per-group and per-term sums for one head's P(target) `p` and predictions `pred` over the frames."""
    term_stats: dict[tuple[str, str], dict] = {}
    group_stats: dict[str, dict] = {}
    for frame in frames:
        rows = torch.tensor(frame.rows)
        pf, predf = p[rows], pred[rows]
        delta = pf - pf.mean()
        gs = group_stats.setdefault(frame.group, {"n": 0, "p": 0.0, "abs": 0.0, "gap": 0.0, "pairs": 0, "flips": 0})
        gs["n"] += 1
        gs["p"] += float(pf.mean())
        gs["abs"] += float(delta.abs().mean())
        gs["gap"] += float(pf.max() - pf.min())
        for i, term in enumerate(frame.terms):
            ts = term_stats.setdefault((frame.group, term), {"n": 0, "p": 0.0, "d": 0.0, "abs": 0.0, "pairs": 0,
                                                              "flips": 0})
            ts["n"] += 1
            ts["p"] += float(pf[i])
            ts["d"] += float(delta[i])
            ts["abs"] += float(delta[i].abs())
        for i, j in itertools.combinations(range(len(frame.terms)), 2):
            flip = int(predf[i] != predf[j])
            gs["pairs"] += 1
            gs["flips"] += flip
            for k in (i, j):
                term_stats[(frame.group, frame.terms[k])]["pairs"] += 1
                term_stats[(frame.group, frame.terms[k])]["flips"] += flip
    groups = {g: {"mean_probability": s["p"] / s["n"], "mean_abs_delta": s["abs"] / s["n"],
                  "mean_gap": s["gap"] / s["n"], "flip_rate": s["flips"] / s["pairs"] if s["pairs"] else None,
                  "n": s["n"]} for g, s in group_stats.items()}
    terms = {k: {"mean_probability": s["p"] / s["n"], "mean_delta": s["d"] / s["n"],
                 "mean_abs_delta": s["abs"] / s["n"], "flip_rate": s["flips"] / s["pairs"] if s["pairs"] else None,
                 "n": s["n"]} for k, s in term_stats.items()}
    return groups, terms


def _aggregates(p_by_head: dict, frames, term_sets: dict) -> list[dict]:
    """Per term set: over the frames of its group that hold some of its terms, the mean P over those terms and its
    difference to the frame's mean, per head."""
    rows = []
    for name, spec in term_sets.items():
        members = set(spec["terms"])
        by_head = {}
        n = 0
        for h, p in p_by_head.items():
            tot_p = tot_d = 0.0
            n = 0
            for f in frames:
                idx = [r for t, r in zip(f.terms, f.rows) if f.group == spec["group"] and t in members]
                if not idx:
                    continue
                set_mean = float(p[torch.tensor(idx)].mean())
                tot_p += set_mean
                tot_d += set_mean - float(p[torch.tensor(f.rows)].mean())
                n += 1
            by_head[h] = {"mean_probability": tot_p / n if n else None, "mean_delta": tot_d / n if n else None}
        if n:
            rows.append({"name": name, "group": spec["group"], "terms": list(spec["terms"]), "n_frames": n,
                         "by_head": by_head})
    return rows


def score_frames(model, X, frames, batch, *, mode, ids, target_name, heads, groups, templates, top_features=5,
                 n_examples=5, contrasts=(), term_sets=None, meta=None) -> IdentityAuditReport:
    """Compute the report's tables from the features `X` of `batch` (the texts of all frames), for every head."""
    heads = list(heads)
    primary = heads[0]
    p_by_head, tables = {}, {}
    for h in heads:
        probs = scoring.probabilities(model, X, h)
        p_by_head[h] = probs[:, ids].sum(1).clamp(max=1.0)
        tables[h] = _head_tables(p_by_head[h], scoring.predictions(model, probs, ids), frames)
    use_features = "sparse" in heads
    if use_features:
        active = model.sparse_head.active_features.cpu()
        margin = scoring.margin_weights(model, ids)[active]
        contrib = torch.as_tensor(X).double()[:, active] * margin  # (n_texts, n_active)
        group_contrib: dict[str, torch.Tensor] = {}
        term_contrib: dict[tuple[str, str], torch.Tensor] = {}
        for frame in frames:
            dc = contrib[frame.rows] - contrib[frame.rows].mean(0)  # (n_terms, n_active)
            group_contrib[frame.group] = dc.abs().mean(0) + group_contrib.get(frame.group, 0)
            for i, term in enumerate(frame.terms):
                term_contrib[(frame.group, term)] = dc[i] + term_contrib.get((frame.group, term), 0)

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

    group_keys = ("mean_probability", "mean_abs_delta", "mean_gap", "flip_rate")
    group_rows = []
    for g, s in tables[primary][0].items():
        by_head = {h: {k: tables[h][0][g][k] for k in group_keys} for h in heads}
        group_rows.append({
            "group": g, "n_frames": s["n"], "n_terms": len(groups[g]), **by_head[primary],
            "top_features": feature_list(group_contrib[g] / s["n"], "mean_abs_delta_contribution", top_features)
            if use_features and active.numel() else [],
            "by_head": by_head,
        })
    term_keys = ("mean_probability", "mean_delta", "mean_abs_delta", "flip_rate")
    term_rows = []
    for (g, t), s in tables[primary][1].items():
        by_head = {h: {k: tables[h][1][(g, t)][k] for k in term_keys} for h in heads}
        term_rows.append({
            "group": g, "term": t, "n": s["n"], **by_head[primary],
            "top_features": feature_list(term_contrib[(g, t)] / s["n"], "mean_delta_contribution", 3)
            if use_features and active.numel() else [],
            "by_head": by_head,
        })
    aggregates = _aggregates(p_by_head, frames, term_sets or {})
    for a in aggregates:
        a.update({k: a["by_head"][primary][k] for k in ("mean_probability", "mean_delta")})
    contrast_rows = []
    for la, pa, lb, pb in contrasts:
        c = {"a": la, "b": lb, "a_terms": pa, "b_terms": pb, **paired_contrast(frames, p_by_head, pa, pb)}
        c.update({k: c["by_head"][primary][k] for k in ("difference", "ci_low", "ci_high", "mean_a", "mean_b")})
        contrast_rows.append(c)

    p = p_by_head[primary]
    gaps = []
    for frame in frames:
        pf = p[torch.tensor(frame.rows)]
        hi, lo = int(pf.argmax()), int(pf.argmin())
        gaps.append((float(pf[hi] - pf[lo]), frame, hi, lo, pf))
    examples = []
    for gap, frame, hi, lo, pf in sorted(gaps, key=lambda item: -item[0])[:n_examples]:
        examples.append({"group": frame.group, "term_high": frame.terms[hi], "term_low": frame.terms[lo],
                         "text_high": batch[frame.rows[hi]], "text_low": batch[frame.rows[lo]],
                         "p_high": float(pf[hi]), "p_low": float(pf[lo]), "gap": gap})
    settings = dict(mode=mode, ids=ids, target_name=target_name, heads=heads, groups=groups, templates=templates,
                    top_features=top_features, n_examples=n_examples, contrasts=contrasts, term_sets=term_sets,
                    meta=meta)
    report = IdentityAuditReport(
        mode=mode, head=primary, heads=heads, target_label=target_name, target_ids=list(ids), reference=REFERENCE,
        groups=group_rows, terms=term_rows, examples=examples, group_terms={g: list(t) for g, t in groups.items()},
        templates=templates, n_frames=len(frames), n_texts=len(batch), aggregates=aggregates,
        contrasts=contrast_rows, term_sets=dict(term_sets or {}), interval=CONTRAST_INTERVAL,
        disagreement_margin=DISAGREEMENT_MARGIN, sign_min=SIGN_MIN,
        contribution=CONTRIBUTION if use_features else None, **(meta or {}),
        _cache=_AuditCache(X, frames, batch, settings, probs=p_by_head),
    )
    report.disagreements = find_disagreements(report, DISAGREEMENT_MARGIN, SIGN_MIN)
    return report
