"""Which weights a path point works on (the strong rule, Tibshirani et al. 2012), and a golden-section search.

Example:
    >>> import torch
    >>> working_set(torch.tensor([3.0, 0.5, 2.0]), 1.0, torch.tensor([False, False, False])).tolist()
    [True, False, True]
"""

from __future__ import annotations

import math

import torch

MAX_NEW_SHARE = 0.4  # strong-rule candidates admitted at once, as a share of the active weights


def working_set(scores: torch.Tensor, threshold: float, active: torch.Tensor, limit: bool = True) -> torch.Tensor:
    """The active weights plus the strongest strong-rule candidates (Tibshirani et al. 2012).

    The strong rule admits about twice the weights that end up active near the dense
    end; a Newton step costs the square of the working set, so only the candidates
    with the largest scores join now (at least 10, or a quarter of the active set), and
    the KKT check brings in any others that turn out to be needed.
    """
    candidates = (scores >= threshold) & ~active
    if not limit:  # the bound solver's sweeps cost the working set once, not squared
        return active | candidates
    limit = max(10, int(MAX_NEW_SHARE * int(active.sum())))
    if int(candidates.sum()) > limit:
        cutoff = torch.topk(scores[candidates], limit).values[-1]
        candidates &= scores >= cutoff
    return active | candidates


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
