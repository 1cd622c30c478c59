"""The numbers the card's accuracy-sparsity picture draws (`path_plot_data`), drawn by `plots.plot_path_data`.

Example:
    >>> data = path_plot_data(model)
    >>> data["installed"]["accuracy"] == model.config.sparse_metrics["accuracy"]
    True
"""

from __future__ import annotations

from .model_index import sparse_metrics_stale


def path_plot_data(model) -> dict | None:
    """What the path picture draws, as plain numbers (None without a path summary): the recorded path points
    (lambda, mean and max features per class, train and evaluation accuracy), the dense head's accuracy, the
    installed head (`installed`: the lambda of the path point it came from, its accuracy and split exactly as the
    Results table shows them, its features per class now, after any refit or edit), and `note` when the fit stopped
    the path at its features-per-class target (the denser points were never fitted).

    Example:
        >>> data = path_plot_data(model); data["installed"]["accuracy"] == model.config.sparse_metrics["accuracy"]
        True
    """
    config = model.config
    rows = config.path_summary or []
    if not rows:
        return None
    selection = config.selection or {}
    sparse, dense = config.sparse_metrics or {}, config.dense_metrics or {}
    split = sparse.get("split")
    index = selection.get("index")
    lam = rows[index]["lambda"] if isinstance(index, int) and 0 <= index < len(rows) else selection.get(
        "lam", config.selected_lambda)
    stale = sparse_metrics_stale(model)
    accuracy = None if stale else sparse.get("accuracy")
    steps = []
    if selection.get("refit"):
        steps.append(f"refit on its top {selection.get('features_per_class', selection.get('value'))} per class")
    if (selection.get("relax_gain") or {}).get("kept"):
        steps.append("relaxed refit")
    if config.edits:
        steps.append("edited")
    shown = "n/a" if accuracy is None else f"{accuracy:.2%}"
    label = f"{shown} {split or ''} accuracy" + (f" ({', '.join(steps)})" if steps else "")
    note = short_note = None
    target = selection.get("value")
    if "path_stop_reason" in selection:  # recorded by the fit: why the path stopped before the grid's end, or None
        reason = selection["path_stop_reason"]
        if reason:
            note = f"the fit stopped the path early because {reason}: denser points were not fitted"
            short_note = "path stopped early; denser points not fitted"
    elif (selection.get("method") == "features_per_class" and index == len(rows) - 1 and target is not None
            and (rows[-1].get("features_per_class") or 0) >= target):  # saved before the reason was recorded
        note = (f"the fit stopped the path at the first point with {target} features in every class: denser points "
                "were not fitted")
        short_note = f"path stopped at the target of {target} features per class; denser points not fitted"
    dense_accuracy = dense.get("accuracy")
    return {
        "lambdas": [r["lambda"] for r in rows],
        "features_mean": [r["features_per_class"] for r in rows],
        "features_max": [r.get("max_features_per_class") for r in rows],
        "train_accuracy": [r.get("train_accuracy") for r in rows],
        "val_accuracy": [r.get("val_accuracy") for r in rows],
        "val_label": f"{split} accuracy" if split == "eval" else "validation accuracy",
        "dense_accuracy": dense_accuracy,
        "dense_label": None if dense_accuracy is None else (
            f"dense head (baseline): {dense_accuracy:.2%} {split} accuracy"),
        "split": split,
        "installed": {"lambda": lam, "accuracy": accuracy, "split": split,
                      "features_per_class": model.head_summary()["mean_features_per_class"],
                      "label": f"installed head: {label}", "text": label},
        "note": note,
        "plot_note": short_note,
    }
