"""A picture of the path: accuracy and features per class against lambda.

Example:
    >>> fig = plot_path(path)
    >>> fig.savefig("path.png", dpi=150)
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402


def plot_path(path, ax=None):
    """Two panels sharing a log lambda axis: accuracy (train, validation) and features per class."""
    if ax is None:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, constrained_layout=True)
    else:
        top = ax
        bottom = ax.twinx()
        fig = ax.figure
    lams = path.lambdas.numpy()
    for key, label, style in (("train_accuracy", "train", "--"), ("val_accuracy", "validation", "-")):
        values = path.metric(key)
        if all(v is not None for v in values):
            top.plot(lams, values, style, marker=".", label=f"{label} accuracy")
    top.set_ylabel("accuracy")
    top.legend(loc="lower right")
    top.grid(alpha=0.3)
    per_class = [p.metrics["features_per_class"] for p in path]
    mean = [sum(v) / len(v) for v in per_class]
    bottom.plot(lams, mean, color="tab:purple", marker=".", label="mean over classes")
    bottom.fill_between(lams, [min(v) for v in per_class], [max(v) for v in per_class], color="tab:purple",
                        alpha=0.2, label="min to max")
    bottom.set_ylabel("features per class")
    bottom.set_xlabel("lambda (standardized features)")
    bottom.legend(loc="upper left")
    bottom.grid(alpha=0.3)
    for axis in (top, bottom):
        axis.set_xscale("log")
    top.invert_xaxis() if not top.xaxis_inverted() else None
    if path.selected is not None:
        for axis in (top, bottom):
            axis.axvline((path.selection or {}).get("lam", path.selected.lam), color="black", lw=1, ls=":", label="selected")
    fig.suptitle(f"Regularization path ({path.family}, alpha={path.alpha:g})")
    return fig
