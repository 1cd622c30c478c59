"""Coordinate descent on the small quadratic models of the proximal Newton steps.

Each Newton step replaces the loss by a quadratic in the working-set weights:
``g . (v - w0) + 1/2 (v - w0)' H (v - w0)``, plus the elastic-net penalty. These
problems have at most a few thousand variables and a Gram matrix already formed,
so exact coordinate updates (the glmnet "covariance" method) solve them in
microseconds per sweep. The last coordinate of every block is the bias, which is
not penalized. Compiled with numba; the first call in a process compiles (about a
second), later calls use numba's on-disk cache.

Example:
    >>> H = np.array([[2.0, 0.0], [0.0, 1.0]]); g = np.array([-4.0, 0.0])
    >>> elastic_net_cd(H, g, np.zeros(2), 1.0, 0.0, np.ones(2, bool), 100, 1e-14)
    array([1.5, 0. ])
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _elastic_net_update(hjj, v, g, l1, l2):
    """The exact minimizer in one coordinate: soft-threshold, then shrink by the L2 part."""
    u = hjj * v - g
    if u > l1:
        return (u - l1) / (hjj + l2)
    if u < -l1:
        return (u + l1) / (hjj + l2)
    return 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _group_shrink(norm, l1, L, l2):
    """The factor in [0, 1) that the group soft-threshold multiplies a block by."""
    threshold = l1 / (L + l2)
    return 0.0 if norm <= threshold else 1.0 - threshold / norm


@numba.njit(cache=True, nogil=True)
def elastic_net_cd(H, g, w0, l1, l2, free, max_sweeps, tol):
    """Minimize the quadratic model plus ``l1 |v|_1 + l2/2 |v|^2`` over the free coordinates.

    ``H`` (m, m), ``g`` and ``w0`` (m,): the last coordinate is the unpenalized bias.
    Returns the minimizer ``v`` (coordinates not free stay at ``w0``).
    """
    m = g.shape[0]
    v = w0.copy()
    grad = g.copy()  # gradient of the quadratic at v: g + H (v - w0)
    for _ in range(max_sweeps):
        biggest = 0.0
        for j in range(m):
            if not free[j]:
                continue
            hjj = H[j, j]
            if hjj <= 0.0:
                continue
            if j == m - 1:
                new = v[j] - grad[j] / hjj
            else:
                new = _elastic_net_update(hjj, v[j], grad[j], l1, l2)
            delta = new - v[j]
            if delta != 0.0:
                for i in range(m):
                    grad[i] += delta * H[j, i]
                v[j] = new
                change = hjj * delta * delta
                if change > biggest:
                    biggest = change
        if biggest < tol:
            break
    return v


@numba.njit(cache=True, nogil=True)
def group_elastic_net_cd(H, g, w0, l1, l2, free, max_sweeps, tol):
    """The group form: a feature's weights across the ``k`` classes are one block.

    ``H`` (k, m, m) is block diagonal over classes; ``g`` and ``w0`` are (k, m); the
    penalty is ``l1 sum_j |v[:, j]|_2 + l2/2 |v|^2`` over the penalized columns
    (all but the last). Each block update majorizes the block's curvature by its
    largest diagonal entry, which makes the group soft-threshold exact.
    """
    k, m = g.shape
    v = w0.copy()
    grad = g.copy()
    u = np.empty(k)
    for _ in range(max_sweeps):
        biggest = 0.0
        for j in range(m):
            if not free[j]:
                continue
            if j == m - 1:
                for c in range(k):
                    hjj = H[c, j, j]
                    if hjj <= 0.0:
                        continue
                    delta = -grad[c, j] / hjj
                    if delta != 0.0:
                        for i in range(m):
                            grad[c, i] += delta * H[c, j, i]
                        v[c, j] += delta
                        if hjj * delta * delta > biggest:
                            biggest = hjj * delta * delta
                continue
            L = 0.0
            for c in range(k):
                if H[c, j, j] > L:
                    L = H[c, j, j]
            if L <= 0.0:
                continue
            norm = 0.0
            for c in range(k):
                u[c] = (v[c, j] - grad[c, j] / L) * L / (L + l2)
                norm += u[c] * u[c]
            shrink = _group_shrink(math.sqrt(norm), l1, L, l2)
            for c in range(k):
                delta = shrink * u[c] - v[c, j]
                if delta != 0.0:
                    for i in range(m):
                        grad[c, i] += delta * H[c, j, i]
                    v[c, j] += delta
                    if L * delta * delta > biggest:
                        biggest = L * delta * delta
        if biggest < tol:
            break
    return v


@numba.njit(cache=True, nogil=True)
def coupled_cd(H, g, w0, l1, l2, group_start, group_size, group_penalized, group_curvature, max_sweeps, tol):
    """Block coordinate descent on a full (coupled) Hessian ``H`` (M, M).

    Coordinates are laid out in groups of consecutive indices: ``group_start[q]``,
    ``group_size[q]``. A penalized group of size 1 gets the exact elastic-net update;
    a larger penalized group (a feature across classes) the group soft-threshold under
    the majorizing curvature ``group_curvature[q]`` (the largest eigenvalue of its
    Hessian block); unpenalized coordinates (biases) exact Newton updates. Returns ``v`` and whether it
    converged (a sweep's largest step below ``tol`` within ``max_sweeps``).
    """
    M = g.shape[0]
    v = w0.copy()
    grad = g.copy()
    u = np.empty(M)
    for _ in range(max_sweeps):
        biggest = 0.0
        for q in range(group_start.shape[0]):
            s, size = group_start[q], group_size[q]
            if not group_penalized[q] or size == 1:
                for j in range(s, s + size):
                    hjj = H[j, j]
                    if hjj <= 0.0:
                        continue
                    if group_penalized[q]:
                        new = _elastic_net_update(hjj, v[j], grad[j], l1, l2)
                    else:
                        new = v[j] - grad[j] / hjj
                    delta = new - v[j]
                    if delta != 0.0:
                        for i in range(M):
                            grad[i] += delta * H[j, i]
                        v[j] = new
                        if hjj * delta * delta > biggest:
                            biggest = hjj * delta * delta
                continue
            L = group_curvature[q]
            if L <= 0.0:
                continue
            norm = 0.0
            for j in range(s, s + size):
                u[j] = (v[j] - grad[j] / L) * L / (L + l2)
                norm += u[j] * u[j]
            shrink = _group_shrink(math.sqrt(norm), l1, L, l2)
            for j in range(s, s + size):
                delta = shrink * u[j] - v[j]
                if delta != 0.0:
                    for i in range(M):
                        grad[i] += delta * H[j, i]
                    v[j] += delta
                    if L * delta * delta > biggest:
                        biggest = L * delta * delta
        if biggest < tol:
            return v, True
    return v, False


@numba.njit(cache=True, nogil=True, parallel=True)
def batched_cd(H, sizes, g, w0, l1, l2, damping, max_sweeps, tol):
    """:func:`elastic_net_cd` on every class's block at once.

    ``H`` (k, p, p): class ``c``'s model on its first ``sizes[c]`` slots (the last of them the
    unpenalized bias), plus ``damping`` on the diagonal; ``g``, ``w0`` (k, p). Returns ``v`` (k, p);
    slots past ``sizes[c]`` keep ``w0``.
    """
    k, p = g.shape
    v = w0.copy()
    for c in numba.prange(k):
        s = sizes[c]
        if s == 0:
            continue
        Hc = H[c, :s, :s].copy()
        for i in range(s):
            Hc[i, i] += damping
        free = np.ones(s, dtype=np.bool_)
        v[c, :s] = elastic_net_cd(Hc, g[c, :s].copy(), w0[c, :s].copy(), l1, l2, free, max_sweeps, tol)
    return v
