"""The model card's pictures (matplotlib, Agg): the accuracy-sparsity path and each class's feature weights.

Example:
    >>> fig = plot_path_summary(model.config)
    >>> fig.savefig("card_assets/path.png", dpi=110)
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

CARD_WIDTH_INCHES = 7.5  # at dpi 110: ~820 px, the width a Hub card shows


def plot_path_summary(config):
    """Validation (or train) accuracy and mean features per class along the path, the selected point marked."""
    rows = config.path_summary or []
    if not rows:
        raise ValueError("this model has no path summary (fit_sparse_head records one)")
    lams = [r["lambda"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(CARD_WIDTH_INCHES, 5), sharex=True, constrained_layout=True)
    for key, label, style in (("val_accuracy", "validation", "-"), ("train_accuracy", "train", "--")):
        values = [r.get(key) for r in rows]
        if all(v is not None for v in values):
            top.plot(lams, values, style, marker=".", label=f"{label} accuracy (sparse head)")
    dense = (config.dense_metrics or {}).get("accuracy")
    if dense is not None:
        top.axhline(dense, color="gray", lw=1, ls="--", label=f"dense head ({dense:.1%})")
    top.set_ylabel("accuracy")
    top.legend(loc="lower right", fontsize=9)
    bottom.plot(lams, [r["features_per_class"] for r in rows], color="tab:purple", marker=".", label="mean")
    bottom.plot(lams, [r["max_features_per_class"] for r in rows], color="tab:purple", ls=":", label="max")
    bottom.set_ylabel("features per class")
    bottom.set_xlabel("lambda (regularization strength, standardized features)")
    bottom.legend(loc="upper left", fontsize=9)
    for axis in (top, bottom):
        axis.set_xscale("log")
        axis.grid(alpha=0.3)
        chosen = (config.selection or {}).get("lam", config.selected_lambda)  # the path point, before any relaxed refit
        if chosen:
            axis.axvline(chosen, color="black", lw=1, ls=":")
    top.invert_xaxis()
    top.set_title("Accuracy against sparsity along the path\n(dotted line: the installed head)", fontsize=11)
    return fig


def plot_class_features(tables, max_features: int = 10):
    """One horizontal bar chart per class: its features' weights (colour: sign), labelled by feature index."""
    n = len(tables)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    height = max(2.2, 0.32 * min(max_features, max((len(t.features) for t in tables), default=1)) + 1.0)
    fig, axes = plt.subplots(rows, cols, figsize=(CARD_WIDTH_INCHES, height * rows), squeeze=False,
                             constrained_layout=True)
    for ax, table in zip(axes.flat, tables):
        feats = table.features[:max_features][::-1]
        weights = [f.weight for f in feats]
        ax.barh(range(len(feats)), weights, color=["tab:green" if w >= 0 else "tab:red" for w in weights])
        ax.set_yticks(range(len(feats)), [f"#{f.feature}" for f in feats])
        ax.set_title(f"class {table.label}", fontsize=11)
        ax.set_xlabel("weight")
        ax.axvline(0, color="black", lw=0.8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig
