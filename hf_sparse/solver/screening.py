"""Which weights a path point works on (the strong rule, Tibshirani et al. 2012), and a golden-section search.

Example:
    >>> import torch
    >>> working_set(torch.tensor([3.0, 0.5, 2.0]), 1.0, torch.tensor([False, False, False])).tolist()
    [True, False, True]
    >>> extrapolated_gradient(torch.tensor([2.0]), 1.0, torch.tensor([1.0]), 2.0, 0.5)  # on the line through both
    tensor([2.5000])
"""

from __future__ import annotations

import math

import torch

from .secant import MAX_RATIO

MAX_NEW_SHARE = 0.4  # strong-rule candidates admitted at once, as a share of the active weights


def working_set(scores: torch.Tensor, threshold: float, active: torch.Tensor, limit: bool = True,
                rank: torch.Tensor | None = None) -> torch.Tensor:
    """The active weights plus the strongest strong-rule candidates (Tibshirani et al. 2012).

    The strong rule admits about twice the weights that end up active near the dense
    end; a Newton step costs the square of the working set, so only the candidates
    with the largest ``rank`` (default: ``scores``) join now (at least 10, or :data:`MAX_NEW_SHARE` of the active
    set), and the KKT check brings in any others that turn out to be needed. The scores at the new lambda, extrapolated
    from the last two points (:func:`extrapolated_gradient`), rank them far better than the last point's: of the
    weights active at the next point, the candidates left out were 715 against 64 (k=100 proxy, seed 1, summed over
    25 lambdas), 854 against 275 (k=1000, seed 0) and 506 against 157 (k=10, lowrank_noisy, seed 1). The strong rule
    itself left out 0 at all three.
    """
    candidates = (scores >= threshold) & ~active
    if not limit:  # the bound solver's sweeps cost the working set once, not squared
        return active | candidates
    limit = max(10, int(MAX_NEW_SHARE * int(active.sum())))
    if int(candidates.sum()) > limit:
        rank = scores if rank is None else rank
        cutoff = torch.topk(rank[candidates], limit).values[-1]
        candidates &= rank >= cutoff
    return active | candidates


def extrapolated_gradient(gradient: torch.Tensor, lam: float, earlier_gradient: torch.Tensor, earlier_lam: float,
                          new_lam: float) -> torch.Tensor:
    """The loss's gradient at ``new_lam`` on the line through its values at the last two points (``lam``,
    ``earlier_lam``), as the path's secant start predicts the weights. For an active weight it is exact up to the
    change of its size (``-l1 sign(w) - l2 w``); for the rest, a first-order guess that ranks strong-rule candidates.
    ``gradient`` as it is where the step is longer than :data:`~.secant.MAX_RATIO` times the last, or goes back: the
    path's first step, from lam_max's own point 1e-6 above it, would multiply the two gradients' rounding by 1e5
    (the ranks then hung on it: one process and two took different working sets)."""
    ratio = (new_lam - lam) / (lam - earlier_lam) if lam != earlier_lam else 0.0
    if not 0.0 < ratio <= MAX_RATIO:
        return gradient
    return gradient + (gradient - earlier_gradient) * ratio


def golden_min(f, lo: float, hi: float, iterations: int = 16) -> tuple[float, float]:
    """The smallest value of a unimodal ``f`` on ``[lo, hi]`` found by golden-section search, and where."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return (fc, c) if fc < fd else (fd, d)
