"""`ErrorSlice` and `ErrorSliceReport`: the spotlights `find_error_slices` (spotlight.py) found, as text, Markdown
tables, a plot and JSON; `ErrorSliceReport.assign` turns slices into groups for a fix.

Example:
    >>> slices = find_error_slices(model, n_slices=3)
    >>> print(slices[0]); md = slices.to_markdown("audit", around="tuesday", text_chars=120)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

from ..tables import Markdown, markdown_table, text_table
from ..text_safety import escape_markdown
from .report import _features_cell, _figure, _image, _Report, _ReportList, _save, register


@register
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
                f"accuracy {self.accuracy:.3f} (kernel-weighted); labels {self.label_counts}, "
                f"predicted {self.predicted_counts}"
                + (f"; main error {err.get('true')} -> {err.get('predicted')}" if err else "")
                + (f"\nAccuracy on its {self.n_members} members: sparse head {self.member_accuracy:.3f}, dense head "
                   f"{self.dense_accuracy:.3f}" if self.dense_accuracy is not None else ""))
        feats = text_table(["feature", "inside", "outside", "difference", "push"],
                           [[f["feature"], f["inside"], f["outside"], f["difference"], f.get("push")] for f in self.features])
        ex = self.examples_table(around, width)
        return f"{text}\n{feats}\n{ex}"

    def examples_table(self, around: str | list[str] | None = None, width: int | None = None) -> str:
        """The examples as a text table; texts whole (`width=None`), or shortened to `width` characters around the
        first occurrence of `around` (`hf_sparse.text_safety.excerpt`), so the part that matters is never cut."""
        from ..text_safety import excerpt

        return text_table(["index", "label", "predicted", "loss", "text"],
                          [[e["index"], e["label"], e["predicted"], e["loss"],
                             excerpt(e.get("text"), around=around, width=width)] for e in self.examples])


@register
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
    before_edit: str | None = None  # "Fix 1" / "Head edit 1": the slices describe the head before that edit

    def found_on(self) -> str:
        """Which head the slices describe: "the sparse head" or "the sparse head as it was before Fix 1"."""
        return f"the {self.head} head" + (f" as it was before {self.before_edit}" if self.before_edit else "")

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
        fit = model.fit_data
        if dataset is None or (fit is not None and dataset is fit.train_dataset):
            if fit is None:
                raise ValueError("group_values needs dataset= or a model with the features of a fit_sparse_head.")
            feats, n = fit.train_features, len(fit.train_dataset)
            ranks = self.assign(feats.features)
            out = [0] * n
            for r, rank in zip(feats.indices.tolist(), ranks.tolist()):
                out[int(r)] = rank
            return out
        column = fit.text_column if (fit and model.modality == "text") else (fit.image_column if fit else "text")
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
        if self.before_edit:
            head += (f"\nFound on {self.found_on()}: the head has changed since; {self.before_edit} gives each "
                     "slice's accuracy after it.")
        head += "".join(f"\nWARNING: {w}" for w in self.warnings)
        return "\n\n".join([head] + [s.to_text(around, width) for s in self.slices])

    def _has_dense(self) -> bool:
        return self.dense_overall_accuracy is not None or any(s.dense_accuracy is not None for s in self.slices)

    @staticmethod
    def _examples_markdown(examples: list, redact: bool, around, text_chars: int | None) -> str:
        """The examples table; each text escaped whole, or cut to `text_chars` around `around` (never cut away)."""
        return markdown_table(["row", "label", "predicted", "loss", "text"], [
            [e["index"], e["label"], e["predicted"], e["loss"],
             Markdown(escape_markdown(e.get("text"), redact=redact, max_chars=text_chars, around=around))]
            for e in examples], redact=redact)

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
               "on the same features; each slice's accuracy over its members is shown for both heads.")
            + " *Accuracy (kernel-weighted)* weighs every example by the spotlight's kernel; *member accuracy* is over "
              "the slice's members, the examples it weighs most (a slice's examples below are its members).",
        ]
        if self.before_edit:
            parts += ["", f"**These slices were found on {escape_markdown(self.found_on())}**: the results and "
                          f"features above describe the head after it; {escape_markdown(self.before_edit)} below gives "
                          "each slice's accuracy after it."]
        for w in self.warnings:
            parts += ["", f"**WARNING**: {escape_markdown(w, redact=redact, max_chars=None)}"]
        dense = self._has_dense()
        headers = (["slice", "size", "share", "loss", "accuracy (kernel-weighted)", "members"]
                   + ([f"member accuracy ({self.head})", "member accuracy (dense)"] if dense else [])
                   + ["main error", "features (push)"])
        parts += ["", markdown_table(headers, [
            [s.rank, f"{s.size:.1f}", f"{100 * s.share:.1f}%", s.loss, s.accuracy, s.n_members]
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
