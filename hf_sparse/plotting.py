"""The one plotting module: matplotlib set up once (Agg, off screen), and the figures of the solver, audits and card.

It imports only matplotlib and numpy (never another hf_sparse module), so every layer, the solver included, may use
it. Figures are made with `figure`, written with `save` (which closes them), and the regularization path is drawn by
`plot_path` alone, from plain numbers: `RegularizationPath.plot()` and the model card's path picture both call it.

Example:
    >>> fig = plot_path([1.0, 0.1, 0.01], val_accuracy=[0.6, 0.8, 0.85], features_mean=[1, 4, 9])
    >>> save(fig, "card_assets", "path.png")
    'path.png'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # once, before pyplot: figures are written to files, never shown
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: Default figure width in inches; at dpi 110 about 820 px, the width a Hub model card shows.
CARD_WIDTH_INCHES = 7.5
DPI = 100


def pyplot():
    """matplotlib.pyplot, with the Agg backend already chosen (for colour maps and other direct use)."""
    return plt


def figure(width_px: int = 900, height_px: int = 500, ncols: int = 1, nrows: int = 1, **kwargs):
    """`(fig, axes)`: a `width_px` x `height_px` figure at 100 dpi with `nrows` x `ncols` panels (one axis when
    both are 1, as `plt.subplots`).

    Example:
        >>> fig, (left, right) = figure(900, 380, ncols=2)
    """
    return plt.subplots(nrows, ncols, figsize=(width_px / DPI, height_px / DPI), dpi=DPI, **kwargs)


def save(fig, directory: str | os.PathLike, name: str, *, dpi: int | None = None, tight: bool = True) -> str:
    """Write `fig` to `directory/name` (folders made as needed), close it, and return `name`."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    if tight and fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(Path(directory) / name, dpi=dpi)
    plt.close(fig)
    return name


def close(figures) -> None:
    """Close figures (an iterable, or a dict's values) that will not be saved."""
    for fig in (figures.values() if isinstance(figures, dict) else figures):
        plt.close(fig)


def _complete(values) -> list | None:
    if values is None:
        return None
    values = list(values)
    return values if values and all(v is not None for v in values) else None


def plot_path(lambdas: Sequence[float], *, features_mean: Sequence[float], train_accuracy=None, val_accuracy=None,
              features_min=None, features_max=None, selected_lambda: float | None = None,
              dense_accuracy: float | None = None, title: str = "Regularization path", head_label: str = "",
              xlabel: str = "lambda (standardized features)", width: float = CARD_WIDTH_INCHES, height: float = 5.5,
              ax=None, val_label: str = "validation accuracy", installed: dict | None = None,
              note: str | None = None, dense_label: str | None = None):
    """The accuracy-sparsity path: accuracy (train dashed, validation solid, the dense head as a grey line) above,
    features per class (mean, with the min-to-max band or the max dotted) below, on a shared log-lambda axis that
    runs from the sparsest point; the selected lambda is a dotted vertical line. A list holding None (a metric not
    measured at some point) is left out. With `ax`, both panels share that axis (features on a twin axis).

    `installed` marks the head installed now, which a refit may have moved off the path: a dict with `lambda` (the
    path point it came from), `accuracy` (drawn as a star on the accuracy panel, None: not drawn),
    `features_per_class` (a star on the features panel) and `label` (its legend entry). `note` is written under the
    panels (e.g. that the path was stopped at a target). `val_label` names the solid curve's data, `dense_label` the
    grey line.

    Example:
        >>> fig = plot_path(lams, train_accuracy=tr, val_accuracy=va, features_mean=m, features_min=lo,
        ...                 features_max=hi, selected_lambda=0.02, title="Regularization path (multinomial)")
    """
    lams = np.asarray(lambdas, dtype=float)
    if lams.ndim != 1 or not len(lams) or len(features_mean) != len(lams):
        raise ValueError(f"plot_path needs one lambda per point and features_mean of the same length; got "
                         f"{len(lams)} lambdas and {len(features_mean)} features_mean values")
    if ax is None:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, height), sharex=True, constrained_layout=True)
    else:
        top, bottom, fig = ax, ax.twinx(), ax.figure
    suffix = f" ({head_label})" if head_label else ""
    for values, label, style in ((val_accuracy, val_label, "-"), (train_accuracy, "train accuracy", "--")):
        values = _complete(values)
        if values is not None:
            top.plot(lams, values, style, marker=".", label=f"{label}{suffix}")
    if dense_accuracy is not None:
        top.axhline(dense_accuracy, color="gray", lw=1, ls="--",
                    label=dense_label or f"dense head ({dense_accuracy:.1%})")
    if installed and installed.get("lambda"):
        if installed.get("accuracy") is not None:
            top.plot([installed["lambda"]], [installed["accuracy"]], marker="*", ms=14, ls="none", color="tab:red",
                     label=installed.get("label") or "installed head", zorder=5)
        if installed.get("features_per_class") is not None:
            bottom.plot([installed["lambda"]], [installed["features_per_class"]], marker="*", ms=14, ls="none",
                        color="tab:red", label="installed head", zorder=5)
    top.set_ylabel("accuracy")
    if top.get_legend_handles_labels()[0]:
        top.legend(loc="best" if installed else "lower right", fontsize=8 if installed else 9)
    bottom.plot(lams, list(features_mean), color="tab:purple", marker=".", label="mean over classes")
    low, high = _complete(features_min), _complete(features_max)
    if low is not None and high is not None:
        bottom.fill_between(lams, low, high, color="tab:purple", alpha=0.2, label="min to max")
    elif high is not None:
        bottom.plot(lams, high, color="tab:purple", ls=":", label="max over classes")
    bottom.set_ylabel("features per class")
    bottom.set_xlabel(xlabel + (f"\n({note})" if note else ""))
    bottom.legend(loc="upper left", fontsize=9)
    for axis in (top, bottom):
        axis.set_xscale("log")
        axis.grid(alpha=0.3)
        if selected_lambda:
            axis.axvline(selected_lambda, color="black", lw=1, ls=":")
    if not top.xaxis_inverted():
        top.invert_xaxis()
    if ax is None:
        fig.suptitle(title, fontsize=11)
    else:
        top.set_title(title, fontsize=11)
    return fig


def before_after_bars(directory, name: str, labels: Sequence[str], before: Sequence[float],
                      after: Sequence[float], *, xlabel: str, title: str, xlim=(0, 1)) -> str:
    """Paired horizontal bars (before grey, after green) per label, written to `directory/name`; returns `name`.

    Example:
        >>> before_after_bars("audit", "fix_1.png", ["accuracy"], [0.8], [0.9], xlabel="accuracy", title="Fix 1")
        'fix_1.png'
    """
    fig, ax = figure(900, 120 + 40 * len(labels))
    ys = np.arange(len(labels))
    ax.barh(ys + 0.2, list(before), height=0.4, color="tab:gray", label="before")
    ax.barh(ys - 0.2, list(after), height=0.4, color="tab:green", label="after")
    ax.set_yticks(list(ys), [str(label)[:60] for label in labels])
    ax.invert_yaxis()
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel)
    ax.legend(loc="lower right")
    ax.set_title(title[:100])
    return save(fig, directory, name)


def grouped_barh(ax, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], dict]]) -> None:
    """Horizontal bars, one group per label (first label on top) and one bar per series in each group; a series
    is (legend label, values (None drawn as 0), extra `barh` keywords such as color, hatch, alpha).

    Example:
        >>> grouped_barh(ax, ["a", "b"], [("sparse", [0.1, -0.2], {"color": "tab:blue"})])
    """
    n, height = len(labels), 0.8 / max(1, len(series))
    for i, (label, values, style) in enumerate(series):
        ys = [n - 1 - k + 0.4 - (i + 0.5) * height for k in range(n)]
        ax.barh(ys, [0.0 if v is None else v for v in values], height=height, label=label, **style)
    ax.set_yticks([n - 1 - k for k in range(n)], list(labels), fontsize=9)
