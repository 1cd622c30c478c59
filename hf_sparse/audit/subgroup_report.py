"""`SubgroupReport`: what `subgroup_metrics` (subgroup.py) found, as text, Markdown tables, a plot and JSON.

Example:
    >>> report = subgroup_metrics(model, ds, text_column="comment", label_column="toxic")
    >>> print(report); md = report.to_markdown("audit"); files = report.save_plots("card/audit")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

from ..tables import fmt, markdown_table, text_table
from ..text_safety import escape_markdown
from .report import _figure, _image, _Report, _save, measured_before_edit, register


@register
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
    before_edit: str | None = None  # "Fix 1" / "Head edit 1": the figures describe the head before that edit

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
            rows.append([f"generalized mean (p={fmt(self.power, 0)}) of {m}"]
                        + [(self.generalized_mean.get(h) or {}).get(m) for h in self.heads])
        rows.append(["final score"] + [self.final_score.get(h) for h in self.heads])
        return rows

    def __str__(self) -> str:
        head = (f"Subgroup metrics for P({self.target_label}), {self.n_examples} examples ({self.n_positive} "
                f"positive), subgroups from {self.source}.")
        warnings = "".join(f"\nWARNING: {d['message']}" for d in self.disagreements)
        rows = text_table(["subgroup", "n", "n positive"] + self._cols(),
                          [[r["subgroup"], r["n"], r["n_positive"]] + self._row_values(r) for r in self.rows])
        return f"{head}{warnings}\n\n{rows}\n\n{text_table(['metric'] + list(self.heads), self._summary_rows())}"

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
        parts += measured_before_edit(self.before_edit)
        for d in self.disagreements:
            parts += ["", f"**WARNING**: {escape_markdown(d['message'], redact=redact, max_chars=None)}"]
        parts += [
            "",
            markdown_table(["subgroup", "n", "n positive"] + self._cols(),
                           [[r["subgroup"], r["n"], r["n_positive"]] + self._row_values(r) for r in self.rows]),
            "",
            markdown_table(["metric"] + list(self.heads), self._summary_rows()),
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
        from ..plotting import grouped_barh, pyplot

        colors = pyplot().get_cmap("tab10")
        grouped_barh(ax, [r["subgroup"] for r in rows], [
            (f"{m.replace('_', ' ')} ({h})", [(r.get(m) or {}).get(h) for r in rows],
             {"color": colors(self.metrics.index(m)), "alpha": 1.0 if h == self.heads[0] else 0.55,
              "hatch": "//" if h != self.heads[0] else None}) for m in self.metrics for h in self.heads])
        ax.set_xlim(0, 1)
        ax.axvline(0.5, color="gray", linewidth=0.8, linestyle=":")
        ax.set_xlabel(f"ROC AUC of P({self.target_label})")
        ax.set_title("Subgroup metrics")
        ax.legend(fontsize=8, loc="lower right")
        return [_save(fig, directory, self.plot_name)]
