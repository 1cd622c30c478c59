"""The audit's results as plain dataclasses: JSON round trips, readable text, Markdown tables and plots.

Every report has `to_dict()` / `from_dict()` (JSON-safe: NaN becomes None), `to_json(path=None)`, `str(report)` (a
text table), `to_markdown(asset_dir="audit", redact=False)` and `save_plots(directory) -> [file names]`. Markdown
images point at `asset_dir/<file name>`, so a model card written to `card/` calls
`report.save_plots("card/audit")` and `report.to_markdown("audit")`; `asset_dir=None` leaves images out.

Dataset text is untrusted: `escape_markdown` neutralizes HTML and Markdown in it, and `redact=True` masks words from
a small built-in list of slurs and profanity (`REDACT_PATTERNS`), since toxicity data is offensive.

Audit functions record their report on the model (`model.audit_reports[key]`, see `record_report`);
`reports_to_json` / `reports_from_json` turn that dict into JSON (e.g. an `audit.json` next to a checkpoint) and back.

Example:
    >>> report = identity_audit(model)
    >>> print(report); report.to_json("identity.json")
    >>> files = report.save_plots("card/audit"); md = report.to_markdown("audit", redact=True)
    >>> same = IdentityAuditReport.from_dict(json.load(open("identity.json")))
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..text_safety import REDACT_PATTERNS, escape_markdown, redact_text  # noqa: F401  (re-exported)


# ----------------------------------------------------------------------------------- formatting helpers
def _clean(value: Any) -> Any:
    """JSON-safe copy: tuples become lists, dict keys strings, NaN/inf None, numpy/torch scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _clean(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.{digits}f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v, digits)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v, digits) for v in value)
    return str(value)


def _text_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _md_table(headers: list[str], rows: list[list[Any]], *, redact: bool = False) -> str:
    head = "| " + " | ".join(escape_markdown(h) for h in headers) + " |"
    rule = "| " + " | ".join("---" for _ in headers) + " |"
    body = ["| " + " | ".join(escape_markdown(_fmt(c), redact=redact) for c in row) + " |" for row in rows]
    return "\n".join([head, rule] + body)


def _features_cell(items: list[dict], value_key: str, limit: int = 3) -> str:
    return ", ".join(f"{d['feature']} ({_fmt(d[value_key], 3)})" for d in items[:limit]) or "–"


def _image(asset_dir: str | None, name: str, alt: str) -> str:
    if asset_dir is None:
        return ""
    return f"\n\n![{alt}]({asset_dir.rstrip('/')}/{name})"


def _figure(width_px: int = 900, height_px: int = 500, ncols: int = 1):
    """A figure `width_px` x `height_px` at 100 dpi, drawn off screen (Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    dpi = 100
    return plt.subplots(1, ncols, figsize=(width_px / dpi, height_px / dpi), dpi=dpi)


def _save(fig, directory: str | os.PathLike, name: str) -> str:
    import matplotlib.pyplot as plt

    Path(directory).mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(Path(directory) / name)
    plt.close(fig)
    return name


class _Report:
    """Shared behaviour: dict/JSON round trips."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict:
        """A JSON-safe dict of every field (plus `"type"`)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}
        return {"type": type(self).__name__, **_clean(data)}

    @classmethod
    def from_dict(cls, data: dict):
        """The report back from `to_dict()` output (unknown keys are an error, so typos do not pass silently)."""
        data = dict(data)
        kind = data.pop("type", cls.__name__)
        if kind != cls.__name__:
            raise ValueError(f"this is a {kind}, not a {cls.__name__}")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown fields {unknown}")
        return cls(**data)

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int = 2) -> str:
        """The report as JSON text; also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


# ----------------------------------------------------------------------------------- identity audit
class _ReportList:
    """A report that holds a list of reports (the field named by `_items`) and reads like that list."""

    _items: ClassVar[str] = ""

    def __iter__(self):
        return iter(getattr(self, self._items))

    def __len__(self) -> int:
        return len(getattr(self, self._items))

    def __getitem__(self, i):
        return getattr(self, self._items)[i]


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


@dataclass
class IdentityAuditReport(_Report):
    """Counterfactual token fairness: the target probability when only an identity term changes, per head.

    `heads`: the heads scored on the same features (e.g. ["sparse", "dense"]); `head` is the first, whose figures
    the rows carry at top level; every row also has `by_head` {head: figures}.
    `terms` rows: group, term, n (frames), mean_probability, mean_delta / mean_abs_delta (probability change vs the
    reference: the mean over the group's terms in the same sentence), flip_rate (share of swaps with this term
    that change the predicted label), top_features ([{feature, mean_delta_contribution}] of the sparse head).
    `groups` rows: group, n_frames, n_terms, mean_probability, mean_abs_delta, mean_gap (mean over sentences of the
    largest minus the smallest probability), flip_rate (share of term pairs whose predicted labels differ),
    top_features ([{feature, mean_abs_delta_contribution, weight}]).
    `aggregates` rows (term sets, `term_sets`, e.g. names_female): name, group, terms, n_frames, mean_probability,
    mean_delta (the set's mean minus the frame's mean). `contrasts` rows: a, b, n_frames, difference (mean of A minus
    mean of B over the frames holding both), ci_low / ci_high (`interval`), mean_a, mean_b. `disagreements`: where
    the heads disagree (`find_disagreements`). `examples`: the sentences with the largest gaps (first head).
    `ambiguous_unswapped` (texts mode): how many texts held ambiguous adjectives that were left as they are.

    Example:
        >>> report = identity_audit(model, groups=["names"])
        >>> report.contrast("female names", "male names")["by_head"]["dense"]["difference"]
        >>> [d["message"] for d in report.disagreements]
    """

    mode: str  # "templates" or "texts"
    head: str
    target_label: str
    target_ids: list
    reference: str
    groups: list = field(default_factory=list)
    terms: list = field(default_factory=list)
    examples: list = field(default_factory=list)
    group_terms: dict = field(default_factory=dict)
    templates: list | None = None
    n_frames: int = 0
    n_texts: int = 0
    n_source_texts: int | None = None
    contribution: str | None = None
    heads: list | None = None
    aggregates: list = field(default_factory=list)
    contrasts: list = field(default_factory=list)
    term_sets: dict = field(default_factory=dict)
    interval: str | None = None
    disagreements: list = field(default_factory=list)
    disagreement_margin: float = DISAGREEMENT_MARGIN
    sign_min: float = SIGN_MIN
    swap_ambiguous: bool | None = None
    ambiguous_unswapped: dict | None = None
    notes: list = field(default_factory=list)
    _cache: Any = field(default=None, repr=False, compare=False)

    kind: ClassVar[str] = "identity"
    plot_name: ClassVar[str] = "identity_delta.png"

    def __post_init__(self):
        if not self.heads:
            self.heads = [self.head]

    @property
    def max_flip_rate(self) -> float | None:
        """The largest flip rate over the groups (first head)."""
        rates = [g["flip_rate"] for g in self.groups if g.get("flip_rate") is not None]
        return max(rates) if rates else None

    def summary(self) -> dict[str, dict[str, float]]:
        """{group: {flip_rate, mean_abs_delta}} of the first head: what an edit's before/after report compares."""
        return {g["group"]: {"flip_rate": g["flip_rate"], "mean_abs_delta": g["mean_abs_delta"]} for g in self.groups}

    def contrast(self, a, b, head: str | None = None) -> dict:
        """A minus B: the mean difference of the target probability over the frames holding both, a 95% t-interval
        and n, for every head (`by_head`), or for one head's figures with `head=`.

        A side is a term set ("names_female", or "female names"), a group, a term, or a list of terms. Needs the
        audit's kept probabilities, or a contrast already in `contrasts` (e.g. after loading from JSON).
        """
        label_a, pairs_a = resolve_contrast_side(a, self.term_sets, self.group_terms)
        label_b, pairs_b = resolve_contrast_side(b, self.term_sets, self.group_terms)
        row = None
        if self._cache is not None and getattr(self._cache, "probs", None) is not None:
            row = {"a": label_a, "b": label_b, "a_terms": pairs_a, "b_terms": pairs_b, "interval": CONTRAST_INTERVAL,
                   **paired_contrast(self._cache.frames, self._cache.probs, pairs_a, pairs_b)}
            if not row["n_frames"]:
                raise ValueError(f"{label_a!r} and {label_b!r} never appear in the same sentence frame: contrast "
                                 "sets of groups that fill the same templates (or are found in the same texts).")
            first = row["by_head"].get(self.head) or {}
            row.update({k: first.get(k) for k in ("difference", "ci_low", "ci_high", "mean_a", "mean_b")})
        else:
            for c in self.contrasts:
                if (c["a"], c["b"]) == (label_a, label_b):
                    row = c
            if row is None:
                raise ValueError(f"This report keeps no probabilities (it was loaded from JSON) and has no contrast "
                                 f"{label_a!r} - {label_b!r}: run identity_audit(model, contrasts=[({a!r}, {b!r})]).")
        if head is None:
            return row
        if head not in row["by_head"]:
            raise ValueError(f"head {head!r} was not audited; heads: {self.heads}")
        return {"a": row["a"], "b": row["b"], "n_frames": row["n_frames"], "head": head, **row["by_head"][head]}

    # ------------------------------------------------------------------ rendering
    def _warning_lines(self) -> list[str]:
        return [f"WARNING: {d['message']}" for d in self.disagreements]

    def _note_lines(self) -> list[str]:
        lines = list(self.notes)
        amb = self.ambiguous_unswapped
        if amb and amb.get("n_texts"):
            terms = ", ".join(f"{t} ({n})" for t, n in (amb.get("terms") or {}).items())
            lines.append(f"{amb['n_texts']} of the texts hold ambiguous adjectives left unswapped: {terms}. "
                         + (amb.get("how") or ""))
        return lines

    def _group_table(self):
        headers = ["group", "frames"] + [f"{k} ({h})" for h in self.heads for k in ("mean p", "mean |dp|", "flip rate")]
        rows = [[g["group"], g["n_frames"]] + [_head_value(g, h, k, self.head) for h in self.heads
                                                 for k in ("mean_probability", "mean_abs_delta", "flip_rate")]
                for g in self.groups]
        return headers, rows

    def _contrast_table(self):
        headers = ["A - B", "frames"] + [f"difference [95% CI] ({h})" for h in self.heads]
        rows = []
        for c in self.contrasts:
            cells = []
            for h in self.heads:
                v = (c.get("by_head") or {}).get(h) or {}
                ci = (f" [{_signed(v.get('ci_low'))}, {_signed(v.get('ci_high'))}]"
                      if v.get("ci_low") is not None else "")
                cells.append(_signed(v.get("difference")) + ci)
            rows.append([f"{c['a']} - {c['b']}", c["n_frames"]] + cells)
        return headers, rows

    def _aggregate_table(self):
        headers = ["term set", "group", "frames"] + [f"{k} ({h})" for h in self.heads for k in ("mean p", "mean dp")]
        rows = [[s["name"], s["group"], s["n_frames"]] + [_head_value(s, h, k, self.head) for h in self.heads
                                                          for k in ("mean_probability", "mean_delta")]
                for s in self.aggregates]
        return headers, rows

    def _term_table(self, abs_delta: bool = False):
        keys = ("mean_probability", "mean_delta") + (("mean_abs_delta",) if abs_delta else ()) + ("flip_rate",)
        names = {"mean_probability": "mean p", "mean_delta": "mean dp", "mean_abs_delta": "mean |dp|",
                 "flip_rate": "flip rate"}
        headers = ["group", "term"] + [f"{names[k]} ({h})" for h in self.heads for k in keys]
        rows = [[t["group"], t["term"]] + [_head_value(t, h, k, self.head) for h in self.heads for k in keys]
                for t in self.terms]
        return headers, rows

    def _heads_text(self) -> str:
        return " and ".join(self.heads) + (" heads side by side" if len(self.heads) > 1 else " head")

    def __str__(self) -> str:
        head = (f"Identity audit ({self.mode}, {self._heads_text()}, P({self.target_label})): {self.n_frames} "
                f"sentence frames, {self.n_texts} texts scored. Reference: {self.reference}.")
        parts = [head] + self._warning_lines() + [f"note: {n}" for n in self._note_lines()]
        headers, rows = self._group_table()
        feats = "sparse " if len(self.heads) > 1 else ""
        parts += ["", _text_table(headers + [f"top {feats}features"],
                                  [r + [_features_cell(g.get("top_features") or [], "mean_abs_delta_contribution")]
                                   for r, g in zip(rows, self.groups)])]
        if self.contrasts:
            parts += ["", f"Contrasts ({self.interval or CONTRAST_INTERVAL}):", _text_table(*self._contrast_table())]
        if self.aggregates:
            parts += ["", _text_table(*self._aggregate_table())]
        headers, rows = self._term_table()
        parts += ["", _text_table(headers + [f"top {feats}features"],
                                  [r + [_features_cell(t.get("top_features") or [], "mean_delta_contribution")]
                                   for r, t in zip(rows, self.terms)])]
        return "\n".join(parts)

    def to_markdown(self, asset_dir: str | None = "audit", *, redact: bool = False) -> str:
        """An "Identity-term audit" section: method, warnings where the heads disagree, per-group, contrast, term-set
        and per-term tables (every head side by side), example swaps, plot."""
        source = "sentences from templates" if self.mode == "templates" else "terms swapped in real texts"
        parts = [
            "### Identity-term audit",
            "",
            f"Probability of **{escape_markdown(self.target_label)}** from the {escape_markdown(self._heads_text())} "
            f"(the same features) when only an identity term changes ({source}; "
            f"{self.n_frames} sentence frames, {self.n_texts} texts). Change (dp) is measured against "
            f"{escape_markdown(self.reference)}; the flip rate is the share of term swaps that change the predicted label."
            + (f" Feature contributions: {escape_markdown(self.contribution)}." if self.contribution else ""),
        ]
        for line in self._warning_lines():
            parts += ["", f"**WARNING**: {escape_markdown(line.split(':', 1)[1].strip())}"]
        for line in self._note_lines():
            parts += ["", f"Note: {escape_markdown(line)}"]
        headers, rows = self._group_table()
        parts += ["", _md_table(headers + ["features carrying the change (mean |d contribution|)"],
                                [r + [_features_cell(g.get("top_features") or [], "mean_abs_delta_contribution")]
                                 for r, g in zip(rows, self.groups)])]
        if self.contrasts:
            parts += ["", f"Contrasts, A minus B ({escape_markdown(self.interval or CONTRAST_INTERVAL)}):", "",
                      _md_table(*self._contrast_table())]
        if self.aggregates:
            parts += ["", _md_table(*self._aggregate_table())]
        headers, rows = self._term_table(abs_delta=True)
        parts += ["", _md_table(headers + ["top features (mean d contribution)"],
                                [r + [_features_cell(t.get("top_features") or [], "mean_delta_contribution")]
                                 for r, t in zip(rows, self.terms)])]
        if self.examples:
            parts += ["", f"Largest changes ({escape_markdown(self.head)} head):", "",
                      _md_table(["group", "text (high)", "p high", "text (low)", "p low"],
                                [[e["group"], e["text_high"], e["p_high"], e["text_low"], e["p_low"]] for e in self.examples],
                                redact=redact)]
        return "\n".join(parts) + _image(asset_dir, self.plot_name, "Mean change of probability per identity term")

    def save_plots(self, directory: str | os.PathLike) -> list[str]:
        """A horizontal bar chart of the mean probability change per term, coloured by group (one bar per head:
        the first solid, the others hatched)."""
        import matplotlib.pyplot as plt

        terms = list(self.terms)
        if not terms:
            return []
        fig, ax = _figure(900, max(300, 60 + 18 * len(terms) * len(self.heads)))
        colors = plt.get_cmap("tab10")
        groups = list(dict.fromkeys(t["group"] for t in terms))
        height = 0.8 / len(self.heads)
        for k, h in enumerate(self.heads):
            y = [len(terms) - 1 - i + 0.4 - (k + 0.5) * height for i in range(len(terms))]
            ax.barh(y, [_head_value(t, h, "mean_delta", self.head) or 0.0 for t in terms], height=height,
                    color=[colors(groups.index(t["group"]) % 10) for t in terms], hatch="//" if k else None,
                    alpha=1.0 if k == 0 else 0.55, label=f"{h} head")
        ax.set_yticks([len(terms) - 1 - i for i in range(len(terms))],
                      [f"{t['term']} ({t['group']})" for t in terms], fontsize=9)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(f"mean change of P({self.target_label}) vs the group's mean")
        ax.set_title(f"Identity-term audit ({self.mode}, {self._heads_text()})")
        if len(self.heads) > 1:
            ax.legend(fontsize=8, loc="lower right")
        return [_save(fig, directory, self.plot_name)]


# ----------------------------------------------------------------------------------- subgroup metrics
@dataclass
class SubgroupReport(_Report):
    """Subgroup AUC, BPSN AUC and BNSP AUC per identity subgroup (Borkan et al. 2019), per head.

    `rows`: subgroup, n, n_positive, and for each metric a dict {head: AUC or None (undefined: one class missing)}.
    `overall_auc`, `generalized_mean` ({head: {metric: M_p}}) and `final_score` ({head: value}) follow the Jigsaw
    Unintended Bias metric: `w0 * overall + sum_m w_m * M_p(metric m over subgroups)`, p = `power`.
    `disagreements`: where the first head and another disagree (an AUC on opposite sides of 0.5, or figures more
    than `disagreement_margin` apart; `subgroup.find_subgroup_disagreements`), each {what, subgroup, measure, heads,
    values, reason, message}; printed as WARNING lines.

    Example:
        >>> report = subgroup_metrics(model, ds, text_column="comment", label_column="toxic")
        >>> [d["message"] for d in report.disagreements]      # empty when the heads agree
    """

    heads: list
    target_label: str
    source: str
    overall_auc: dict
    rows: list = field(default_factory=list)
    generalized_mean: dict = field(default_factory=dict)
    final_score: dict = field(default_factory=dict)
    power: float = -5.0
    weights: dict = field(default_factory=dict)
    n_examples: int = 0
    n_positive: int = 0
    skipped: dict = field(default_factory=dict)
    min_size: int = 1
    disagreements: list = field(default_factory=list)
    disagreement_margin: float | None = None

    kind: ClassVar[str] = "subgroup"
    plot_name: ClassVar[str] = "subgroup_auc.png"
    max_plotted: ClassVar[int] = 15  # the largest subgroups, so the plot stays legible
    metrics: ClassVar[tuple[str, ...]] = ("subgroup_auc", "bpsn_auc", "bnsp_auc")

    def _cols(self):
        return [f"{m.replace('_auc', '').upper() if m != 'subgroup_auc' else 'subgroup'} AUC ({h})"
                for m in self.metrics for h in self.heads]

    def _row_values(self, r):
        return [(r.get(m) or {}).get(h) for m in self.metrics for h in self.heads]

    def _summary_rows(self):
        rows = [["overall AUC"] + [self.overall_auc.get(h) for h in self.heads]]
        for m in self.metrics:
            rows.append([f"generalized mean (p={_fmt(self.power, 0)}) of {m}"]
                        + [(self.generalized_mean.get(h) or {}).get(m) for h in self.heads])
        rows.append(["final score"] + [self.final_score.get(h) for h in self.heads])
        return rows

    def __str__(self) -> str:
        head = (f"Subgroup metrics for P({self.target_label}), {self.n_examples} examples ({self.n_positive} "
                f"positive), subgroups from {self.source}.")
        warnings = "".join(f"\nWARNING: {d['message']}" for d in self.disagreements)
        rows = _text_table(["subgroup", "n", "n positive"] + self._cols(),
                           [[r["subgroup"], r["n"], r["n_positive"]] + self._row_values(r) for r in self.rows])
        return f"{head}{warnings}\n\n{rows}\n\n{_text_table(['metric'] + list(self.heads), self._summary_rows())}"

    def to_markdown(self, asset_dir: str | None = "audit", *, redact: bool = False) -> str:
        """A "Subgroup metrics" section: per-subgroup AUC table, summary table, plot."""
        parts = [
            "### Subgroup metrics",
            "",
            f"ROC AUC of P({escape_markdown(self.target_label)}) within each identity subgroup (subgroup AUC), on "
            "the subgroup's negatives against the background's positives (BPSN) and the subgroup's positives against "
            f"the background's negatives (BNSP), after Borkan et al. (2019); subgroups from {escape_markdown(self.source)}; "
            f"{self.n_examples} examples, {self.n_positive} positive. – marks an AUC that is undefined (one class missing).",
        ]
        for d in self.disagreements:
            parts += ["", f"**WARNING**: {escape_markdown(d['message'], redact=redact, max_chars=None)}"]
        parts += [
            "",
            _md_table(["subgroup", "n", "n positive"] + self._cols(),
                      [[r["subgroup"], r["n"], r["n_positive"]] + self._row_values(r) for r in self.rows]),
            "",
            _md_table(["metric"] + list(self.heads), self._summary_rows()),
        ]
        if self.skipped:
            parts += ["", f"Not scored (fewer than {self.min_size} examples): "
                      + ", ".join(f"{escape_markdown(k)} ({v})" for k, v in self.skipped.items()) + "."]
        return "\n".join(parts) + _image(asset_dir, self.plot_name, "Subgroup, BPSN and BNSP AUC per subgroup")

    def save_plots(self, directory: str | os.PathLike) -> list[str]:
        """Grouped horizontal bars: the three AUCs per subgroup, for each head."""
        rows = [r for r in self.rows if any(v is not None for v in self._row_values(r))]
        rows = sorted(rows, key=lambda r: -r["n"])[: self.max_plotted]
        if not rows:
            return []
        fig, ax = _figure(900, max(300, 100 + 10 * len(rows) * len(self.metrics) * len(self.heads)))
        import matplotlib.pyplot as plt

        colors = plt.get_cmap("tab10")
        n_bars = len(self.metrics) * len(self.heads)
        height = 0.8 / n_bars
        for i, (m, h) in enumerate((m, h) for m in self.metrics for h in self.heads):
            ys = [len(rows) - 1 - k + 0.4 - (i + 0.5) * height for k in range(len(rows))]
            vals = [((r.get(m) or {}).get(h)) for r in rows]
            ax.barh(ys, [v if v is not None else 0.0 for v in vals], height=height,
                    color=colors(self.metrics.index(m)), alpha=1.0 if h == self.heads[0] else 0.55,
                    label=f"{m.replace('_', ' ')} ({h})", hatch="//" if h != self.heads[0] else None)
        ax.set_yticks([len(rows) - 1 - k for k in range(len(rows))], [r["subgroup"] for r in rows], fontsize=9)
        ax.set_xlim(0, 1)
        ax.axvline(0.5, color="gray", linewidth=0.8, linestyle=":")
        ax.set_xlabel(f"ROC AUC of P({self.target_label})")
        ax.set_title("Subgroup metrics")
        ax.legend(fontsize=8, loc="lower right")
        return [_save(fig, directory, self.plot_name)]


# ----------------------------------------------------------------------------------- error slices
@dataclass
class ErrorSlice(_Report):
    """One spotlight: a region of feature space, holding `share` of the data, where the head's loss is high.

    `size` is the spotlight's total kernel weight (an effective number of examples); `members` are the
    `n_members` examples with the largest weights. Losses and accuracies are kernel-weighted (`loss`,
    `accuracy`) and over the members (`member_loss`, `member_accuracy`). `examples`: the members with the
    largest weights ({index (row in the dataset), text, label, predicted, loss, weight}). `features`: the head's
    features that differ most in the slice ({feature, inside, outside, difference (standardized activations),
    shift (vs correctly classified examples of the slice's main true class), push (the logit margin towards the
    slice's main wrong class carried by that shift), class_gap (the same feature's gap between the two classes
    when they are classified right)}).
    """

    rank: int
    size: float
    share: float
    n_members: int
    loss: float
    accuracy: float
    member_loss: float
    member_accuracy: float
    label_counts: dict = field(default_factory=dict)
    predicted_counts: dict = field(default_factory=dict)
    main_error: dict | None = None
    examples: list = field(default_factory=list)
    features: list = field(default_factory=list)
    member_indices: list = field(default_factory=list)
    dense_accuracy: float | None = None  # the dense head's accuracy on the same members
    center: list | None = None  # the spotlight's center in the report's `projection` space
    radius2: float | None = None  # squared distance of the farthest member: `assign` uses it

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self, around: str | list[str] | None = None, width: int | None = None) -> str:
        """`str(slice)`, with the example texts whole or shortened around `around` (see `examples_table`)."""
        err = self.main_error or {}
        text = (f"Slice {self.rank}: {self.size:.1f} examples ({100 * self.share:.1f}%), loss {self.loss:.3f}, "
                f"accuracy {self.accuracy:.3f}; labels {self.label_counts}, predicted {self.predicted_counts}"
                + (f"; main error {err.get('true')} -> {err.get('predicted')}" if err else "")
                + (f"\nAccuracy on its {self.n_members} members: sparse head {self.member_accuracy:.3f}, dense head "
                   f"{self.dense_accuracy:.3f}" if self.dense_accuracy is not None else ""))
        feats = _text_table(["feature", "inside", "outside", "difference", "push"],
                            [[f["feature"], f["inside"], f["outside"], f["difference"], f.get("push")] for f in self.features])
        ex = self.examples_table(around, width)
        return f"{text}\n{feats}\n{ex}"

    def examples_table(self, around: str | list[str] | None = None, width: int | None = None) -> str:
        """The examples as a text table; texts whole (`width=None`), or shortened to `width` characters around the
        first occurrence of `around` (`hf_sparse.text_safety.excerpt`), so the part that matters is never cut."""
        from ..text_safety import excerpt

        return _text_table(["index", "label", "predicted", "loss", "text"],
                           [[e["index"], e["label"], e["predicted"], e["loss"],
                             excerpt(e.get("text"), around=around, width=width)] for e in self.examples])


@dataclass
class ErrorSliceReport(_ReportList, _Report):
    """The spotlights found by `find_error_slices`, best first; iterating it gives the `ErrorSlice`s."""

    slices: list
    n_examples: int
    spotlight_size: float
    space: str
    head: str
    split: str
    overall_loss: float
    overall_accuracy: float
    dense_overall_accuracy: float | None = None
    projection: dict | None = None  # {mean, std, pca_mean, components, scale}: raw features -> slice space
    warnings: list = field(default_factory=list)

    kind: ClassVar[str] = "error_slices"
    _items: ClassVar[str] = "slices"
    plot_name: ClassVar[str] = "error_slices.png"

    def assign(self, features) -> "torch.Tensor":  # noqa: F821
        """The rank of the slice each row of `features` ((n, d) head inputs, raw) falls in, 0 for none: a row is in
        a slice when it is at most as far from the slice's center as its farthest member. A slice found on the
        evaluation data thus becomes groups on the training data (`balanced_refit(model, groups=...)`).

        Example:
            >>> ranks = slices.assign(model.fit_data.train_features.features)   # 0 = in no slice
        """
        import torch

        if self.projection is None:
            raise ValueError("This report keeps no projection (it was made by an older version): run "
                             "find_error_slices again to assign rows to its slices.")
        p = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in self.projection.items() if v is not None}
        X = torch.as_tensor(features).double()
        if X.dim() != 2 or X.shape[1] != p["mean"].shape[0]:
            raise ValueError(f"features must be (n, {p['mean'].shape[0]}) head inputs; got {tuple(X.shape)}.")
        Z = (X - p["mean"]) / p["std"] - p["pca_mean"]
        if p.get("components") is not None and p["components"].numel():
            Z = Z @ p["components"].T
        Z = Z / p["scale"]
        ranks = torch.zeros(X.shape[0], dtype=torch.long)
        for s in reversed(self.slices):  # the best slice wins where slices overlap
            d2 = ((Z - torch.as_tensor(s.center, dtype=torch.float64)) ** 2).sum(1)
            ranks[d2 <= s.radius2 * (1 + 1e-9)] = s.rank
        return ranks

    def group_values(self, model, dataset=None, *, batch_size: int = 64, max_length: int | None = 128) -> list:
        """One slice rank per example of `dataset` (default: the training data of the model's last fit, read from
        its cached features with no forward pass), usable as `groups=` in `balanced_refit` / `fit_sparse_head`."""
        fit = getattr(model, "fit_data", None)
        if dataset is None or (fit is not None and dataset is fit.train_dataset):
            if fit is None:
                raise ValueError("group_values needs dataset= or a model with the features of a fit_sparse_head.")
            feats, n = fit.train_features, len(fit.train_dataset)
            ranks = self.assign(feats.features)
            out = [0] * n
            for r, rank in zip(feats.indices.tolist(), ranks.tolist()):
                out[int(r)] = rank
            return out
        column = fit.text_column if (fit and model._modality == "text") else (fit.image_column if fit else "text")
        X = model.encode(list(dataset[column]), batch_size=batch_size, max_length=max_length)
        return self.assign(X).tolist()

    def __post_init__(self):
        self.slices = [s if isinstance(s, ErrorSlice) else ErrorSlice.from_dict(s) for s in self.slices]

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["slices"] = [s.to_dict() for s in self.slices]
        return data

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self, around: str | list[str] | None = None, width: int | None = None) -> str:
        """`str(report)`; example texts whole, or shortened to `width` characters around `around` when given."""
        dense = ("" if self.dense_overall_accuracy is None
                 else f", dense head accuracy {self.dense_overall_accuracy:.3f}")
        head = (f"Error slices ({self.head} head, {self.split} split, {self.n_examples} examples, overall loss "
                f"{self.overall_loss:.3f}, accuracy {self.overall_accuracy:.3f}{dense}); spotlights of "
                f"{100 * self.spotlight_size:.1f}% of the data in {self.space}.")
        head += "".join(f"\nWARNING: {w}" for w in self.warnings)
        return "\n\n".join([head] + [s.to_text(around, width) for s in self.slices])

    def _has_dense(self) -> bool:
        return self.dense_overall_accuracy is not None or any(s.dense_accuracy is not None for s in self.slices)

    @staticmethod
    def _examples_markdown(examples: list, redact: bool, around, text_chars: int | None) -> str:
        """The examples table; each text escaped whole, or cut to `text_chars` around `around` (never cut away)."""
        rows = [[_fmt(e["index"]), _fmt(e["label"]), _fmt(e["predicted"]), _fmt(e["loss"])] for e in examples]
        texts = [escape_markdown(e.get("text"), redact=redact, max_chars=text_chars, around=around) for e in examples]
        head = "| row | label | predicted | loss | text |\n| --- | --- | --- | --- | --- |"
        return "\n".join([head] + ["| " + " | ".join([escape_markdown(c, redact=redact) for c in r] + [t]) + " |"
                                    for r, t in zip(rows, texts)])

    def to_markdown(self, asset_dir: str | None = "audit", *, redact: bool = False, n_examples: int = 5,
                    around: str | list[str] | None = None, text_chars: int | None = None) -> str:
        """An "Error slices" section: a summary table, and per slice its features and example inputs (texts whole,
        or cut to `text_chars` characters around the first occurrence of `around`, e.g. a suspected shortcut)."""
        parts = [
            "### Error slices",
            "",
            f"Regions of the head's input space where the {escape_markdown(self.head)} head's loss is high, found "
            f"with the Spotlight method (D'Eon et al. 2022) on the {escape_markdown(self.split)} features "
            f"({self.n_examples} examples, overall loss {self.overall_loss:.3f}, accuracy {self.overall_accuracy:.3f}). "
            f"Each spotlight is a Gaussian kernel holding {100 * self.spotlight_size:.1f}% of the data "
            f"({escape_markdown(self.space)}); later spotlights avoid the examples of earlier ones."
            + ("" if self.dense_overall_accuracy is None else
               f" The dense head (the model before sparsification) scores accuracy {self.dense_overall_accuracy:.3f} "
               "on the same features; each slice's accuracy over its members is shown for both heads."),
        ]
        for w in self.warnings:
            parts += ["", f"**WARNING**: {escape_markdown(w, redact=redact, max_chars=None)}"]
        dense = self._has_dense()
        headers = (["slice", "size", "share", "loss", "accuracy"]
                   + ([f"member accuracy ({self.head})", "member accuracy (dense)"] if dense else [])
                   + ["main error", "features (push)"])
        parts += ["", _md_table(headers, [
            [s.rank, f"{s.size:.1f}", f"{100 * s.share:.1f}%", s.loss, s.accuracy]
            + ([s.member_accuracy, s.dense_accuracy] if dense else [])
            + [f"{s.main_error['true']} → {s.main_error['predicted']}" if s.main_error else "–",
               _features_cell(s.features, "push")] for s in self.slices])]
        for s in self.slices:
            parts += ["", f"**Slice {s.rank}** — top examples:", "",
                      self._examples_markdown(s.examples[:n_examples], redact, around, text_chars)]
        return "\n".join(parts) + _image(asset_dir, self.plot_name, "Loss and size of each error slice")

    def save_plots(self, directory: str | os.PathLike) -> list[str]:
        """Bars of each slice's loss (with the overall loss as a line) and accuracy."""
        if not self.slices:
            return []
        fig, (ax1, ax2) = _figure(900, 380, ncols=2)
        names = [f"slice {s.rank}\n({100 * s.share:.0f}%)" for s in self.slices]
        ax1.bar(names, [s.loss for s in self.slices], color="tab:red")
        ax1.axhline(self.overall_loss, color="black", linestyle="--", linewidth=1, label="all data")
        ax1.set_ylabel("mean loss (kernel-weighted)")
        ax1.legend(fontsize=9)
        ax2.bar(names, [s.accuracy for s in self.slices], color="tab:blue")
        ax2.axhline(self.overall_accuracy, color="black", linestyle="--", linewidth=1, label="all data")
        ax2.set_ylabel("accuracy (kernel-weighted)")
        ax2.set_ylim(0, 1)
        ax2.legend(fontsize=9)
        fig.suptitle(f"Error slices of the {self.head} head")
        return [_save(fig, directory, self.plot_name)]


# ----------------------------------------------------------------------------------- head edits
@dataclass
class EditReport(_Report):
    """What a head edit changed: the features removed or reweighted, and accuracy/loss (and identity-audit
    summaries, when an audit was recorded) before and after, on `split`. With a refit, `no_refit` holds what the
    removal alone gave ({accuracy, loss, worst_slice_accuracy, slice_accuracy}), shown in its own column, and
    `notes` say when the refit did worse than it.

    Example:
        >>> report = model.edit_features(remove=[12], refit=True)
        >>> report.no_refit["accuracy"], report.after["accuracy"]; print("\n".join(report.notes))
    """

    removed: list
    reweighted: dict
    refit: bool
    split: str
    n_examples: int
    before: dict
    after: dict
    audit_before: dict | None = None
    audit_after: dict | None = None
    slice_accuracy: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    index: int = 1
    no_refit: dict | None = None

    kind: ClassVar[str] = "edits"

    @property
    def plot_name(self) -> str:
        return f"edit_{self.index}.png"

    def _headers(self) -> list[str]:
        return ["metric", "before", "after"] + (["removal alone (no refit)"] if self.no_refit else [])

    def _rows(self):
        keys = [k for k in ("accuracy", "loss", "nnz", "n_features") if k in self.before or k in self.after]
        alone = self.no_refit or {}
        alone_slices = alone.get("slice_accuracy") or {}
        extra = (lambda value: [value]) if self.no_refit else (lambda value: [])  # noqa: E731
        rows = [[k, self.before.get(k), self.after.get(k)] + extra(alone.get(k) if k in ("accuracy", "loss")
                                                                     else self.after.get(k)) for k in keys]
        rows += [[f"accuracy in error slice {r}", v.get("before"), v.get("after")] + extra(alone_slices.get(str(r)))
                 for r, v in self.slice_accuracy.items()]
        return rows

    def _audit_rows(self):
        if not self.audit_before or not self.audit_after:
            return []
        rows = []
        for g in self.audit_before:
            b, a = self.audit_before[g], self.audit_after.get(g, {})
            rows.append([g, b.get("flip_rate"), a.get("flip_rate"), b.get("mean_abs_delta"), a.get("mean_abs_delta")])
        return rows

    def _what(self) -> str:
        bits = []
        if self.removed:
            bits.append(f"removed feature{'s' if len(self.removed) > 1 else ''} {', '.join(map(str, self.removed))}")
        if self.reweighted:
            bits.append("reweighted " + "; ".join(f"{k}: {_fmt(v)}" for k, v in self.reweighted.items()))
        bits.append("refit the rest of the head" if self.refit else "no refit")
        return "; ".join(bits)

    def __str__(self) -> str:
        text = f"Edit {self.index}: {self._what()} (on {self.split}, {self.n_examples} examples)\n"
        text += _text_table(self._headers(), self._rows())
        if self._audit_rows():
            text += "\n\n" + _text_table(["group", "flip rate before", "after", "mean |dp| before", "after"], self._audit_rows())
        if self.notes:
            text += "\n" + "\n".join(f"note: {n}" for n in self.notes)
        return text

    def to_markdown(self, asset_dir: str | None = "audit", *, redact: bool = False) -> str:
        """A "Head edit" section: what was changed and a before/after table."""
        parts = [f"### Head edit {self.index}", "",
                 f"{escape_markdown(self._what())}. Measured on the {escape_markdown(self.split)} split "
                 f"({self.n_examples} examples).", "",
                 _md_table(self._headers(), self._rows())]
        if self._audit_rows():
            parts += ["", _md_table(["identity group", "flip rate before", "flip rate after", "mean |dp| before",
                                     "mean |dp| after"], self._audit_rows())]
        parts += [f"\n{escape_markdown(n)}" for n in self.notes]
        return "\n".join(parts) + _image(asset_dir, self.plot_name, "Accuracy before and after the edit")

    def save_plots(self, directory: str | os.PathLike) -> list[str]:
        """Accuracy (and loss) before and after the edit."""
        keys = [k for k in ("accuracy", "loss") if self.before.get(k) is not None and self.after.get(k) is not None]
        if not keys:
            return []
        fig, axes = _figure(800, 350, ncols=len(keys))
        axes = [axes] if len(keys) == 1 else list(axes)
        for ax, k in zip(axes, keys):
            ax.bar(["before", "after"], [self.before[k], self.after[k]], color=["tab:gray", "tab:green"])
            ax.set_ylabel(f"{k} ({self.split})")
            if k == "accuracy":
                ax.set_ylim(0, 1)
        fig.suptitle(f"Head edit {self.index}: {self._what()}"[:110])
        return [_save(fig, directory, self.plot_name)]


@dataclass
class EditHistory(_ReportList, _Report):
    """Every head edit and fix of a model, in order (what `model.audit_reports["edits"]` holds); iterate for
    `EditReport`s and `FixReport`s."""

    edits: list = field(default_factory=list)

    kind: ClassVar[str] = "edits"
    _items: ClassVar[str] = "edits"

    def __post_init__(self):
        # Head edits and fixes (`FixReport`, registered in REPORT_CLASSES by fix_report.py) share the history.
        self.edits = [e if isinstance(e, _Report) else REPORT_CLASSES[e.get("type", "EditReport")].from_dict(e)
                      for e in self.edits]

    def append(self, report) -> None:
        self.edits.append(report)

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, "edits": [e.to_dict() for e in self.edits]}

    def __str__(self) -> str:
        return "\n\n".join(str(e) for e in self.edits)

    def to_markdown(self, asset_dir: str | None = "audit", *, redact: bool = False) -> str:
        """One "Head edit" section per edit."""
        return "\n\n".join(e.to_markdown(asset_dir, redact=redact) for e in self.edits)

    def save_plots(self, directory: str | os.PathLike) -> list[str]:
        return [name for e in self.edits for name in e.save_plots(directory)]


# ----------------------------------------------------------------------------------- recording
REPORT_CLASSES = {c.__name__: c for c in (IdentityAuditReport, SubgroupReport, ErrorSliceReport, ErrorSlice,
                                          EditReport, EditHistory)}
#: The keys of `model.audit_reports`, in the order a model card shows them.
REPORT_KEYS = ("identity", "subgroup", "error_slices", "edits")


def record_report(model, key: str, report) -> None:
    """Store `report` on the model as `model.audit_reports[key]`; edits are appended to an `EditHistory`."""
    if key not in REPORT_KEYS:
        raise ValueError(f"unknown report key {key!r}; one of {REPORT_KEYS}")
    reports = getattr(model, "audit_reports", None) or {}
    if key == "edits":
        history = reports.get("edits")
        if not isinstance(history, EditHistory):
            history = EditHistory()
        history.append(report)
        report = history
    reports[key] = report
    model.audit_reports = {k: reports[k] for k in sorted(reports, key=lambda k: REPORT_KEYS.index(k))}


def reports_to_json(reports: dict) -> dict:
    """`model.audit_reports` as a JSON-safe dict {"format", "version", key: report dict} (e.g. for audit.json)."""
    out: dict[str, Any] = {"format": "hf_sparse.audit", "version": 1}
    for key, value in (reports or {}).items():
        out[key] = value.to_dict()
    return out


def reports_from_json(data) -> dict:
    """The reports back from `reports_to_json` output (a dict or its JSON text)."""
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    if data.get("format") != "hf_sparse.audit":
        raise ValueError("not hf_sparse audit reports (no \"format\": \"hf_sparse.audit\")")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("format", "version"):
            continue
        kind = value.get("type") if isinstance(value, dict) else None
        if kind not in REPORT_CLASSES:
            raise ValueError(f"audit report {key!r} has unknown type {kind!r}")
        out[key] = REPORT_CLASSES[kind].from_dict(value)
    return out
