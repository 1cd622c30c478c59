"""Products of a working set's columns restricted to each class's own free columns (CPU).

At many classes each class has a handful of free columns out of the working set's hundreds (at 1,000
classes and 512 features, 2-3% of the (class, column) pairs at the dense end), and the dense products
``R^T X`` and ``X dW^T`` of a Newton step do 30-50 times the multiplications needed. These kernels do
only the needed ones, on tiles of rows transposed in cache so that the inner loops run over
contiguous rows, four columns (or classes) at a time. At 20,000 rows, 500 columns and 1,000 classes with 5% of
pairs free, the gradient took 64 ms against the dense product's 182 ms and the change of predictions 40 ms
against 176 ms; the shared moves' curvature, which torch makes in several ``n x m`` passes, is 3-5 times
faster restricted at every share measured (5-40%). Dense BLAS wins the gradient from about 16% of pairs free
(at 100 classes and 700 columns: 28.8 ms against 29.4 at 16%, 33.8 against 29.4 at 20%) and the change of
predictions from about 20% (17.0 against 17.8 ms at 20%, 21.4 against 17.8 at 30%).
:meth:`ClassPattern.pays` decides (:data:`MAX_DENSITY`, a little below those crossovers; measured on the 2-core box).
Sums are in float64. The class blocks' kernel is :mod:`.class_grams`.

Example:
    >>> free = np.array([[True, False, True], [False, True, False]])
    >>> pattern = ClassPattern.from_mask(free)
    >>> X = torch.randn(10, 3); R = torch.randn(10, 2, dtype=torch.float64)
    >>> g, sums = pattern.gradient(X, R)        # (R^T X)[free] and R's column sums, float64
    >>> torch.allclose(g, (R.T @ X.double())[torch.from_numpy(free)])
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch

from . import thin_products
from .softmax_rows import PARALLEL_KERNEL

_TILE = 64  # rows per tile: a tile's transposed columns and classes stay in cache (64: 61 ms, 256: 83 ms)
_PARTS = 64  # partial sums, each over every 64th tile: memory 64 x pairs whatever n, the same sums on any thread count
#: per product, the share of (class, column) pairs free up to which the restricted product beats dense BLAS
#: (measured on the 2-core box at 20,000 rows: 100 classes x 700 columns and 1,000 x 500)
MAX_DENSITY = {"gradient": 0.14, "matvec": 0.18, "curvature": 1.0}
#: the shared moves' terms row by row up to this many classes (``benchmarks/bench_shared_terms.py``, 20,000 rows, 700
#: columns, with four classes a pass: by rows against by columns 4.6-4.7 / 11.6-16.4 ms at 10 classes and 10-80% of
#: pairs free, 7.7 / 14.2-20.6 at 30 classes and 10-50%, 10.6 / 14.4 at 50 and 5%, 11.7 / 20.6 at 50 and 30%; at 100
#: classes 18.3-18.5 / 22.0-29.9 at 15-30% but 18.0 / 16.4 at 5%. Two classes a pass, by rows lost from 30 classes)
BY_ROWS_MAX_CLASSES = 64


@numba.njit(inline="always", fastmath={"reassoc", "contract"})
def _dot(a, b):
    total = 0.0
    for t in range(a.shape[0]):
        total += a[t] * b[t]
    return total


@numba.njit(inline="always", fastmath={"reassoc", "contract"})
def _dot4(a0, a1, a2, a3, b, s0, s1, s2, s3):
    t0 = 0.0
    t1 = 0.0
    t2 = 0.0
    t3 = 0.0
    for t in range(b.shape[0]):
        bt = b[t]
        t0 += a0[t] * bt
        t1 += a1[t] * bt
        t2 += a2[t] * bt
        t3 += a3[t] * bt
    return s0 + t0, s1 + t1, s2 + t2, s3 + t3


@numba.njit(inline="always")
def _tile(A, tile):
    """Rows ``[tile * _TILE, (tile + 1) * _TILE)`` of ``A``, transposed (a row per column), contiguous, in ``A``'s
    dtype (``.astype`` copies the tile again even where it is float64 already: 15-25% of the shared terms' pass)."""
    a = tile * _TILE
    return np.ascontiguousarray(A[a:min(A.shape[0], a + _TILE)].T)


@numba.njit(cache=True, nogil=True, parallel=True, fastmath={"reassoc", "contract"})
def _gradient(X, R, labels, weight, classes, indptr, cols):
    """``sum_i R[i, c] X[i, j]`` for the pattern's pairs (class ``classes[a]`` has the columns
    ``cols[indptr[a]:indptr[a + 1]]``), and ``sum_i R[i, c]`` for every class. With ``labels`` of ``n`` entries,
    ``R`` holds probabilities and the residual ``weight (R - onehot(labels))`` is made tile by tile.

    Every class's sum is added along the tile's rows, and only the classes with pairs are copied into the transposed
    tile, class by class (the whole tile's transpose, copied again into float64, cost more than the products where
    few classes have pairs). The dots reassociate into vector lanes. Against that former kernel, in one process:
    on the k=1000 proxy's own patterns (20,000 rows, 74 / 442 / 754 classes with pairs) 29.2 -> 8.8, 41.1 -> 19.0
    and 72.3 -> 40.3 ms; k=100's 5.3 -> 3.1, 9.5 -> 7.0 and 36.7 -> 20.6 ms; random patterns with 2-14% of pairs
    free 1.3-1.8x (at 1,000 classes and 500 columns 71 -> 43 and 263 -> 144 ms)."""
    n, k = R.shape
    tiles = (n + _TILE - 1) // _TILE
    from_probabilities = labels.shape[0] == n
    used = classes.shape[0]
    parts = np.zeros((_PARTS, cols.shape[0]))
    sums = np.zeros((_PARTS, k))
    for part in numba.prange(_PARTS):
        RT = np.empty((used, _TILE))
        total = np.empty(k)  # the tile's sums, then added to the part's (as accurate as summing the tile's columns)
        for tile in range(part, tiles, _PARTS):
            a = tile * _TILE
            rows = min(n, a + _TILE) - a
            total[:] = 0.0
            for t in range(rows):
                i = a + t
                r = R[i]
                if from_probabilities:  # the residual's entries, each rounded once (the sums cancel near the optimum)
                    w, label = weight[i], labels[i]
                    for c in range(k):
                        total[c] += w * (r[c] - (1.0 if c == label else 0.0))
                else:
                    for c in range(k):
                        total[c] += r[c]
            sums[part] += total
            for s in range(used):  # class by class: the tile's rows stay in cache, the writes run along the row
                c, out = classes[s], RT[s]
                if from_probabilities:
                    for t in range(rows):
                        out[t] = weight[a + t] * (R[a + t, c] - (1.0 if labels[a + t] == c else 0.0))
                else:
                    for t in range(rows):
                        out[t] = R[a + t, c]
            XT = _tile(X, tile).astype(np.float64)
            for s in range(used):
                r = RT[s, :rows]
                p = indptr[s]
                stop = indptr[s + 1]
                while p + 4 <= stop:  # four columns against one residual row: its loads and the loop shared
                    parts[part, p], parts[part, p + 1], parts[part, p + 2], parts[part, p + 3] = _dot4(
                        XT[cols[p]], XT[cols[p + 1]], XT[cols[p + 2]], XT[cols[p + 3]], r,
                        parts[part, p], parts[part, p + 1], parts[part, p + 2], parts[part, p + 3])
                    p += 4
                while p < stop:
                    parts[part, p] += _dot(XT[cols[p]], r)
                    p += 1
    return parts.sum(0), sums.sum(0)


@numba.njit(cache=True, nogil=True, parallel=True)
def _matvec(X, values, classes, indptr, cols, bias, out):
    """``out[i, classes[s]] = bias[classes[s]] + sum_p X[i, cols[p]] values[p]`` over class ``s``'s pairs, ``bias``
    in the other columns."""
    n = X.shape[0]
    tiles = (n + _TILE - 1) // _TILE
    for tile in numba.prange(tiles):
        a, b = tile * _TILE, min(n, (tile + 1) * _TILE)
        out[a:b] = bias  # the tile's rows, in cache for the writes below (a separate pass cost a third of the product)
        XT = _tile(X, tile)  # in the features' dtype: the sums below are float64 (acc)
        acc = np.zeros(b - a)
        for s in range(classes.shape[0]):
            acc[:] = 0.0
            p, stop = indptr[s], indptr[s + 1]
            while p + 4 <= stop:  # four columns a pass over the accumulator
                v0, v1, v2, v3 = values[p], values[p + 1], values[p + 2], values[p + 3]
                r0, r1, r2, r3 = XT[cols[p]], XT[cols[p + 1]], XT[cols[p + 2]], XT[cols[p + 3]]
                for t in range(b - a):
                    acc[t] += v0 * r0[t] + v1 * r1[t] + v2 * r2[t] + v3 * r3[t]
                p += 4
            while p < stop:
                v = values[p]
                row = XT[cols[p]]
                for t in range(b - a):
                    acc[t] += v * row[t]
                p += 1
            c = classes[s]
            for t in range(b - a):
                out[a + t, c] = acc[t] + bias[c]


# reassociation lets the two sums of the last loop run in vector lanes, comparisons (not min and max) clamp q:
# 36 -> 28 ms at 20,000 rows, 700 columns, 100 classes with 15% of pairs free (38 -> 33 at 1,000 classes and 1%)
@numba.njit(cache=True, nogil=True, parallel=True, fastmath={"reassoc", "contract"})
def _shared_terms(X, P, weight, columns, indptr, classes):
    """Per column ``j = columns[a]`` with classes ``C = classes[indptr[a]:indptr[a + 1]]`` and ``q_ij = sum_C P[i, c]``:
    ``sum_i w_i x_ij q_ij`` and ``h_j = sum_i w_i x_ij^2 q_ij (1 - q_ij)``. Returns (2, columns)."""
    n = X.shape[0]
    tiles = (n + _TILE - 1) // _TILE
    parts = np.zeros((_PARTS, 2, columns.shape[0]))
    for part in numba.prange(_PARTS):
        for tile in range(part, tiles, _PARTS):
            XT, PT = _tile(X, tile).astype(np.float64), _tile(P, tile)  # P: float64 (the caller's)
            a, b = tile * _TILE, tile * _TILE + XT.shape[1]
            w = weight[a:b]
            q = np.zeros(b - a)
            for s in range(columns.shape[0]):
                q[:] = 0.0
                p, stop = indptr[s], indptr[s + 1]
                while p + 4 <= stop:  # four classes a pass over the sum
                    p0, p1, p2, p3 = PT[classes[p]], PT[classes[p + 1]], PT[classes[p + 2]], PT[classes[p + 3]]
                    for t in range(b - a):
                        q[t] += (p0[t] + p1[t]) + (p2[t] + p3[t])
                    p += 4
                while p < stop:
                    pc = PT[classes[p]]
                    for t in range(b - a):
                        q[t] += pc[t]
                    p += 1
                x = XT[columns[s]]
                first = 0.0
                curvature = 0.0
                for t in range(b - a):
                    wx = w[t] * x[t]
                    first += wx * q[t]
                    qt = 0.0 if q[t] < 0.0 else q[t]
                    qt = 1.0 if qt > 1.0 else qt
                    curvature += wx * x[t] * qt * (1.0 - qt)
                parts[part, 0, s] += first
                parts[part, 1, s] += curvature
    return parts.sum(0)


@numba.njit(cache=True, nogil=True, parallel=True, fastmath={"contract"})
def _shared_terms_by_rows(X, P, weight, M):
    """:func:`_shared_terms` row by row for a few classes: ``q = P[i] M`` over every column at once (``M`` (k, m) 0/1
    float64) along the row's contiguous columns, four rows by four classes a pass over ``q`` and the four rows' terms
    added in one pass over the sums (its loads and stores, not the products, bound it: at 10 classes, 764 columns,
    47% free, 6.0 ms against 9.1 two rows by one class; at 20,000 x 768, half the pairs free, four classes a pass
    against two: 4.6 / 6.7 ms at 10 classes, 3.9 / 5.7 at 7, 5.3 / 9.0 at 16, 3.2 / 4.2 at 3 on random data; in the
    k=10 lowrank_noisy path 5.0 / 5.7 ms at 700-768 columns). Returns (2, m)."""
    n, m = X.shape
    k = P.shape[1]
    tiles = (n + _TILE - 1) // _TILE
    parts = np.zeros((_PARTS, 2, m))
    for part in numba.prange(_PARTS):
        Q = np.empty((4, m))
        q0, q1, q2, q3 = Q[0], Q[1], Q[2], Q[3]
        first, curvature = parts[part, 0], parts[part, 1]
        for tile in range(part, tiles, _PARTS):
            stop = min(n, (tile + 1) * _TILE)
            for i in range(tile * _TILE, stop, 4):
                # past the tile's last row: its row again, weighted zero
                i1, i2, i3 = min(i + 1, stop - 1), min(i + 2, stop - 1), min(i + 3, stop - 1)
                Q[:] = 0.0
                for c in range(0, k, 4):
                    c1, c2, c3 = min(c + 1, k - 1), min(c + 2, k - 1), min(c + 3, k - 1)
                    # past the last class: it again, weighted zero
                    o1, o2, o3 = (1.0 if c + 1 < k else 0.0), (1.0 if c + 2 < k else 0.0), (1.0 if c + 3 < k else 0.0)
                    a0, b0, e0, f0 = P[i, c], P[i1, c], P[i2, c], P[i3, c]
                    a1, b1, e1, f1 = P[i, c1] * o1, P[i1, c1] * o1, P[i2, c1] * o1, P[i3, c1] * o1
                    a2, b2, e2, f2 = P[i, c2] * o2, P[i1, c2] * o2, P[i2, c2] * o2, P[i3, c2] * o2
                    a3, b3, e3, f3 = P[i, c3] * o3, P[i1, c3] * o3, P[i2, c3] * o3, P[i3, c3] * o3
                    m0, m1, m2, m3 = M[c], M[c1], M[c2], M[c3]
                    for j in range(m):
                        u0, u1, u2, u3 = m0[j], m1[j], m2[j], m3[j]
                        q0[j] += a0 * u0 + a1 * u1 + a2 * u2 + a3 * u3
                        q1[j] += b0 * u0 + b1 * u1 + b2 * u2 + b3 * u3
                        q2[j] += e0 * u0 + e1 * u1 + e2 * u2 + e3 * u3
                        q3[j] += f0 * u0 + f1 * u1 + f2 * u2 + f3 * u3
                w0 = weight[i]
                w1 = weight[i1] if i + 1 < stop else 0.0
                w2 = weight[i2] if i + 2 < stop else 0.0
                w3 = weight[i3] if i + 3 < stop else 0.0
                x0, x1, x2, x3 = X[i], X[i1], X[i2], X[i3]
                for j in range(m):
                    y0, y1, y2, y3 = w0 * x0[j], w1 * x1[j], w2 * x2[j], w3 * x3[j]
                    r0, r1, r2, r3 = q0[j], q1[j], q2[j], q3[j]
                    first[j] += y0 * r0 + y1 * r1 + y2 * r2 + y3 * r3
                    s0, s1 = min(max(r0, 0.0), 1.0), min(max(r1, 0.0), 1.0)
                    s2, s3 = min(max(r2, 0.0), 1.0), min(max(r3, 0.0), 1.0)
                    curvature[j] += (y0 * x0[j] * s0 * (1.0 - s0) + y1 * x1[j] * s1 * (1.0 - s1)
                                     + y2 * x2[j] * s2 * (1.0 - s2) + y3 * x3[j] * s3 * (1.0 - s3))
    return parts.sum(0)


def _compressed(mask: np.ndarray):
    """``(rows with any True, their offsets into the flat list, the True columns row by row)``."""
    counts = mask.sum(1)
    rows = np.nonzero(counts)[0].astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(counts[rows])]).astype(np.int64)
    cols = np.nonzero(mask)[1].astype(np.int64)  # row-major: grouped by row, columns ascending
    return rows, indptr, cols


@dataclass
class ClassPattern:
    """Which (class, column) pairs are free: each class's columns, and each column's classes."""

    mask: np.ndarray  # (k, m) bool
    classes: np.ndarray  # the classes with a free column
    indptr: np.ndarray
    cols: np.ndarray  # class classes[s]'s free columns: cols[indptr[s]:indptr[s + 1]]

    @classmethod
    def from_mask(cls, mask) -> "ClassPattern":
        mask = np.ascontiguousarray(mask.cpu().numpy() if isinstance(mask, torch.Tensor) else mask, dtype=bool)
        return cls(mask, *_compressed(mask))

    @property
    def density(self) -> float:
        return len(self.cols) / max(self.mask.size, 1)

    @staticmethod
    def applies(X: torch.Tensor | None) -> bool:
        """Whether the restricted products can run on these columns: held in memory, on the CPU, contiguous."""
        return X is not None and X.device.type == "cpu" and X.is_contiguous()

    def pays(self, product: str, features: torch.Tensor | None = None) -> bool:
        """Whether the restricted ``product`` ("gradient", "matvec", "curvature") beats the dense one here.

        With the ``features`` the dense product would take: not where those take the compiled thin kernels
        (:mod:`.thin_products`, up to 32 classes), faster at any share of free pairs (at 20,000 rows, 10 classes,
        430-700 columns, 5-14% free: the change of predictions 1.3-2.3 against 4.7-6.4 ms, the gradient 1.6-2.6
        against 5.3-8.9; 30 classes, 500 columns: 3.0 against 4.6-5.4 and 3.8 against 6.9-9.4)."""
        if features is not None and thin_products.takes(product, features, self.mask.shape[0]):
            return False
        return self.mask.size > 0 and self.density <= MAX_DENSITY[product]

    def gradient(self, X: torch.Tensor, R: torch.Tensor, labels: torch.Tensor | None = None,
                 weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R^T X)`` at the free pairs, in the mask's row-major order, and ``R``'s column sums (k,), float64
        (this process's rows). With ``labels`` and ``weight`` (n,), ``R`` holds probabilities ``P`` and the
        residual ``weight (P - onehot(labels))`` is used, made in cache (no ``n x k`` array)."""
        if (labels is None) != (weight is None):
            raise ValueError("labels and weight go together (R holds probabilities), or neither (R is the residual)")
        if labels is None:
            labels_np, weight_np = np.zeros(0, dtype=np.int64), np.zeros(0)
        else:
            labels_np = labels.cpu().numpy().astype(np.int64)
            weight_np = weight.double().cpu().numpy()
        with PARALLEL_KERNEL:
            values, sums = _gradient(X.numpy(), R.double().contiguous().numpy(), labels_np, weight_np, self.classes,
                                     self.indptr, self.cols)
        return torch.from_numpy(values), torch.from_numpy(sums)

    def dense(self, values: torch.Tensor) -> torch.Tensor:
        """The (k, m) float64 matrix with ``values`` at the free pairs and zeros elsewhere."""
        out = torch.zeros(self.mask.shape, dtype=torch.float64)
        out[torch.from_numpy(self.mask)] = values.double()
        return out

    def matvec(self, X: torch.Tensor, W: torch.Tensor, out: torch.Tensor | None = None,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """``X W^T`` (n, k) float64 for a ``W`` (k, m) that is zero off the free pairs, plus ``bias`` (k,) if given,
        into ``out`` if given (contiguous float64, overwritten)."""
        values = W.double()[torch.from_numpy(self.mask)].numpy()
        k = self.mask.shape[0]
        shift = np.zeros(k) if bias is None else bias.double().cpu().contiguous().numpy()
        if out is None:
            out = torch.empty(X.shape[0], k, dtype=torch.float64)
        with PARALLEL_KERNEL:
            _matvec(X.numpy(), values, self.classes, self.indptr, self.cols, shift, out.numpy())
        return out

    def shared_terms(self, X: torch.Tensor, P: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per column ``j``, in one pass over ``P`` (this process's rows, float64), with ``q_ij`` the probability of
        ``j``'s free classes: ``sum_i w_i x_ij q_ij`` and ``sum_i w_i x_ij^2 q_ij (1 - q_ij)``, the curvature along
        moving them together (see :func:`~.shared_moves.shared_moves`). The slope along that move is the first
        minus those classes' label sums (:meth:`~.problem.Problem.label_sums`): no residual array, no gradient of
        every pair."""
        if self.mask.shape[0] <= BY_ROWS_MAX_CLASSES:
            with PARALLEL_KERNEL:
                out = _shared_terms_by_rows(X.numpy(), P.double().contiguous().numpy(),
                                            weight.double().contiguous().numpy(), self.mask.astype(np.float64))
            return torch.from_numpy(out[0]), torch.from_numpy(out[1])
        columns, indptr, classes = _compressed(self.mask.T)
        out = torch.zeros(2, self.mask.shape[1], dtype=torch.float64)
        if len(columns):
            with PARALLEL_KERNEL:
                part = _shared_terms(X.numpy(), P.double().contiguous().numpy(), weight.double().contiguous().numpy(),
                                     columns, indptr, classes)
            out[:, torch.from_numpy(columns)] = torch.from_numpy(part)
        return out[0], out[1]
