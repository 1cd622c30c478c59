"""Products of the features with a few classes' weights or residuals, and column gathers, on the CPU by compiled
row kernels where BLAS leaves most of the box idle.

A product with 10 outputs (``X @ W.T``) or with a 10-column residual (``R.T @ X``) is a thin GEMM: BLAS spends its
time packing panels for so few columns and runs 1.3-4x slower than one pass that keeps the row in cache. Each
kernel here takes the same sums in the same precision as the torch code beside it, which runs on a GPU and for
shapes the kernels do not pay at.

Example:
    >>> X, R = torch.randn(1000, 8), torch.randn(1000, 3)
    >>> torch.allclose(accurate_rmatvec(R, X), (R.double().T @ X.double()), atol=1e-4)
    True
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from .softmax_rows import PARALLEL_KERNEL


def gather_columns(X: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``[X, 1][:, cols]`` (index ``X.shape[1]``: a column of ones), contiguous; on the CPU by a compiled
    row-parallel gather (torch's took 23-25 ms at 20,000 x 700-765 of 768 float32 columns, the compiled one 4-5 ms
    with its allocation; 4.3 against 1.6 ms at 300)."""
    if X.device.type != "cpu" or not X.is_contiguous() or X.dim() != 2:
        ones = cols == X.shape[1]
        out = X[:, torch.where(ones, 0, cols)]
        out[:, ones] = 1.0
        return out.contiguous()
    out = torch.empty(X.shape[0], len(cols), dtype=X.dtype)
    with PARALLEL_KERNEL:
        _gather_columns(X.numpy(), cols.cpu().numpy().astype(np.int64), out.numpy())
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _gather_columns(X, cols, out):
    m = X.shape[1]
    one = np.ones(1, dtype=X.dtype)[0]
    for i in numba.prange(X.shape[0]):
        x, row = X[i], out[i]
        for a in range(cols.shape[0]):
            c = cols[a]
            row[a] = x[c] if c < m else one


#: up to this many outputs a CPU product of the held columns with the weights runs in the compiled row kernel, not
#: BLAS: at 20,000 x 765 (float32, 2 threads) 1.2 against 1.5 ms for 2 outputs, 2.7 / 5.9 for 10, 3.6 / 5.5 for 16,
#: 5.5 / 7.9 for 32 (BLAS's thin products leave most of its lanes idle; at 100 it was 1.5x faster than one row a pass)
COMPILED_MATVEC_MAX_OUTPUTS = 32


@numba.njit(cache=True, nogil=True, parallel=True, fastmath={"reassoc", "contract"})
def _rows_times(X, W, out):
    """``out = X @ W.T`` four rows by two outputs a pass over the rows (eight sums on six loads: at 20,000 x 764,
    10 outputs, 2.2 against 2.9 ms one row by two outputs), each sum in ``X``'s precision (as BLAS takes it)."""
    n, m = X.shape
    k = W.shape[0]
    zero = np.zeros(1, dtype=X.dtype)[0]  # 0 in the features' precision
    for quad in numba.prange((n + 3) // 4):
        i = 4 * quad
        i1, i2, i3 = min(i + 1, n - 1), min(i + 2, n - 1), min(i + 3, n - 1)  # past the last row: it again
        x0, x1, x2, x3 = X[i], X[i1], X[i2], X[i3]
        for c in range(0, k, 2):
            c1 = min(c + 1, k - 1)  # a lone last output: it again
            w0, w1 = W[c], W[c1]
            s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = zero
            for j in range(m):
                a, b = w0[j], w1[j]
                s00 += x0[j] * a
                s01 += x0[j] * b
                s10 += x1[j] * a
                s11 += x1[j] * b
                s20 += x2[j] * a
                s21 += x2[j] * b
                s30 += x3[j] * a
                s31 += x3[j] * b
            out[i, c], out[i, c1] = s00, s01
            out[i1, c], out[i1, c1] = s10, s11
            out[i2, c], out[i2, c1] = s20, s21
            out[i3, c], out[i3, c1] = s30, s31


def takes(product: str, X: torch.Tensor, outputs: int) -> bool:
    """Whether the dense ``product`` ("matvec": ``X @ W.T``; "gradient": ``R.T @ X``) with ``outputs`` classes runs
    in a compiled kernel here (CPU, contiguous ``X``; the gradient's from float32 features)."""
    if X.device.type != "cpu" or not X.is_contiguous():
        return False
    if product == "matvec":
        return outputs <= COMPILED_MATVEC_MAX_OUTPUTS
    return product == "gradient" and X.dtype == torch.float32 and outputs <= COMPILED_RMATVEC_MAX_OUTPUTS


def rows_times(X: torch.Tensor, W: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = X @ W.T`` by the compiled row kernel (CPU, ``X`` contiguous, ``W`` in ``X``'s dtype, at most
    ``COMPILED_MATVEC_MAX_OUTPUTS`` rows); returns ``out``."""
    with PARALLEL_KERNEL:
        _rows_times(X.numpy(), W.contiguous().numpy(), out.numpy())
    return out


_PARTIALS = 1 << 24  # entries of partial products kept before summing in float64

#: up to this many residual columns ``R.T @ X`` runs in the compiled kernel (float32 features on the CPU): at
#: 20,000 rows, 768 / 300 columns, 2 threads, 1.5 / 2.6x faster than the batched GEMM for 10 columns, 1.4 / 1.2x
#: for 30; at 100 slower (its (k, d) float32 block partial no longer stays in the core's cache)
COMPILED_RMATVEC_MAX_OUTPUTS = 32
_BLOCK_ROWS = 256  # rows summed in float32 before the float64 partial, as the batched GEMM's blocks
_TASKS = 4  # float64 partials of the compiled product: the threads' share of blocks, balanced


def accurate_rmatvec(R: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``R.T @ X`` in float64 from float32 blocks of rows.

    A float32 GEMM accumulates ``n`` products in float32, and the gradient it gives is
    a small difference of large sums: near the optimum its error (about 1e-7 of the
    sum of magnitudes) would swamp a duality gap of 1e-7. Summing block partials
    in float64 keeps the GEMM's speed and cuts that error by sqrt(n / block).
    """
    if X.dtype == torch.float64:
        return R.double().T @ X
    R = R.to(X.dtype)
    n, d = X.shape
    k = R.shape[1]
    if takes("gradient", X, k) and n and d:
        parts = np.zeros((_TASKS, k, d))
        with PARALLEL_KERNEL:
            _blocks_rmatvec(R.contiguous().numpy(), X.numpy(), parts, _BLOCK_ROWS)
        return torch.from_numpy(parts.sum(0))
    block = max(256, -(-n * k * d // _PARTIALS))
    q = n // block
    out = (R[q * block:].T @ X[q * block:]).double()
    if q:
        parts = torch.bmm(R[:q * block].reshape(q, block, k).transpose(1, 2), X[:q * block].reshape(q, block, d))
        for part in parts:  # added in float64 one at a time: parts.double() would be a (q, k, d) float64 copy
            out.add_(part)  # (at 1,000 classes, 512 features and 16 parts: 1.5 ms against 18.6)
    return out


@numba.njit(cache=True, nogil=True, parallel=True, fastmath={"reassoc", "contract"})
def _blocks_rmatvec(R, X, parts, block):
    """``parts[t] += R_b.T @ X_b`` over task ``t``'s blocks ``b`` of ``block`` rows, each block summed in ``X``'s
    precision (as the batched GEMM sums it), then added in float64."""
    n, d = X.shape
    k = R.shape[1]
    tasks = parts.shape[0]
    blocks = -(-n // block)
    for t in numba.prange(tasks):
        acc = np.empty((k, d), dtype=X.dtype)
        for b in range(t * blocks // tasks, (t + 1) * blocks // tasks):
            acc[:] = 0
            i, stop = b * block, min(n, (b + 1) * block)
            while i + 3 < stop:
                _add_four_rows(acc, X, R, i)
                i += 4
            while i < stop:
                x = X[i]
                for c in range(k):
                    r, row = R[i, c], acc[c]
                    for j in range(d):
                        row[j] += r * x[j]
                i += 1
            out = parts[t]
            for c in range(k):
                for j in range(d):
                    out[c, j] += acc[c, j]


@numba.njit(inline="always")
def _add_four_rows(acc, X, R, i):
    """``acc += R[i:i + 4].T @ X[i:i + 4]``, two classes a pass over the four rows (each row loaded once per pair:
    the partial's loads and stores, not the products, bound the pass)."""
    k, d = acc.shape
    x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
    c = 0
    while c < k:
        a0, a1, a2, a3 = R[i, c], R[i + 1, c], R[i + 2, c], R[i + 3, c]
        row = acc[c]
        if c + 1 < k:
            b0, b1, b2, b3 = R[i, c + 1], R[i + 1, c + 1], R[i + 2, c + 1], R[i + 3, c + 1]
            row1 = acc[c + 1]
            for j in range(d):
                u0, u1, u2, u3 = x0[j], x1[j], x2[j], x3[j]
                row[j] += a0 * u0 + a1 * u1 + a2 * u2 + a3 * u3
                row1[j] += b0 * u0 + b1 * u1 + b2 * u2 + b3 * u3
        else:
            for j in range(d):
                row[j] += a0 * x0[j] + a1 * x1[j] + a2 * x2[j] + a3 * x3[j]
        c += 2
