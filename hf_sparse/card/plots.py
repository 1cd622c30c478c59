"""The model card's pictures: the accuracy-sparsity path (`hf_sparse.plotting.plot_path`, from the numbers of
`hf_sparse.card.render.path_plot_data`) and each class's feature weights. Matplotlib is set up in
`hf_sparse.plotting` (Agg).

Example:
    >>> fig = plot_path_data(path_plot_data(model))
    >>> fig.savefig("card_assets/path.png", dpi=110)
"""

from __future__ import annotations

from ..plotting import CARD_WIDTH_INCHES, plot_path, pyplot


def plot_path_data(data: dict):
    """The path picture from `path_plot_data(model)`: accuracy (train dashed, evaluation solid, the dense head grey)
    and mean features per class along the recorded path, the installed head as a star at its own accuracy and
    features per class (after any refit or edit), and the note when the path was stopped at the target.

    Example:
        >>> fig = plot_path_data(path_plot_data(model))
    """
    installed = data.get("installed") or {}
    title = "Accuracy against sparsity along the path\n(star and dotted line: the installed head)"
    return plot_path(
        data["lambdas"], train_accuracy=data.get("train_accuracy"), val_accuracy=data.get("val_accuracy"),
        features_mean=data["features_mean"], features_max=data.get("features_max"),
        selected_lambda=installed.get("lambda"), dense_accuracy=data.get("dense_accuracy"),
        head_label="path points", val_label=data.get("val_label", "validation accuracy"),
        xlabel="lambda (regularization strength, standardized features)", height=5.0, title=title,
        installed=installed or None, note=data.get("plot_note", data.get("note")), dense_label=data.get("dense_label"))


def plot_path_summary(config):
    """Validation (or train) accuracy and mean features per class along the path recorded in `config`, the dense
    head's accuracy as a grey line, the selected path point's lambda dotted. It cannot mark the installed head (a
    config does not say which head is installed now, after a refit or an edit): the card uses `plot_path_data`."""
    rows = config.path_summary or []
    if not rows:
        raise ValueError("this model has no path summary (fit_sparse_head records one)")
    chosen = (config.selection or {}).get("lam", config.selected_lambda)  # the path point, before a relaxed refit
    return plot_path(
        [r["lambda"] for r in rows], train_accuracy=[r.get("train_accuracy") for r in rows],
        val_accuracy=[r.get("val_accuracy") for r in rows], features_mean=[r["features_per_class"] for r in rows],
        features_max=[r.get("max_features_per_class") for r in rows],
        selected_lambda=chosen, dense_accuracy=(config.dense_metrics or {}).get("accuracy"), head_label="sparse head",
        xlabel="lambda (regularization strength, standardized features)", height=5.0,
        title="Accuracy against sparsity along the path\n(dotted line: the selected path point)")


def plot_class_features(tables, max_features: int = 10, titles=None):
    """One horizontal bar chart per class: its features' weights (colour: sign), labelled by feature index;
    `titles` (one per table) replace the default "class <label>"."""
    n = len(tables)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    height = max(2.2, 0.32 * min(max_features, max((len(t.features) for t in tables), default=1)) + 1.0)
    fig, axes = pyplot().subplots(rows, cols, figsize=(CARD_WIDTH_INCHES, height * rows), squeeze=False,
                                  constrained_layout=True)
    for i, (ax, table) in enumerate(zip(axes.flat, tables)):
        feats = table.features[:max_features][::-1]
        weights = [f.weight for f in feats]
        ax.barh(range(len(feats)), weights, color=["tab:green" if w >= 0 else "tab:red" for w in weights])
        ax.set_yticks(range(len(feats)), [f"#{f.feature}" for f in feats])
        ax.set_title(titles[i] if titles else f"class {table.label}", fontsize=11)
        ax.set_xlabel("weight")
        ax.axvline(0, color="black", lw=0.8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig
