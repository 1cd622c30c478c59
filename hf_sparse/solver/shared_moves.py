"""The shared-feature moves of the many-class block solver: each column's free classes moved together.

Softmax is flat along a constant added to every class, so class-diagonal Newton blocks
(:mod:`.block_newton`) overstate the curvature along "move all of a feature's classes together",
the direction of the model's smallest generalized eigenvalues, and alone converge slowly. After
each block step the solver takes, for every column at once, the exact minimizer of the penalized
loss's 1-D model along that move (:func:`shared_moves`), with the loss's true curvature along it
(:func:`shared_terms`).

Example:
    >>> first, h = shared_terms(problem, block, P, moving)                  # (m,) each; slope = first - label part
    >>> t = shared_moves(slopes, w, moving, h, l1, l2)                       # (m,) move per column
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from .chunking import chunk_rows

_PIECE_ENTRIES = 1 << 23  # rows x columns of the curvature's temporaries per piece on a CPU (32 MB of float32)


@numba.njit(cache=True, nogil=True)
def shared_moves(slopes, w, free, h, l1, l2):
    """Per column ``j``, the exact minimizer ``t_j`` of the 1-D model along moving every free class's
    weight of that column together (``W[c, j] += t`` for the free ``c``):

        slopes[j] t + h[j] t^2 / 2 + sum_c (l1 |w[c, j] + t| + l2/2 (w[c, j] + t)^2)   (free c)

    ``slopes`` (m,) the loss's slope along each move (the gradient summed over the free classes), ``w`` (k, m)
    the weights, ``h`` (m,) the loss's curvature along the move.
    Softmax is flat along a constant added to every class, so this curvature is small where the
    free classes hold most of the probability, which is where class-diagonal blocks overstate it.
    Returns ``t`` (m,). The model is piecewise quadratic with kinks at ``t = -w[c, j]``: scanned in order.
    """
    k, m = w.shape
    t = np.zeros(m)
    b = np.empty(k)
    for j in range(m):
        n_free = 0
        a = slopes[j]
        sw = 0.0
        for c in range(k):
            if free[c, j]:
                b[n_free] = -w[c, j]
                n_free += 1
                sw += w[c, j]
        if n_free == 0:
            continue
        kinks = np.sort(b[:n_free])
        slope = h[j] + l2 * n_free
        const = a + l2 * sw
        # D(t) = const + slope t + l1 (#(kinks < t) - #(kinks > t)): nondecreasing
        below = 0  # kinks strictly below the current interval
        found = False
        i = 0
        while True:
            upper = kinks[i] if i < n_free else np.inf
            lower = kinks[i - 1] if i > 0 else -np.inf
            # inside (lower, upper): below = i kinks under t, n_free - i above
            if slope > 0.0:
                root = -(const + l1 * (2 * below - n_free)) / slope
                if lower < root < upper:
                    t[j] = root
                    found = True
                    break
            if i >= n_free:
                break
            # the kink at upper (with its multiplicity)
            mult = 1
            while i + mult < n_free and kinks[i + mult] == upper:
                mult += 1
            # the derivative just below the kink and just above it
            left = const + slope * upper + l1 * (2 * below - n_free)
            right = const + slope * upper + l1 * (2 * (below + mult) - n_free)
            if left <= 0.0 <= right:
                t[j] = upper
                found = True
                break
            below += mult
            i += mult
        if not found:
            t[j] = 0.0
    return t


def shared_terms(problem, block, P: torch.Tensor, moving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column ``j``, with ``q_ij`` the probability (``P``: (n, k)) of the column's moving classes (``moving``:
    (k, m) bool), summed over processes: ``sum_i w_i x_ij q_ij`` and ``h_j = sum_i w_i x_ij^2 q_ij (1 - q_ij)``, the
    loss's exact curvature along moving them together. The slope along that move is the first less those classes'
    label sums (:meth:`~.problem.Problem.label_sums`): no gradient of every pair. One ``n k m`` product for ``q``;
    on the CPU the block solver takes both over the moving pairs only,
    :meth:`~.class_products.ClassPattern.shared_terms`, which this torch code (a GPU's) mirrors."""
    dtype = problem.design.dtype
    free_t = moving.to(device=P.device, dtype=dtype)
    w = problem.row_weight.to(dtype)
    out = torch.zeros(2, len(block.cols), dtype=torch.float64, device=P.device)
    for start, stop, chunk in block.pieces(chunk_rows(max(len(block.cols), P.shape[1]), P.device, _PIECE_ENTRIES)):
        q = (P[start:stop].to(dtype) @ free_t).clamp_(0, 1)
        wx = chunk * w[start:stop, None]
        out[0] += (wx * q).sum(0, dtype=torch.float64)
        out[1] += (wx.mul_(chunk).mul_(q).mul_(1 - q)).sum(0, dtype=torch.float64)
    first, curvature = problem.design.reducer.sum(out)
    return first, curvature
