"""How an identity audit compares terms and heads: contrast sides, paired contrasts with a t-interval, and the
places where two heads disagree. `IdentityAuditReport` (identity_report.py) and `identity_audit` use them.

Example:
    >>> label, pairs = resolve_contrast_side("female names", TERM_SETS, {"names": ["Emily", "Greg"]})
    >>> paired_contrast(frames, {"sparse": probs}, pairs_a, pairs_b)["by_head"]["sparse"]["difference"]
"""

from __future__ import annotations

import math
import re

#: Two heads disagree on a signed figure (a contrast, a term set's mean change) when the signs differ and
#: one of them is at least `SIGN_MIN` away from zero, or on any figure when they differ by more than
#: `DISAGREEMENT_MARGIN` (probability units).
DISAGREEMENT_MARGIN = 0.05
SIGN_MIN = 0.01
CONTRAST_INTERVAL = ("95% t-interval over frames: in each frame (a template, or a source text) the mean probability "
                     "over A's terms minus the mean over B's terms; mean of those differences +- t(0.975, n-1) * sd / "
                     "sqrt(n)")


def _head_value(row: dict, head: str, key: str, primary: str):
    """A row's figure for one head: from `by_head`, or (reports without it) the row's own for the primary head."""
    by_head = row.get("by_head")
    if by_head:
        return (by_head.get(head) or {}).get(key)
    return row.get(key) if head == primary else None


def _signed(value) -> str:
    return "–" if value is None else f"{value:+.3f}"


def _side_words(name: str) -> frozenset:
    return frozenset(w for w in re.split(r"[\s_]+", name.lower()) if w)


def resolve_contrast_side(side, term_sets: dict, group_terms: dict) -> tuple[str, list[list[str]]]:
    """(label, [[group, term], ...]) for one side of a contrast: a term set's name ("names_female"; also written as
    its words in any order, "female names", or uniquely a subset of them, "female nouns"), a group ("religion"), a
    term ("Muslim", or "religion:Muslim" where a term is in several groups), or a list of terms."""
    def term_pairs(item: str) -> list[list[str]]:
        if ":" in item:
            group, _, term = item.partition(":")
            hits = [[group, t] for t in group_terms.get(group, []) if t.lower() == term.strip().lower()]
        else:
            hits = [[g, t] for g, ts in group_terms.items() for t in ts if t.lower() == item.strip().lower()]
        if len(hits) > 1:
            raise ValueError(f"{item!r} is a term of several groups ({[g for g, _ in hits]}): write 'group:term'.")
        return hits

    if isinstance(side, (list, tuple)):
        pairs = []
        for item in side:
            found = term_pairs(str(item))
            if not found:
                raise ValueError(f"contrast side {list(side)!r}: {item!r} is not a term of the audited groups.")
            pairs += found
        return "+".join(str(s) for s in side), pairs
    if not isinstance(side, str):
        raise TypeError(f"a contrast side is a name or a list of terms, got {type(side).__name__}")
    usable = {n: s for n, s in term_sets.items() if s["group"] in group_terms}
    name = side if side in usable else None
    if name is None:
        words = _side_words(side)
        exact = [n for n in usable if _side_words(n) == words]
        wider = [n for n in usable if words and words <= _side_words(n)]
        name = exact[0] if exact else (wider[0] if len(wider) == 1 else None)
    if name is not None:
        s = usable[name]
        return name, [[s["group"], t] for t in s["terms"] if t in group_terms[s["group"]]]
    if side in group_terms:
        return side, [[side, t] for t in group_terms[side]]
    found = term_pairs(side)
    if found:
        return side, found
    raise ValueError(f"contrast side {side!r} is not a term set, group or term of this audit. Term sets: "
                     f"{sorted(usable) or 'none'}; groups: {sorted(group_terms)}; or pass a list of terms.")


def paired_contrast(frames, probs: dict, pairs_a, pairs_b) -> dict:
    """Per head, the mean over frames of (mean P over A's terms - mean P over B's terms), paired by source sentence,
    with a 95% t-interval; `frames` have `source_id`, `group`, `terms`, `rows`, `probs` is {head: P per row}."""
    from scipy.stats import t as student_t

    a, b = {tuple(p) for p in pairs_a}, {tuple(p) for p in pairs_b}
    by_source: dict = {}
    for frame in frames:
        side = by_source.setdefault(frame.source_id, ([], []))
        for term, row in zip(frame.terms, frame.rows):
            if (frame.group, term) in a:
                side[0].append(row)
            if (frame.group, term) in b:
                side[1].append(row)
    shared = [rows for rows in by_source.values() if rows[0] and rows[1]]
    n = len(shared)
    out = {}
    for head, p in probs.items():
        p = [float(v) for v in p]
        ma = [sum(p[r] for r in ra) / len(ra) for ra, _ in shared]
        mb = [sum(p[r] for r in rb) / len(rb) for _, rb in shared]
        diffs = [x - y for x, y in zip(ma, mb)]
        mean = sum(diffs) / n if n else None
        low = high = None
        if n > 1:
            sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
            half = float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
            low, high = mean - half, mean + half
        out[head] = {"difference": mean, "ci_low": low, "ci_high": high,
                     "mean_a": sum(ma) / n if n else None, "mean_b": sum(mb) / n if n else None}
    return {"n_frames": n, "by_head": out}


def find_disagreements(report, margin: float = DISAGREEMENT_MARGIN, sign_min: float = SIGN_MIN) -> list[dict]:
    """Where the report's heads disagree: in sign (one at least `sign_min` from zero) or by more than `margin`, on
    each contrast's difference, each term set's mean change, and each group's mean |change| (single terms are left
    out: compare them in `terms`, where every head's figures stand side by side)."""
    heads = list(report.heads)
    if len(heads) < 2:
        return []
    items = ([("contrast", f"{c['a']} - {c['b']}", c, "difference", True) for c in report.contrasts]
             + [("term set", s["name"], s, "mean_delta", True) for s in report.aggregates]
             + [("group", g["group"], g, "mean_abs_delta", False) for g in report.groups])
    out = []
    first = heads[0]
    for what, name, row, key, signed in items:
        for other in heads[1:]:
            x, y = _head_value(row, first, key, report.head), _head_value(row, other, key, report.head)
            if x is None or y is None:
                continue
            if signed and x * y < 0 and max(abs(x), abs(y)) >= sign_min:
                reason = "sign"
            elif abs(x - y) > margin:
                reason = "margin"
            else:
                continue
            how = "in sign" if reason == "sign" else f"by more than {margin:g}"
            out.append({"what": what, "name": name, "measure": key, "heads": [first, other],
                        "values": {first: x, other: y}, "reason": reason,
                        "message": f"the {first} and {other} heads disagree {how} on {what} {name} ({key}): "
                                   f"{first} {_signed(x)}, {other} {_signed(y)}"})
    return out


