"""A picture of the path: accuracy and features per class against lambda (drawn by `hf_sparse.plotting.plot_path`,
the one function that draws a path; this module only reads the numbers off a `RegularizationPath`).

Example:
    >>> fig = plot_path(path)
    >>> fig.savefig("path.png", dpi=150)
"""

from __future__ import annotations

from .. import plotting


def plot_path(path, ax=None):
    """Two panels sharing a log lambda axis: accuracy (train, validation) and features per class (mean over the
    classes, with the min-to-max band); the selected lambda dotted. With `ax`, one panel and a twin axis."""
    per_class = [p.metrics["features_per_class"] for p in path]
    selected = None
    if path.selected is not None:
        selected = (path.selection or {}).get("lam", path.selected.lam)  # the path point, before any relaxed refit
    return plotting.plot_path(
        path.lambdas.numpy(), train_accuracy=path.metric("train_accuracy"), val_accuracy=path.metric("val_accuracy"),
        features_mean=[sum(v) / len(v) for v in per_class], features_min=[min(v) for v in per_class],
        features_max=[max(v) for v in per_class], selected_lambda=selected,
        title=f"Regularization path ({path.family}, alpha={path.alpha:g})", width=7.0, ax=ax)
