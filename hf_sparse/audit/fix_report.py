"""`FixReport`: what a fix of the head did, before and after: overall accuracy, log-loss, worst-group and
per-group accuracy (beside the dense head's on the same data), the audit figures it addressed, the features it added,
removed or reweighted and, when the fix targets a word, which of them carry the word and why each left or stayed.

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

    `before` / `after` hold the sparse head's accuracy, loss (log-loss), worst_group_accuracy and group_accuracy
    ({"group / label": accuracy}) when groups were given, nnz and n_features; `dense` the same figures of the dense
    head (the model before sparsification) on the same data, or None. `features_added` / `features_removed` compare
    the heads' supports; `features_reweighted` are kept features whose weights changed. `slice_accuracy`: {slice
    rank: {before, after, members, split}}, the accuracy over the members of each recorded error slice, on the split
    the slices were found on. `word_features`: {word, threshold, texts, features: [{feature, effect, flagged, fate,
    reason}]} (see `fixes.word_feature_fates`), or None.

    Example:
        >>> print(report.word_features_text())    # which features carry the word, and what the fix did with each
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
    dense: dict | None = None
    word_features: dict | None = None

    kind: ClassVar[str] = "edits"

    @property
    def plot_name(self) -> str:
        return f"fix_{self.index}.png"

    def gain(self, key: str = "worst_group_accuracy") -> float | None:
        """after - before for one metric (None when either is missing)."""
        b, a = self.before.get(key), self.after.get(key)
        return None if b is None or a is None else a - b

    def _headers(self) -> list[str]:
        return ["metric", "before (sparse head)", "after (sparse head)"] + (["dense head"] if self.dense else [])

    def _rows(self):
        dense = self.dense or {}
        extra = (lambda value: [value]) if self.dense else (lambda value: [])  # noqa: E731
        rows = [[label, self.before.get(k), self.after.get(k)] + extra(dense.get(k)) for k, label in _METRICS
                if self.before.get(k) is not None or self.after.get(k) is not None]
        groups = list(dict.fromkeys(list(self.before.get("group_accuracy") or {}) +
                                    list(self.after.get("group_accuracy") or {})))
        rows += [[f"accuracy of {g}", (self.before.get("group_accuracy") or {}).get(g),
                  (self.after.get("group_accuracy") or {}).get(g)] + extra((dense.get("group_accuracy") or {}).get(g))
                 for g in groups]
        rows += [[self.slice_label(r), v.get("before"), v.get("after")] + extra(None)
                 for r, v in self.slice_accuracy.items()]
        rows += [[k, self.before.get(k), self.after.get(k)] + extra(None) for k in ("n_features", "nnz")
                 if k in self.before]
        return rows

    def slice_label(self, rank) -> str:
        """"accuracy over the 20 members of error slice 1 (eval split)": one slice row's metric, as printed."""
        v = self.slice_accuracy.get(str(rank)) or {}
        members = f"the {v['members']} members" if v.get("members") else "the members"
        split = f" ({v['split']} split)" if v.get("split") else ""
        return f"accuracy over {members} of error slice {rank}{split}"

    def _word_rows(self):
        return [[f["feature"], f["effect"], "yes" if f["flagged"] else "no", f["fate"], f["reason"]]
                for f in (self.word_features or {}).get("features", [])]

    def word_features_summary(self) -> str:
        """What the fix did with the features that carry the word, in two sentences ("" when not measured)."""
        wf = self.word_features
        if not wf:
            return ""
        rows = wf.get("features", [])
        flagged = [f for f in rows if f["flagged"]]
        word, threshold = wf["word"], wf["threshold"]

        def ids(items):
            return ", ".join(str(f["feature"]) for f in items) or "none"

        gone = [f for f in flagged if f["fate"] == "removed"]
        stay = [f for f in flagged if f["fate"] != "removed"]
        text = (f"Features that carry {word!r} (|effect| ≥ {threshold:g}): {ids(flagged)}. The refit does not remove "
                f"features by name: it refits the head on data where the word no longer predicts the label, so a "
                f"feature leaves when what it adds is the word and stays when it still predicts the label. ")
        text += f"Removed by this fix: {ids(gone)}"
        if stay:
            text += (f"; in the head after it: {ids(stay)} (to take one out as well: "
                     f"model.edit_features(remove=[{stay[0]['feature']}], refit=True))")
        return text + "."

    def word_features_text(self) -> str:
        """The word-carrier table as text ("" when not measured)."""
        if not self.word_features:
            return ""
        return (f"Features that carry {self.word_features['word']!r} (effect: label-stratified effect size on the "
                f"{self.word_features['texts']} texts)\n"
                + text_table(["feature", "effect", "carries it", "fix", "why"], self._word_rows())
                + "\n" + self.word_features_summary())

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
        text += text_table(self._headers(), self._rows())
        text += f"\nfeatures {self._features_line()}"
        if self.word_features:
            text += "\n\n" + self.word_features_text()
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
                 markdown_table(self._headers(), self._rows(), redact=redact), "",
                 f"Features {escape_markdown(self._features_line())}."]
        if self.dense:
            parts[2] += (" The dense head (the model before sparsification) is scored on the same examples; it is "
                         "not changed by the fix.")
        if self.word_features:
            wf = self.word_features
            parts += ["", f"Features that carry {escape_markdown(repr(wf['word']))} (effect: label-stratified effect "
                      f"size of the word on the feature, on the {escape_markdown(wf['texts'])} texts; flagged at "
                      f"|effect| ≥ {wf['threshold']:g}):", "",
                      markdown_table(["feature", "effect", "carries it", "fix", "why"], self._word_rows(),
                                     redact=redact),
                      "", escape_markdown(self.word_features_summary(), max_chars=None)]
        if self._audit_rows():
            parts += ["", markdown_table(["identity group", "flip rate before", "flip rate after", "mean |dp| before",
                                     "mean |dp| after"], self._audit_rows())]
        parts += [f"\n{escape_markdown(n)}" for n in self.notes]
        return "\n".join(parts) + _image(asset_dir, self.plot_name, "Accuracy before and after the fix")

    def save_plots(self, directory: str | os.PathLike) -> list[str]:
        """Accuracy, worst-group accuracy and each group's accuracy before and after, as paired bars."""
        rows = [(label, b, a) for label, b, a, *_ in self._rows()
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

