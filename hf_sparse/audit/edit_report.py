"""`EditReport` (what a head edit changed, before and after) and `EditHistory` (every edit and fix of a model, in
order, as `model.audit_reports["edits"]`): text, Markdown tables, plots and JSON.

Example:
    >>> report = model.edit_features(remove=[12], refit=True)
    >>> print(report); history = model.audit_reports["edits"]; md = history.to_markdown("audit")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

from ..tables import fmt, markdown_table, text_table
from ..text_safety import escape_markdown
from .report import _figure, _image, _Report, _ReportList, _save, register, report_class


@register
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
        rows += [[f"accuracy over the members of error slice {r}", v.get("before"), v.get("after")]
                 + extra(alone_slices.get(str(r)))
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
            bits.append("reweighted " + "; ".join(f"{k}: {fmt(v)}" for k, v in self.reweighted.items()))
        bits.append("refit the rest of the head" if self.refit else "no refit")
        return "; ".join(bits)

    def __str__(self) -> str:
        text = f"Edit {self.index}: {self._what()} (on {self.split}, {self.n_examples} examples)\n"
        text += text_table(self._headers(), self._rows())
        if self._audit_rows():
            text += "\n\n" + text_table(["group", "flip rate before", "after", "mean |dp| before", "after"], self._audit_rows())
        if self.notes:
            text += "\n" + "\n".join(f"note: {n}" for n in self.notes)
        return text

    def to_markdown(self, asset_dir: str | None = "audit", *, redact: bool = False) -> str:
        """A "Head edit" section: what was changed and a before/after table."""
        parts = [f"### Head edit {self.index}", "",
                 f"{escape_markdown(self._what())}. Measured on the {escape_markdown(self.split)} split "
                 f"({self.n_examples} examples).", "",
                 markdown_table(self._headers(), self._rows())]
        if self._audit_rows():
            parts += ["", markdown_table(["identity group", "flip rate before", "flip rate after", "mean |dp| before",
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


@register
@dataclass
class EditHistory(_ReportList, _Report):
    """Every head edit and fix of a model, in order (what `model.audit_reports["edits"]` holds); iterate for
    `EditReport`s and `FixReport`s."""

    edits: list = field(default_factory=list)

    kind: ClassVar[str] = "edits"
    _items: ClassVar[str] = "edits"

    def __post_init__(self):
        # Head edits and fixes (`FixReport`, registered in REPORT_CLASSES by fix_report.py) share the history.
        self.edits = [e if isinstance(e, _Report) else report_class(e.get("type", "EditReport")).from_dict(e)
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
