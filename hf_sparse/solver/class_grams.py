"""Every class's Newton block ``[X_F_c, 1]' diag(h_c) [X_F_c, 1]`` on the CPU, by a compiled row-tile kernel.

The class-diagonal blocks of :class:`~.class_blocks.ClassBlocks` at many classes are a thousand small Gram matrices
over each class's few free columns: batched BLAS spends its time gathering those columns, this kernel reads them
from a tile of rows transposed once in cache (twice as fast from a few dozen slots to a few hundred). A block grown
by new slots (:mod:`.kept_blocks`) forms only the new slots' rows.

Example:
    >>> X, h = torch.randn(100, 4), torch.rand(100, 2, dtype=torch.float64)
    >>> slots, sizes = np.array([[0, 2, 4], [1, 4, 5]]), np.array([3, 2])   # slot 4 = the bias, 5 = padding
    >>> class_grams(X, h, slots, sizes).shape
    (2, 3, 3)
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from .softmax_rows import PARALLEL_KERNEL

# the class blocks' tiles, summed in the features' precision (float32: twice the SIMD lanes), added to float64 per tile:
# within ~2e-8 of float64 (blocks steer the steps; gradient, line search and gap are exact). Against float64 sums on
# 64-row tiles, 20,000 rows: 1,000 classes of 10-25 slots 215 -> 139 ms, of 30-70 slots 1,340 -> 569 ms; 100 classes
# of 72-128 slots 288 -> 163 ms (tiles of 64 and 128 rows: 180 and 168 ms at 10-25). Since the kernel takes four rows
# at a time, 512-row tiles against 256: 192-201 against 217 ms at 10 classes of 437-484 slots, 134-136 / 141-150 at
# 100 of 72-128, 586-613 / 678-694 at 1,000 of 30-70, 162 / 155-159 at 1,000 of 10-25; 1,024: 212 ms at 10 classes
_GRAM_TILE = 512


@numba.njit(inline="always")
def _add_row(H, c, i, j, s, v0, v1, v2, v3):
    """``H[c, i, j:j + 4] += v`` for the entries in the lower triangle (``j + q <= i``) of an ``s``-slot block."""
    if j <= i:
        H[c, i, j] += v0
    if j + 1 <= i and j + 1 < s:
        H[c, i, j + 1] += v1
    if j + 2 <= i and j + 2 < s:
        H[c, i, j + 2] += v2
    if j + 3 <= i and j + 3 < s:
        H[c, i, j + 3] += v3


@numba.njit(inline="always", fastmath={"reassoc", "contract"})
def _rows(H, c, i, s, XT, index, u0, u1, u2, u3, r, zero, four):
    """Rows ``i`` to ``i + 3`` (``four``) or ``i`` and ``i + 1`` (if below ``s``) of block ``c``, lower triangle:
    ``U`` rows ``u0..u3`` times the slots' columns, four at a time. Four rows take sixteen sums on eight loads,
    which keeps the tile's reads from L2 within its bandwidth; two rows are for the one to three rows left (four
    there would sum zeros: a grown block at many classes adds one or two). ``four`` is a constant at each call:
    the compiler drops the branches."""
    for j in range(0, i + (4 if four else 2), 4):  # past the diagonal: dropped by _add_row
        a0, a1, a2, a3 = XT[index[j]], XT[index[j + 1]], XT[index[j + 2]], XT[index[j + 3]]
        t00 = t01 = t02 = t03 = t10 = t11 = t12 = t13 = zero
        t20 = t21 = t22 = t23 = t30 = t31 = t32 = t33 = zero
        for t in range(r):
            x0, x1, x2, x3 = a0[t], a1[t], a2[t], a3[t]
            v0, v1 = u0[t], u1[t]
            t00 += v0 * x0
            t01 += v0 * x1
            t02 += v0 * x2
            t03 += v0 * x3
            t10 += v1 * x0
            t11 += v1 * x1
            t12 += v1 * x2
            t13 += v1 * x3
            if four:
                v2, v3 = u2[t], u3[t]
                t20 += v2 * x0
                t21 += v2 * x1
                t22 += v2 * x2
                t23 += v2 * x3
                t30 += v3 * x0
                t31 += v3 * x1
                t32 += v3 * x2
                t33 += v3 * x3
        _add_row(H, c, i, j, s, t00, t01, t02, t03)
        if i + 1 < s:
            _add_row(H, c, i + 1, j, s, t10, t11, t12, t13)
        if four:
            _add_row(H, c, i + 2, j, s, t20, t21, t22, t23)
            _add_row(H, c, i + 3, j, s, t30, t31, t32, t33)


@numba.njit(cache=True, nogil=True, parallel=True, fastmath={"reassoc", "contract"})
def _class_grams(X, h, slots, sizes, classes, first, H):
    """``H[c, :s, :s] += [X, 1, 0][:, slots[c, :s]]' diag(h[:, classes[c]]) [X, 1, 0][:, slots[c, :s]]`` (lower
    triangle) from row ``first[c]`` on (a grown block: the rows it had are left alone), ``s = sizes[c]``; slot ``m``
    is a column of ones (the bias), ``m + 1`` of zeros (padding). Per tile of rows, transposed once (in parallel:
    copying each class's columns besides cost a quarter of a build), ``U = h X_slots`` times ``X_slots'`` four rows
    by four columns at a time, the last one to three rows two at a time (:func:`_rows`).
    Four rows against two: 244 -> 163 ms at 10 classes of 437-484 slots, 139 -> 119 at 100 of 72-128, the same at
    1,000 of 10-70 (four rows for every last one to three was 24% slower at 1,000 classes, whose grown blocks add one
    or two); one row at a time was 2.1x slower than two at 2-32 slots."""
    n, m = X.shape
    k = slots.shape[0]
    XT = np.zeros((m + 2, _GRAM_TILE), dtype=X.dtype)
    XT[m] = 1.0
    zero = XT[m + 1, 0]  # 0 in the features' precision: the sums below are taken in it
    for a in range(0, n, _GRAM_TILE):
        b = min(n, a + _GRAM_TILE)
        r = b - a
        for j in numba.prange(m):
            for t in range(r):
                XT[j, t] = X[a + t, j]
        for c in numba.prange(k):
            s, f, hc = sizes[c], first[c], classes[c]
            index = np.full(s + 4, m + 1)  # the zero row past s: the blocks of four may run over the end
            index[:s] = slots[c, :s]
            U = np.zeros((s - f + 1, r), dtype=X.dtype)
            # the class's column of h (a strided read), gathered once a tile, not once per slot: on the proxies'
            # blocks 49.7 -> 39.7 and 81.6 -> 54.3 ms at 1,000 classes of 1-14 and 1-66 slots, 34.7 -> 21.4 at 100
            # of 1-27
            weights = np.empty(r, dtype=X.dtype)
            for t in range(r):
                weights[t] = h[a + t, hc]
            for i in range(f, s):
                xi = XT[index[i]]
                for t in range(r):
                    U[i - f, t] = weights[t] * xi[t]
            i = f
            while i + 4 <= s:
                _rows(H, c, i, s, XT, index, U[i - f], U[i + 1 - f], U[i + 2 - f], U[i + 3 - f], r, zero, True)
                i += 4
            while i < s:
                u = U[i - f]
                _rows(H, c, i, s, XT, index, u, U[i + 1 - f], u, u, r, zero, False)
                i += 2


def class_grams(X: torch.Tensor, h: torch.Tensor, slots: np.ndarray, sizes: np.ndarray,
                classes: np.ndarray | None = None, first: np.ndarray | None = None) -> np.ndarray:
    """Every class's block ``[X_F_c, 1]' diag(h_c) [X_F_c, 1]`` in float64, ``(k, p, p)`` (see
    :class:`~.class_blocks.ClassBlocks`), each tile of rows summed in ``X``'s precision: twice as fast as batched
    BLAS from a few dozen slots (where BLAS spends its time gathering columns) to a few hundred. ``classes``: which
    columns of ``h`` the rows of ``slots`` are (default: all, in order). ``first``: per class, the first slot whose
    row and column are made (the entries among the slots before it are left zero: a block grown by new slots)."""
    k, p = slots.shape
    classes = np.arange(k, dtype=np.int64) if classes is None else np.ascontiguousarray(classes, dtype=np.int64)
    first = np.zeros(k, dtype=np.int64) if first is None else np.ascontiguousarray(first, dtype=np.int64)
    H = np.zeros((k, p, p))
    with PARALLEL_KERNEL:
        _class_grams(X.numpy(), h.contiguous().numpy(), np.ascontiguousarray(slots), sizes, classes, first, H)
        _mirror_lower(H)
    return H


@numba.njit(cache=True, nogil=True, parallel=True)
def _mirror_lower(H):
    """``H[c]``'s upper triangle from its lower one, in place (NumPy's ``tril`` and transpose: three passes)."""
    k, p, _ = H.shape
    for c in numba.prange(k):
        for i in range(p):
            for j in range(i):
                H[c, j, i] = H[c, i, j]
