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


@dataclass
class IdentityAuditReport(_Report):
    """Counterfactual token fairness: the target probability when only an identity term changes.

    `terms` rows: group, term, n (frames), mean_probability, mean_delta / mean_abs_delta (probability change vs the
    reference: the mean over the group's terms in the same sentence), flip_rate (share of swaps with this term
    that change the predicted label), top_features ([{feature, mean_delta_contribution}] for a sparse head).
    `groups` rows: group, n_frames, n_terms, mean_abs_delta, mean_gap (mean over sentences of the largest minus the
    smallest probability), flip_rate (share of term pairs whose predicted labels differ), top_features
    ([{feature, mean_abs_delta_contribution, weight}]). `examples`: the sentences with the largest gaps.
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
    _cache: Any = field(default=None, repr=False, compare=False)

    kind: ClassVar[str] = "identity"
    plot_name: ClassVar[str] = "identity_delta.png"

    @property
    def max_flip_rate(self) -> float | None:
        """The largest flip rate over the groups."""
        rates = [g["flip_rate"] for g in self.groups if g.get("flip_rate") is not None]
        return max(rates) if rates else None

    def summary(self) -> dict[str, dict[str, float]]:
        """{group: {flip_rate, mean_abs_delta}}: what an edit's before/after report compares."""
        return {g["group"]: {"flip_rate": g["flip_rate"], "mean_abs_delta": g["mean_abs_delta"]} for g in self.groups}

    def __str__(self) -> str:
        head = (f"Identity audit ({self.mode}, {self.head} head, P({self.target_label})): {self.n_frames} sentence "
                f"frames, {self.n_texts} texts scored. Reference: {self.reference}.")
        groups = _text_table(
            ["group", "frames", "mean |dp|", "mean gap", "flip rate", "top features"],
            [[g["group"], g["n_frames"], g["mean_abs_delta"], g["mean_gap"], g["flip_rate"],
              _features_cell(g.get("top_features") or [], "mean_abs_delta_contribution")] for g in self.groups],
        )
        terms = _text_table(
            ["group", "term", "mean p", "mean dp", "flip rate", "top features"],
            [[t["group"], t["term"], t["mean_probability"], t["mean_delta"], t["flip_rate"],
              _features_cell(t.get("top_features") or [], "mean_delta_contribution")] for t in self.terms],
        )
        return f"{head}\n\n{groups}\n\n{terms}"

    def to_markdown(self, asset_dir: str | None = "audit", *, redact: bool = False) -> str:
        """An "Identity-term audit" section: method, per-group and per-term tables, example swaps, plot."""
        source = "sentences from templates" if self.mode == "templates" else "terms swapped in real texts"
        parts = [
            "### Identity-term audit",
            "",
            f"Probability of **{escape_markdown(self.target_label)}** from the {escape_markdown(self.head)} head when "
            f"only an identity term changes ({source}; "
            f"{self.n_frames} sentence frames, {self.n_texts} texts). Change (dp) is measured against "
            f"{escape_markdown(self.reference)}; the flip rate is the share of term swaps that change the predicted label."
            + (f" Feature contributions: {escape_markdown(self.contribution)}." if self.contribution else ""),
            "",
            _md_table(
                ["group", "frames", "mean |dp|", "mean gap", "flip rate", "features carrying the change (mean |d contribution|)"],
                [[g["group"], g["n_frames"], g["mean_abs_delta"], g["mean_gap"], g["flip_rate"],
                  _features_cell(g.get("top_features") or [], "mean_abs_delta_contribution")] for g in self.groups],
            ),
            "",
            _md_table(
                ["group", "term", "mean p", "mean dp", "mean |dp|", "flip rate", "top features (mean d contribution)"],
                [[t["group"], t["term"], t["mean_probability"], t["mean_delta"], t["mean_abs_delta"], t["flip_rate"],
                  _features_cell(t.get("top_features") or [], "mean_delta_contribution")] for t in self.terms],
            ),
        ]
        if self.examples:
            parts += ["", "Largest changes:", "",
                      _md_table(["group", "text (high)", "p high", "text (low)", "p low"],
                                [[e["group"], e["text_high"], e["p_high"], e["text_low"], e["p_low"]] for e in self.examples],
                                redact=redact)]
        return "\n".join(parts) + _image(asset_dir, self.plot_name, "Mean change of probability per identity term")

    def save_plots(self, directory: str | os.PathLike) -> list[str]:
        """A horizontal bar chart of the mean probability change per term, coloured by group."""
        import matplotlib.pyplot as plt

        terms = list(self.terms)
        if not terms:
            return []
        fig, ax = _figure(900, max(300, 60 + 18 * len(terms)))
        colors = plt.get_cmap("tab10")
        groups = list(dict.fromkeys(t["group"] for t in terms))
        y = list(range(len(terms)))[::-1]
        ax.barh(y, [t["mean_delta"] or 0.0 for t in terms],
                color=[colors(groups.index(t["group"]) % 10) for t in terms])
        ax.set_yticks(y, [f"{t['term']} ({t['group']})" for t in terms], fontsize=9)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(f"mean change of P({self.target_label}) vs the group's mean")
        ax.set_title(f"Identity-term audit ({self.mode}, {self.head} head)")
        return [_save(fig, directory, self.plot_name)]


# ----------------------------------------------------------------------------------- subgroup metrics
@dataclass
class SubgroupReport(_Report):
    """Subgroup AUC, BPSN AUC and BNSP AUC per identity subgroup (Borkan et al. 2019), per head.

    `rows`: subgroup, n, n_positive, and for each metric a dict {head: AUC or None (undefined: one class missing)}.
    `overall_auc`, `generalized_mean` ({head: {metric: M_p}}) and `final_score` ({head: value}) follow the Jigsaw
    Unintended Bias metric: `w0 * overall + sum_m w_m * M_p(metric m over subgroups)`, p = `power`.
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
        rows = _text_table(["subgroup", "n", "n positive"] + self._cols(),
                           [[r["subgroup"], r["n"], r["n_positive"]] + self._row_values(r) for r in self.rows])
        return f"{head}\n\n{rows}\n\n{_text_table(['metric'] + list(self.heads), self._summary_rows())}"

    def to_markdown(self, asset_dir: str | None = "audit", *, redact: bool = False) -> str:
        """A "Subgroup metrics" section: per-subgroup AUC table, summary table, plot."""
        parts = [
            "### Subgroup metrics",
            "",
            f"ROC AUC of P({escape_markdown(self.target_label)}) within each identity subgroup (subgroup AUC), on "
            "the subgroup's negatives against the background's positives (BPSN) and the subgroup's positives against "
            f"the background's negatives (BNSP), after Borkan et al. (2019); subgroups from {escape_markdown(self.source)}; "
            f"{self.n_examples} examples, {self.n_positive} positive. – marks an AUC that is undefined (one class missing).",
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

    def __str__(self) -> str:
        err = self.main_error or {}
        text = (f"Slice {self.rank}: {self.size:.1f} examples ({100 * self.share:.1f}%), loss {self.loss:.3f}, "
                f"accuracy {self.accuracy:.3f}; labels {self.label_counts}, predicted {self.predicted_counts}"
                + (f"; main error {err.get('true')} -> {err.get('predicted')}" if err else ""))
        feats = _text_table(["feature", "inside", "outside", "difference", "push"],
                            [[f["feature"], f["inside"], f["outside"], f["difference"], f.get("push")] for f in self.features])
        ex = _text_table(["index", "label", "predicted", "loss", "text"],
                         [[e["index"], e["label"], e["predicted"], e["loss"], (e.get("text") or "")[:80]] for e in self.examples])
        return f"{text}\n{feats}\n{ex}"


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

    kind: ClassVar[str] = "error_slices"
    _items: ClassVar[str] = "slices"
    plot_name: ClassVar[str] = "error_slices.png"

    def __post_init__(self):
        self.slices = [s if isinstance(s, ErrorSlice) else ErrorSlice.from_dict(s) for s in self.slices]

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["slices"] = [s.to_dict() for s in self.slices]
        return data

    def __str__(self) -> str:
        head = (f"Error slices ({self.head} head, {self.split} split, {self.n_examples} examples, overall loss "
                f"{self.overall_loss:.3f}, accuracy {self.overall_accuracy:.3f}); spotlights of "
                f"{100 * self.spotlight_size:.1f}% of the data in {self.space}.")
        return "\n\n".join([head] + [str(s) for s in self.slices])

    def to_markdown(self, asset_dir: str | None = "audit", *, redact: bool = False, n_examples: int = 5) -> str:
        """An "Error slices" section: a summary table, and per slice its features and example inputs."""
        parts = [
            "### Error slices",
            "",
            f"Regions of the head's input space where the {escape_markdown(self.head)} head's loss is high, found "
            f"with the Spotlight method (D'Eon et al. 2022) on the {escape_markdown(self.split)} features "
            f"({self.n_examples} examples, overall loss {self.overall_loss:.3f}, accuracy {self.overall_accuracy:.3f}). "
            f"Each spotlight is a Gaussian kernel holding {100 * self.spotlight_size:.1f}% of the data "
            f"({escape_markdown(self.space)}); later spotlights avoid the examples of earlier ones.",
            "",
            _md_table(["slice", "size", "share", "loss", "accuracy", "main error", "features (push)"],
                      [[s.rank, f"{s.size:.1f}", f"{100 * s.share:.1f}%", s.loss, s.accuracy,
                        f"{s.main_error['true']} → {s.main_error['predicted']}" if s.main_error else "–",
                        _features_cell(s.features, "push")] for s in self.slices]),
        ]
        for s in self.slices:
            parts += ["", f"**Slice {s.rank}** — top examples:", "",
                      _md_table(["row", "label", "predicted", "loss", "text"],
                                [[e["index"], e["label"], e["predicted"], e["loss"], e.get("text")]
                                 for e in s.examples[:n_examples]], redact=redact)]
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
    summaries, when an audit was recorded) before and after, on `split`."""

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

    kind: ClassVar[str] = "edits"

    @property
    def plot_name(self) -> str:
        return f"edit_{self.index}.png"

    def _rows(self):
        keys = [k for k in ("accuracy", "loss", "nnz", "n_features") if k in self.before or k in self.after]
        rows = [[k, self.before.get(k), self.after.get(k)] for k in keys]
        rows += [[f"accuracy in error slice {r}", v.get("before"), v.get("after")] for r, v in self.slice_accuracy.items()]
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
        text += _text_table(["metric", "before", "after"], self._rows())
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
                 _md_table(["metric", "before", "after"], self._rows())]
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
    """Every head edit of a model, in order (what `model.audit_reports["edits"]` holds); iterate for `EditReport`s."""

    edits: list = field(default_factory=list)

    kind: ClassVar[str] = "edits"
    _items: ClassVar[str] = "edits"

    def __post_init__(self):
        self.edits = [e if isinstance(e, EditReport) else EditReport.from_dict(e) for e in self.edits]

    def append(self, report: EditReport) -> None:
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
