"""`FixReport`: what a fix of the head did, before and after: overall accuracy, log-loss, worst-group and
per-group accuracy, the audit figures it addressed, and the features it added, removed or reweighted.

Fixes are recorded with the head edits (`model.audit_reports["edits"]`, an `EditHistory`), saved in `audit.json`
and listed in the model card.

Example:
    >>> report = balanced_refit(model, groups=contains_word("tuesday"))
    >>> print(report)                                   # a before/after table
    >>> report.after["worst_group_accuracy"] - report.before["worst_group_accuracy"]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

from ..tables import fmt, markdown_table, text_table
from ..text_safety import escape_markdown
from .report import _image, _Report, register

_METRICS = (("accuracy", "accuracy"), ("loss", "log-loss"), ("worst_group_accuracy", "worst-group accuracy"))


@register
@dataclass
class FixReport(_Report):
    """Before/after figures of one fix, measured on `split` (`n_examples` rows).

    `before` / `after` hold accuracy, loss (log-loss), worst_group_accuracy and group_accuracy ({"group / label":
    accuracy}) when groups were given, nnz and n_features. `features_added` / `features_removed` compare the heads'
    supports; `features_reweighted` are kept features whose weights changed.
    """

    method: str
    description: str
    split: str
    n_examples: int
    before: dict
    after: dict
    features_added: list = field(default_factory=list)
    features_removed: list = field(default_factory=list)
    features_reweighted: list = field(default_factory=list)
    audit_before: dict | None = None
    audit_after: dict | None = None
    slice_accuracy: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: float | None = None
    index: int = 1

    kind: ClassVar[str] = "edits"

    @property
    def plot_name(self) -> str:
        return f"fix_{self.index}.png"

    def gain(self, key: str = "worst_group_accuracy") -> float | None:
        """after - before for one metric (None when either is missing)."""
        b, a = self.before.get(key), self.after.get(key)
        return None if b is None or a is None else a - b

    def _rows(self):
        rows = [[label, self.before.get(k), self.after.get(k)] for k, label in _METRICS
                if self.before.get(k) is not None or self.after.get(k) is not None]
        groups = list(dict.fromkeys(list(self.before.get("group_accuracy") or {}) +
                                    list(self.after.get("group_accuracy") or {})))
        rows += [[f"accuracy of {g}", (self.before.get("group_accuracy") or {}).get(g),
                  (self.after.get("group_accuracy") or {}).get(g)] for g in groups]
        rows += [[f"accuracy in error slice {r}", v.get("before"), v.get("after")] for r, v in self.slice_accuracy.items()]
        rows += [[k, self.before.get(k), self.after.get(k)] for k in ("n_features", "nnz") if k in self.before]
        return rows

    def _audit_rows(self):
        if not self.audit_before or not self.audit_after:
            return []
        return [[g, b.get("flip_rate"), self.audit_after.get(g, {}).get("flip_rate"), b.get("mean_abs_delta"),
                 self.audit_after.get(g, {}).get("mean_abs_delta")] for g, b in self.audit_before.items()]

    def _features_line(self) -> str:
        parts = [f"{name}: {', '.join(map(str, items))}" for name, items in
                 (("added", self.features_added), ("removed", self.features_removed),
                  ("reweighted", self.features_reweighted)) if items]
        return "; ".join(parts) or "no change of features"

    def __str__(self) -> str:
        text = (f"Fix {self.index}: {self.method} — {self.description}\n"
                f"Measured on {self.split} ({self.n_examples} examples)"
                + (f"; took {self.seconds:.1f} s" if self.seconds is not None else "") + "\n")
        text += text_table(["metric", "before", "after"], self._rows())
        text += f"\nfeatures {self._features_line()}"
        if self._audit_rows():
            text += "\n\n" + text_table(["group", "flip rate before", "after", "mean |dp| before", "after"],
                                        self._audit_rows())
        if self.notes:
            text += "\n" + "\n".join(f"note: {n}" for n in self.notes)
        return text

    def to_markdown(self, asset_dir: str | None = "audit", *, redact: bool = False) -> str:
        """A "Fix" section: what was done, a before/after table, the features it changed."""
        parts = [f"### Fix {self.index}: {escape_markdown(self.method)}", "",
                 f"{escape_markdown(self.description)}. Measured on the {escape_markdown(self.split)} split "
                 f"({self.n_examples} examples).", "",
                 markdown_table(["metric", "before", "after"], self._rows(), redact=redact), "",
                 f"Features {escape_markdown(self._features_line())}."]
        if self._audit_rows():
            parts += ["", markdown_table(["identity group", "flip rate before", "flip rate after", "mean |dp| before",
                                     "mean |dp| after"], self._audit_rows())]
        parts += [f"\n{escape_markdown(n)}" for n in self.notes]
        return "\n".join(parts) + _image(asset_dir, self.plot_name, "Accuracy before and after the fix")

    def save_plots(self, directory: str | os.PathLike) -> list[str]:
        """Accuracy, worst-group accuracy and each group's accuracy before and after, as paired bars."""
        rows = [(label, b, a) for label, b, a in self._rows()
                if "accuracy" in label and b is not None and a is not None]
        if not rows:
            return []
        from ..plotting import before_after_bars

        return [before_after_bars(directory, self.plot_name, [r[0] for r in rows], [r[1] for r in rows],
                                  [r[2] for r in rows], xlabel=f"accuracy ({self.split})",
                                  title=f"Fix {self.index}: {self.method}")]

    def summary_line(self) -> str:
        """One line for lists: the fix and its main figures."""
        bits = [f"{self.method}: {self.description}"]
        for key, label in _METRICS:
            if self.before.get(key) is not None and self.after.get(key) is not None:
                bits.append(f"{label} {fmt(self.before[key])} → {fmt(self.after[key])}")
        return "; ".join(bits)

