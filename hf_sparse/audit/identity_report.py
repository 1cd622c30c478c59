"""`IdentityAuditReport`: what `identity_audit` (identity.py) found, as text, Markdown tables, a plot and JSON.

Example:
    >>> report = identity_audit(model, groups=["names"])
    >>> print(report); md = report.to_markdown("audit"); files = report.save_plots("card/audit")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..tables import markdown_table, text_table
from ..text_safety import escape_markdown
from .contrasts import (
    CONTRAST_INTERVAL,
    DISAGREEMENT_MARGIN,
    SIGN_MIN,
    _head_value,
    _signed,
    paired_contrast,
    resolve_contrast_side,
)
from .report import _features_cell, _figure, _image, _Report, _save, measured_before_edit, register


@register
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
    before_edit: str | None = None  # "Fix 1" / "Head edit 1": the figures describe the head before that edit
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
        parts += ["", text_table(headers + [f"top {feats}features"],
                                 [r + [_features_cell(g.get("top_features") or [], "mean_abs_delta_contribution")]
                                   for r, g in zip(rows, self.groups)])]
        if self.contrasts:
            parts += ["", f"Contrasts ({self.interval or CONTRAST_INTERVAL}):", text_table(*self._contrast_table())]
        if self.aggregates:
            parts += ["", text_table(*self._aggregate_table())]
        headers, rows = self._term_table()
        parts += ["", text_table(headers + [f"top {feats}features"],
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
        parts += measured_before_edit(self.before_edit)
        for line in self._warning_lines():
            parts += ["", f"**WARNING**: {escape_markdown(line.split(':', 1)[1].strip())}"]
        for line in self._note_lines():
            parts += ["", f"Note: {escape_markdown(line)}"]
        headers, rows = self._group_table()
        parts += ["", markdown_table(headers + ["features carrying the change (mean |d contribution|)"],
                                     [r + [_features_cell(g.get("top_features") or [], "mean_abs_delta_contribution")]
                                 for r, g in zip(rows, self.groups)])]
        if self.contrasts:
            parts += ["", f"Contrasts, A minus B ({escape_markdown(self.interval or CONTRAST_INTERVAL)}):", "",
                      markdown_table(*self._contrast_table())]
        if self.aggregates:
            parts += ["", markdown_table(*self._aggregate_table())]
        headers, rows = self._term_table(abs_delta=True)
        parts += ["", markdown_table(headers + ["top features (mean d contribution)"],
                                     [r + [_features_cell(t.get("top_features") or [], "mean_delta_contribution")]
                                 for r, t in zip(rows, self.terms)])]
        if self.examples:
            parts += ["", f"Largest changes ({escape_markdown(self.head)} head):", "",
                      markdown_table(["group", "text (high)", "p high", "text (low)", "p low"],
                                     [[e["group"], e["text_high"], e["p_high"], e["text_low"], e["p_low"]]
                                      for e in self.examples],
                                     redact=redact)]
        return "\n".join(parts) + _image(asset_dir, self.plot_name, "Mean change of probability per identity term")

    def save_plots(self, directory: str | os.PathLike) -> list[str]:
        """A horizontal bar chart of the mean probability change per term, coloured by group (one bar per head:
        the first solid, the others hatched)."""
        from ..plotting import grouped_barh, pyplot

        terms = list(self.terms)
        if not terms:
            return []
        fig, ax = _figure(900, max(300, 60 + 18 * len(terms) * len(self.heads)))
        colors = pyplot().get_cmap("tab10")
        groups = list(dict.fromkeys(t["group"] for t in terms))
        grouped_barh(ax, [f"{t['term']} ({t['group']})" for t in terms], [
            (f"{h} head", [_head_value(t, h, "mean_delta", self.head) or 0.0 for t in terms],
             {"color": [colors(groups.index(t["group"]) % 10) for t in terms], "hatch": "//" if k else None,
              "alpha": 1.0 if k == 0 else 0.55}) for k, h in enumerate(self.heads)])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(f"mean change of P({self.target_label}) vs the group's mean")
        ax.set_title(f"Identity-term audit ({self.mode}, {self._heads_text()})")
        if len(self.heads) > 1:
            ax.legend(fontsize=8, loc="lower right")
        return [_save(fig, directory, self.plot_name)]
