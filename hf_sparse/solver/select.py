"""Choosing one point of a path by a sparsity target (:class:`~.target.SparsityTarget`).

Example:
    >>> i = select_point(path, SparsityTarget(features_per_class=5))   # same as path.select(features_per_class=5)
    >>> path.selected.metrics["features_per_class"]
    [5, 5]
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import torch

from .refit import make_refitter
from .target import FeatureCounts, SparsityTarget

if TYPE_CHECKING:
    from .path import PathPoint, RegularizationPath

_RELAX_FACTOR = 0.01  # the relaxed refit's lambda, as a share of the selected one
_MAX_HALVINGS = 20


def select_point(path: RegularizationPath, target: SparsityTarget | None = None, *, features_per_class=None,
                 max_accuracy_drop=None, lam=None, relax: bool = False, X=None, y=None, score=None,
                 score_name: str = "score") -> int:
    """See `RegularizationPath.select`. The target is a :class:`~.target.SparsityTarget` or, as there, exactly one
    of the keywords ``features_per_class``, ``max_accuracy_drop``, ``lam``. `score(point) -> float` (higher is
    better) replaces validation accuracy in the accuracy budget and the relaxed refit's comparison, e.g.
    worst-group accuracy on held-out data."""
    target = SparsityTarget.coerce(target, features_per_class=features_per_class,
                                   max_accuracy_drop=max_accuracy_drop, lam=lam)
    if len(path) == 0:
        raise ValueError("The path has no points.")
    refit = _refit_function(path, X, y) if (target.features_per_class is not None or relax) else None
    if target.features_per_class is not None:
        index, point, info = _by_features(path, target.features_per_class, refit)
    elif target.max_accuracy_drop is not None:
        index, info = _by_accuracy(path, target.max_accuracy_drop, score, score_name)
        point = path[index]
    else:
        distances = (torch.log(path.lambdas) - math.log(target.lam)).abs()
        index = int(torch.argmin(distances))
        point = path[index]
        info = {"rule": "lam", "requested_lam": target.lam}
    info.update({"index": index, "lam": point.lam})
    if relax:
        point, info["relax_gain"] = _relax(path, point, refit, score, score_name)
    path.selected, path.selection = point, info
    return index


def _by_features(path, k: int, refit):
    n_features = path[0].shape[1]
    if k > n_features:
        raise ValueError(f"features_per_class={k} is more than the {n_features} features there are.")
    counts = [_counts(p) for p in path]
    index = next((i for i, c in enumerate(counts) if c.min_per_class >= k), None)
    if index is None:
        index = len(path) - 1
        warnings.warn(f"No point of the path has {k} features in every class (the densest has "
                      f"{counts[index].per_class}): using it as it is. Extend the path "
                      "with a smaller lambda_min_ratio.", stacklevel=3)
    point = path[index]
    support = _top_k_support(point, k, path.group, path.std)
    if torch.equal(support, point.support):
        return index, point, {"rule": "features_per_class", "features_per_class": k, "refit": False}
    # Refit at the point's lambda; if the penalty zeroes a chosen weight there, halve lambda
    # until every class keeps its k (the target is exact).
    lam = point.lam
    for _ in range(_MAX_HALVINGS):
        refit_point = refit(lam, support, point)
        if torch.equal(refit_point.support, support):
            break
        lam /= 2
    refit_point.metrics["selection"] = "features_per_class"
    return index, refit_point, {"rule": "features_per_class", "features_per_class": k, "refit": True,
                                "refit_lam": lam}


def _counts(point: PathPoint) -> FeatureCounts:
    """The point's feature counts, from its metrics (what `fit_path` measured; saved with the path)."""
    m = point.metrics
    return FeatureCounts(list(m["features_per_class"]), m["n_features"], m["nnz"])


def _top_k_support(point: PathPoint, k: int, group: bool, scale: torch.Tensor) -> torch.Tensor:
    """The ``k`` largest weights of each class (of each feature column, in group mode)."""
    W = point.weight.abs() * scale  # weights on standardized features: comparable across features
    support = torch.zeros_like(W, dtype=torch.bool)
    if group:
        top = torch.topk(W.norm(dim=0), k).indices
        support[:, top] = True
        return support & (W.norm(dim=0) > 0)
    top = torch.topk(W, min(k, W.shape[1]), dim=1).indices
    support.scatter_(1, top, True)
    return support & (W > 0)


def _by_accuracy(path, drop: float, score=None, score_name: str = "score"):
    metric = "val_accuracy" if score is None else score_name
    values = path.metric(metric) if score is None else [float(score(p)) for p in path]
    if score is None and any(v is None for v in values):
        metric = "train_accuracy"
        values = path.metric(metric)
        warnings.warn("The path has no validation accuracy (fit_path(..., X_val=, y_val=)); selecting "
                      "on training accuracy, which favours dense points.", stacklevel=3)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        raise ValueError("max_accuracy_drop needs a classification family with accuracy on the path.")
    best = max(values)
    index = next(i for i, v in enumerate(values) if v >= best - drop - 1e-12)
    return index, {"rule": "max_accuracy_drop", "max_accuracy_drop": drop, "metric": metric,
                   "best_accuracy": best, "accuracy": values[index]}


def _relax(path, point: PathPoint, refit, score=None, score_name: str = "score"):
    """Refit the support with a light ridge penalty (no L1, so no selected feature drops out: the head keeps
    exactly the chosen features); keep it if validation (else train) accuracy, or `score`, is not worse."""
    relaxed = refit(point.lam * _RELAX_FACTOR, point.support, point, alpha=0.0)
    if score is not None:
        key, gain = score_name, float(score(relaxed)) - float(score(point))
    else:
        key = "val_accuracy" if point.metrics.get("val_accuracy") is not None else "train_accuracy"
        gain = (relaxed.metrics.get(key) or 0.0) - (point.metrics.get(key) or 0.0)
    relaxed.metrics["relaxed_from_lam"] = point.lam
    if gain >= 0:
        return relaxed, {"metric": key, "gain": gain, "kept": True}
    return point, {"metric": key, "gain": gain, "kept": False}


def _refit_function(path, X, y):
    if X is not None and y is not None:
        return make_refitter(path, X, y)
    if path.refitter is None:
        raise ValueError("This selection refits on the chosen support, which needs the training data: "
                         "pass X= and y= (the path was loaded from disk, so it does not hold them).")
    return path.refitter
