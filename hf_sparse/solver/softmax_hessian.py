"""The exact softmax Hessian on a working set, kept between Newton steps and grown in place.

For three or more classes the Newton steps need the coupled Hessian of the
softmax loss on the working-set coordinates (class ``c``, column ``j``):

    H[a, b] = sum_i w_i x_ia x_ib (delta(c_a, c_b) p_ic_a - p_ic_a p_ic_b)

It costs ``n M^2`` for ``M`` coordinates, the dominant cost of a path near its
dense end. Two things keep it down: a symmetric rank-k product (BLAS ``syrk``,
half the work of a general product) on the CPU, and reuse: when the working
set grows between rounds or lambdas, :class:`SoftmaxHessian` keeps the Hessian
it formed and adds only the new coordinates' rows, at the same reference
predictions, so the matrix stays the exact (positive semi-definite) Hessian at
one point. The Newton steps' line search and the duality-gap check make a
slightly old Hessian safe; the Newton loop asks for a fresh one when its steps
stop converging fast.

Example:
    >>> hessian = SoftmaxHessian()
    >>> H = hessian.at(block, Z, row_weight, coord_col, coord_class, fresh=True)   # (M, M) float64
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import blas

from .thin_products import gather_columns
from .families import softmax

_SYRK = {torch.float32: blas.ssyrk, torch.float64: blas.dsyrk}
_PIECE_ENTRIES = 1 << 26  # rows x width of the temporaries per piece of rows (256 MB of float32)


def gram(V: torch.Tensor) -> torch.Tensor:
    """``V.T @ V`` in float64; on the CPU by BLAS ``syrk`` (half the multiplications)."""
    if V.device.type == "cpu" and V.dtype in _SYRK and V.is_contiguous() and V.shape[1] >= 512:
        # V is row-major (n, M), so V.T is a column-major (M, n) array: syrk computes a @ a.T
        # into the upper triangle of a fresh zero matrix
        upper = torch.from_numpy(_SYRK[V.dtype](1.0, V.numpy().T, trans=0)).double()
        full = upper + upper.T
        full.diagonal().mul_(0.5)
        return full
    return (V.T @ V).double()


def add_batched_gram(out: torch.Tensor, A: torch.Tensor, rows_per_batch: int | None = None) -> None:
    """``out[c] += A[:, c]^T A[:, c]`` in float64 for ``A`` (rows, classes, q). ``rows_per_batch``: the rows cut
    into batches of this many, one small product each, summed in float64 (a GPU: one product per class over
    hundreds of thousands of rows keeps a few of its multiprocessors busy). Else past 256 slots by column ranges on
    and below the diagonal, those above mirrored (at 10 classes of 390 slots, three ranges: 6 of 9 products, 25.5
    against 31.5 ms a piece of 2,150 rows)."""
    r, classes, q = A.shape
    if rows_per_batch and r >= 2 * rows_per_batch:
        s = r // rows_per_batch
        stacked = A[:s * rows_per_batch].reshape(s, rows_per_batch, classes, q).permute(2, 0, 1, 3)
        stacked = stacked.reshape(classes * s, rows_per_batch, q)
        out += torch.bmm(stacked.transpose(1, 2), stacked).view(classes, s, q, q).sum(1, dtype=torch.float64)
        A = A[s * rows_per_batch:]
    A = A.permute(1, 0, 2)
    parts = max(1, min(3, q // 128))
    edges = [round(i * q / parts) for i in range(parts + 1)]
    for i in range(parts):
        a, b = edges[i], edges[i + 1]
        for j in range(i, parts):
            e, f = edges[j], edges[j + 1]
            product = torch.bmm(A[:, :, e:f].transpose(1, 2), A[:, :, a:b]).double()
            out[:, e:f, a:b] += product
            if j > i:
                out[:, a:b, e:f] += product.transpose(1, 2)


def _max_rows(width: int) -> int:
    """Rows per piece so that an (rows, width) temporary stays within ``_PIECE_ENTRIES``
    (an ImageNet-shape problem has 1.28M rows per device)."""
    return max(1, _PIECE_ENTRIES // max(width, 1))


def _coordinates(chunk: torch.Tensor, coord_col: torch.Tensor) -> torch.Tensor:
    """The chunk's columns at each coordinate (n, M); the bias coordinates (index m) are ones."""
    if chunk.shape[1] == 0:
        return torch.ones(chunk.shape[0], len(coord_col), device=chunk.device, dtype=chunk.dtype)
    return gather_columns(chunk, coord_col)


def coupled_hessian(block, P: torch.Tensor, row_weight: torch.Tensor, coord_col: torch.Tensor,
                    coord_class: torch.Tensor) -> torch.Tensor:
    """The full softmax Hessian at probabilities ``P`` on the coordinates, float64, over all processes.

    ``coord_col[a]`` indexes the block's columns (``m`` for the bias), ``coord_class[a]`` the class.
    It is ``-V'V`` with ``V[:, a] = sqrt(w) p_class(a) x_col(a)``, plus ``X_c' diag(w p_c) X_c`` on
    each class's diagonal block; the coordinates are sorted by class inside so that those blocks
    are contiguous.
    """
    order = torch.argsort(coord_class, stable=True)
    cols = coord_col[order]
    ends = torch.bincount(coord_class, minlength=P.shape[1]).cumsum(0).tolist()
    ranges = [(c, s, e) for c, (s, e) in enumerate(zip([0] + ends[:-1], ends)) if e > s]
    M = len(coord_col)
    row_weight = row_weight.to(P.dtype)
    out = torch.zeros(M, M, device=P.device, dtype=torch.float64)
    for start, stop, chunk in block.pieces(_max_rows(M)):
        A = _coordinates(chunk, cols)
        sqrt_w, p = torch.sqrt(row_weight[start:stop, None]), P[start:stop]
        diagonal = [gram(A[:, s:e] * (sqrt_w * torch.sqrt(p[:, c:c + 1]))) for c, s, e in ranges]
        for c, s, e in ranges:
            A[:, s:e] *= sqrt_w * p[:, c:c + 1]  # A becomes V
        out -= gram(A)
        for (c, s, e), D in zip(ranges, diagonal):
            out[s:e, s:e] += D
    block.design.reducer.sum(out)
    inverse = torch.argsort(order)
    return out[inverse[:, None], inverse]


def coupled_hessian_rows(block, P: torch.Tensor, row_weight: torch.Tensor, coord_col: torch.Tensor,
                         coord_class: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``H[rows, :]`` of :func:`coupled_hessian` for a few coordinates: one ``(k |rows|, n) x (n, m)`` product.

    Row ``r``'s entry against a coordinate of class ``c`` and column ``j`` is
    ``sum_i x_ir x_ij w_i p_ic (delta(c_r, c) - p_ic_r)``: every class against every column at once.
    """
    k, r = P.shape[1], len(rows)
    row_class = coord_class[rows]
    row_weight = row_weight.to(P.dtype)
    out = torch.zeros(r, len(coord_col), device=P.device, dtype=torch.float64)
    for start, stop, chunk in block.pieces(_max_rows(k * r)):
        X_rows = _coordinates(chunk, coord_col[rows])
        wp, p_row = row_weight[start:stop, None] * P[start:stop], P[start:stop][:, row_class]
        # E[:, c, r] = x_r w p_c (delta(c_r, c) - p_c_r), for all classes at once
        same = (row_class[None, :] == torch.arange(k, device=P.device)[:, None]).to(P)
        E = X_rows[:, None, :] * wp[:, :, None] * (same[None] - p_row[:, None, :])  # (n, k, r)
        E = E.reshape(-1, k * r)
        G = torch.cat([E.T @ chunk, E.sum(0)[:, None]], dim=1).reshape(k, r, -1)  # every column, then the bias
        out += G[coord_class, :, coord_col].T.double()
    return block.design.reducer.sum(out)


class SoftmaxHessian:
    """The last coupled Hessian formed, its coordinates and the probabilities it was formed at.

    ``at(..., fresh=False)`` returns that Hessian on new coordinates: entries of coordinates
    it already has are copied, rows of new ones computed at the same probabilities.
    """

    def __init__(self):
        self.keys: np.ndarray | None = None  # one integer per coordinate: class * (d + 1) + feature
        self.H: torch.Tensor | None = None
        self.P: torch.Tensor | None = None

    def at(self, block, Z: torch.Tensor, row_weight: torch.Tensor, coord_col: np.ndarray,
           coord_class: np.ndarray, *, fresh: bool) -> tuple[torch.Tensor, bool]:
        """The Hessian on these coordinates and whether it was formed at ``Z`` (else reused)."""
        device = Z.device
        d = block.design.n_features
        cols = torch.cat([block.cols, torch.tensor([d], device=block.cols.device)]).cpu().numpy()
        keys = coord_class.astype(np.int64) * (d + 1) + cols[coord_col]
        col_t = torch.as_tensor(coord_col, device=device)
        class_t = torch.as_tensor(coord_class, device=device)
        old = None if fresh or self.keys is None or len(self.keys) == 0 else _positions(self.keys, keys)
        n_new = int((old < 0).sum()) if old is not None else len(keys)
        k, M = Z.shape[1], len(keys)
        # grow while the new rows cost less than a rebuild, in time and in memory (n x k x new)
        if old is None or 2 * n_new * (len(block.cols) + 1) * k > M ** 2 or k * n_new > M:
            self.P = softmax(Z).to(block.design.dtype)
            self.H = coupled_hessian(block, self.P, row_weight, col_t, class_t)
            self.keys = keys
            return self.H, True
        kept = torch.as_tensor(np.flatnonzero(old >= 0), device=device)
        added = torch.as_tensor(np.flatnonzero(old < 0), device=device)
        H = torch.empty(len(keys), len(keys), device=device, dtype=torch.float64)
        source = torch.as_tensor(old[old >= 0], device=device)
        H[kept[:, None], kept] = self.H[source[:, None], source]
        if len(added):
            rows = coupled_hessian_rows(block, self.P, row_weight, col_t, class_t, added)
            H[added] = rows
            H[:, added] = rows.T
        self.H, self.keys = H, keys
        return H, False


def _positions(old_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Where each key sits in ``old_keys`` (-1 where it is new)."""
    order = np.argsort(old_keys)
    found = np.searchsorted(old_keys, keys, sorter=order).clip(max=len(old_keys) - 1)
    position = order[found]
    return np.where(old_keys[position] == keys, position, -1)
