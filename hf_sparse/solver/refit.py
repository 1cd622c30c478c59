"""Refits on a fixed support: the exact-``k`` selection and the relaxed (ridge) refit of ``select``.

A :class:`Refitter` solves the path's objective at one lambda with every weight outside a given
support held at zero, to the path's tolerance: rounds of proximal Newton, each from a fresh Hessian,
until a round gains less than a hundredth of ``tol`` (relative to the objective). A fresh Newton
model predicts what is left to gain, so the refit ends within ``tol`` of the restricted optimum.

:func:`fit_path` keeps one over its training data (``path.refitter``); :func:`make_refitter` builds one
over given data for a loaded path. This module depends on the solver's parts (design, problem,
Newton, ``PathPoint``), not on ``fit.py`` or ``select.py``: ``fit.py`` and ``select.py`` import it.

Example:
    >>> refit = make_refitter(path, X, y)                # path loaded from disk
    >>> point = refit(path[5].lam, support, path[5])     # support: (k, d) bool, public layout
    >>> ridge = refit(path[5].lam / 100, support, path[5], alpha=0.0)  # keeps every supported weight
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from .design import Design
from .distributed import Reducer
from .families import get_family
from .newton import Iterate, newton_solve
from .path import PathPoint
from .problem import Problem
from .target import FeatureCounts
from .validation import check_features, check_options, check_targets

if TYPE_CHECKING:
    from .path import RegularizationPath

_MAX_ROUNDS = 20       # fresh-Hessian Newton rounds per refit
_MAX_STEPS = 200       # Newton steps per round
_ROUND_GAIN = 1e-2     # stop once a round gains less than this share of tol (relative to the objective)


class Refitter:
    """``refitter(lam, support, start, alpha=None) -> PathPoint``: the path's problem on a fixed support.

    Args:
        problem: the training problem (standardized design, targets, row weights).
        alpha: the path's L1 share (a call's ``alpha=`` overrides it: ``0.0`` is a ridge refit that keeps
            every supported weight).
        group: the path's group penalty.
        tol: the relative accuracy to reach (the path's ``tol``).
        val: ``(X_val, y_val)`` tensors scored on each refit point, or None.
    """

    def __init__(self, problem: Problem, *, alpha: float, group: bool, tol: float, val=None):
        self.problem, self.alpha, self.group, self.tol, self.val = problem, alpha, group, tol, val

    def __call__(self, lam: float, support: torch.Tensor, start: PathPoint, alpha: float | None = None) -> PathPoint:
        """Solve at ``lam`` with the weights outside ``support`` (k, d, public layout) at zero, from ``start``."""
        started = time.perf_counter()
        p = self.problem
        dtype, device = p.design.dtype, p.design.device
        W0 = start.weight.to(device, dtype)
        b0 = start.bias.to(device, dtype)
        W_std, b_std = standardize_weights((W0 * support.to(W0)).double(), b0.double(), p.design.mean, p.design.std)
        W_int, b_int = p.to_internal(W_std, b_std)
        support_int = p.support_to_internal(support.to(device))
        state = Iterate.zeros(p)
        state.W, state.b = W_int.double(), b_int.double()
        state.refresh(p)
        pen = p.penalty(lam, self.alpha if alpha is None else alpha, self.group)
        cols = torch.nonzero(support_int.any(0)).flatten()
        free = support_int[:, cols].to(device)
        objective = p.loss(state.Z) + float(pen.value(state.W))
        steps, gain, rounds = 0, math.inf, 0
        while rounds < _MAX_ROUNDS:
            rounds += 1
            # tol * 1e-3: newton_solve ends a round once a step is within 1e3 times its tol (Newton converges
            # quadratically from there); the next round, from a fresh Hessian, measures what is left
            steps += newton_solve(p, state, pen, cols, free, tol=self.tol * 1e-3, max_steps=_MAX_STEPS)
            new = p.loss(state.Z) + float(pen.value(state.W))
            gain, objective = (objective - new) / max(abs(new), 1e-300), new
            if gain <= _ROUND_GAIN * self.tol:
                break
        loss = p.loss(state.Z)
        point = self._point(lam, state, loss, loss + float(pen.value(state.W)), steps, time.perf_counter() - started)
        # restricted problem: the full problem's duality gap does not apply; `refit_gain` is the relative
        # objective gain of the last Newton round (what the round before it had left)
        point.metrics.update(gap=None, refit_rounds=rounds, refit_gain=max(gain, 0.0),
                             converged=bool(gain <= _ROUND_GAIN * self.tol))
        return point

    def _point(self, lam, state: Iterate, loss: float, objective: float, steps: int, seconds: float) -> PathPoint:
        p = self.problem
        W_std, b_std = p.to_public(state.W, state.b)
        W, b = (t.to(p.design.dtype) for t in raw_weights(W_std, b_std, p.design.mean.double(),
                                                          p.design.std.double()))
        counts = FeatureCounts.from_support(W != 0)
        reducer = p.design.reducer
        accuracy = None
        if p.family.is_classification:
            n_total = reducer.scalar(torch.tensor(float(p.design.n_rows)))
            accuracy = reducer.scalar(p.family.correct(state.Z, p.Y).sum()) / n_total
        metrics = {
            "lam": lam, "nnz": counts.nnz, "n_features": counts.n_features, "features_per_class": counts.per_class,
            "objective": objective, "train_loss": loss, "train_accuracy": accuracy, "iterations": steps,
            "seconds": seconds,
        }
        if self.val is not None:
            metrics.update(validation_scores(p, W, b, *self.val))
        return PathPoint.from_dense(lam, W, b, metrics)


def make_refitter(path: RegularizationPath, X, y, *, device=None, dtype=None, sample_weight=None) -> Refitter:
    """A :class:`Refitter` over training data ``X``, ``y`` (optionally weighted) with the path's own
    standardization, family, penalty and tolerance: what ``select`` needs for a path loaded from disk.

    Example:
        >>> path = RegularizationPath.load("my_path")
        >>> path.select(features_per_class=5, X=X, y=y)     # calls make_refitter(path, X, y)
    """
    reducer = Reducer.auto(None)
    n, _ = check_features(X)
    k = path[0].shape[0]
    y_t, _ = check_targets(y, n, path.family, reducer, k if path.family == "multinomial" else None)
    device = device or (X.device if isinstance(X, torch.Tensor) else "cpu")
    design = Design.build(X, device=device, dtype=dtype or torch.float32, reducer=reducer,
                          stats=(path.mean, path.std))
    w = None if sample_weight is None else check_options(path.alpha, sample_weight, n, None, 2, 1e-3, 1e-6)
    problem = Problem.build(design, y_t, family=path.family, n_outputs=k, sample_weight=w)
    return Refitter(problem, alpha=path.alpha, group=path.group, tol=path.info.get("tol", 1e-6))


def raw_weights(W: torch.Tensor, b: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
    """Weights on standardized features to the same head on raw features: ``(W / std, b - (W / std) @ mean)``."""
    W_raw = W / std
    return W_raw, b - W_raw @ mean


def standardize_weights(W_raw: torch.Tensor, b_raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
    """The inverse of :func:`raw_weights`."""
    return W_raw * std, b_raw + W_raw @ mean


def validation_scores(problem: Problem, W: torch.Tensor, b: torch.Tensor, X_val, y_val) -> dict:
    """Validation loss (and accuracy, for classification) of raw-space weights, in the public family."""
    fam = get_family(problem.public_family)
    Xv = X_val.to(device=W.device, dtype=W.dtype)
    Z = Xv @ W.to(Xv).T + b.to(Xv)
    Y = fam.encode(y_val.to(W.device), problem.n_outputs, W.dtype)
    out = {"val_loss": float(fam.row_loss(Z, Y).double().mean())}
    if fam.is_classification:
        out["val_accuracy"] = float(fam.correct(Z, Y).double().mean())
    return out
