"""The standardized feature matrix the solver works on.

Columns are centered and scaled with the training rows' mean and standard
deviation (computed across all processes); a constant column gets scale 1 and so
stays all-zero, which keeps its weight at zero without NaN. The matrix is held on
the device, or, for features larger than device memory, streamed in row chunks
from a (memory-mapped) NumPy array and standardized chunk by chunk.

Example:
    >>> design = Design.build(torch.randn(100, 5), device="cpu", dtype=torch.float32)
    >>> design.block(torch.tensor([0, 3])).matvec(torch.ones(1, 2)).shape
    torch.Size([100, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from .distributed import Reducer


def _as_tensor(array, device, dtype) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.to(device=device, dtype=dtype)
    return torch.from_numpy(np.array(array)).to(device=device, dtype=dtype)  # a copy: memmaps are read-only


@dataclass
class Design:
    """Row access to standardized features: whole on the device, or chunk by chunk."""

    source: object  # torch.Tensor (standardized, on device) or an array-like of raw rows
    mean: torch.Tensor
    std: torch.Tensor
    device: torch.device
    dtype: torch.dtype
    reducer: Reducer = field(default_factory=Reducer)
    chunk_rows: int | None = None

    @classmethod
    def build(cls, X, *, device, dtype, reducer: Reducer | None = None, chunk_rows: int | None = None,
              standardize: bool = True, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> "Design":
        """``stats``: a given (mean, std) instead of the rows' own (to refit a loaded path)."""
        reducer = reducer or Reducer()
        device = torch.device(device)
        n, d = X.shape
        if chunk_rows is None:
            X = _as_tensor(X, device, dtype)
            raw_chunks = lambda: iter([X])  # noqa: E731
        else:
            raw_chunks = lambda: (  # noqa: E731
                _as_tensor(X[a:a + chunk_rows], device, dtype) for a in range(0, n, chunk_rows))
        if stats is not None:
            mean, std = (t.to(device=device, dtype=dtype) for t in stats)
        elif standardize and chunk_rows is None and reducer.enabled is False:
            var, mean = torch.var_mean(X, dim=0, correction=0)  # two-pass, in the data's precision
            std = _usable_std(torch.sqrt(var), mean)
        elif standardize:
            mean, std = _column_stats(raw_chunks, d, device, dtype, reducer)
        else:
            mean = torch.zeros(d, device=device, dtype=dtype)
            std = torch.ones(d, device=device, dtype=dtype)
        if chunk_rows is None:
            return cls((X - mean) / std, mean, std, device, dtype, reducer, None)
        return cls(X, mean, std, device, dtype, reducer, chunk_rows)

    @property
    def n_rows(self) -> int:
        return self.source.shape[0]

    @property
    def n_features(self) -> int:
        return self.source.shape[1]

    def chunks(self, cols: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """Standardized row chunks (restricted to ``cols`` when given), in row order."""
        if self.chunk_rows is None:
            yield self.source if cols is None else self.source[:, cols]
            return
        idx = None if cols is None else cols.cpu().numpy()
        for a in range(0, self.n_rows, self.chunk_rows):
            raw = self.source[a:a + self.chunk_rows]
            if idx is not None:
                raw = raw[:, idx]
            chunk = _as_tensor(raw, self.device, self.dtype)
            if cols is None:
                yield (chunk - self.mean) / self.std
            else:
                yield (chunk - self.mean[cols]) / self.std[cols]

    def gradient(self, R: torch.Tensor) -> torch.Tensor:
        """``X^T R`` over all features and all processes, as (k, d)."""
        out = torch.zeros(R.shape[1], self.n_features, device=self.device, dtype=torch.float64)
        start = 0
        for chunk in self.chunks():
            stop = start + chunk.shape[0]
            out += accurate_rmatvec(R[start:stop], chunk)
            start = stop
        return self.reducer.sum(out)

    def block(self, cols: torch.Tensor) -> "Block":
        """The columns ``cols``: gathered once and kept on the device when not streaming."""
        if self.chunk_rows is not None:
            return Block(self, cols, None)
        cached = self.__dict__.get("_last_block")
        if cached is not None and torch.equal(cached.cols, cols):
            return cached  # the working set often stays the same between calls
        self._last_block = Block(self, cols, self.source[:, cols].contiguous())
        return self._last_block


@dataclass
class Block:
    """A subset of the standardized columns, with the products the Newton steps need."""

    design: Design
    cols: torch.Tensor
    data: torch.Tensor | None  # the gathered columns, when held in memory

    def _chunks(self) -> Iterator[torch.Tensor]:
        if self.data is not None:
            yield self.data
        else:
            yield from self.design.chunks(self.cols)

    def pieces(self, max_rows: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(start, stop, rows)``: this process's standardized rows in order, at most ``max_rows`` at a time."""
        start = 0
        for chunk in self._chunks():
            step = max_rows or chunk.shape[0] or 1
            for a in range(0, chunk.shape[0], step):
                piece = chunk[a:a + step]
                yield start + a, start + a + piece.shape[0], piece
            start += chunk.shape[0]

    def matvec(self, W: torch.Tensor) -> torch.Tensor:
        """``X_cols @ W.T`` for this process's rows: (n_local, k)."""
        if W.shape[1] == 0:
            return torch.zeros(self.design.n_rows, W.shape[0], device=W.device, dtype=W.dtype)
        return torch.cat([chunk @ W.T for chunk in self._chunks()])

    def rmatvec(self, R: torch.Tensor) -> torch.Tensor:
        """``R.T @ X_cols`` summed over processes: (k, m)."""
        out = torch.zeros(R.shape[1], len(self.cols), device=R.device, dtype=torch.float64)
        for start, stop, chunk in self.pieces():
            out += accurate_rmatvec(R[start:stop], chunk)
        return self.design.reducer.sum(out)

    def gram(self, h: torch.Tensor, subset: torch.Tensor | None = None) -> torch.Tensor:
        """``[X_s, 1]^T diag(h) [X_s, 1]`` in float64, summed over processes.

        ``h`` is (n_local,) or (n_local, k) row curvatures; ``subset`` indexes this
        block's columns. Returns (m + 1, m + 1), or (k, m + 1, m + 1) for 2-D ``h``.
        """
        batched = h.dim() == 2
        hk = h if batched else h[:, None]
        m = len(self.cols) if subset is None else len(subset)
        out = torch.zeros(hk.shape[1], m + 1, m + 1, device=h.device, dtype=torch.float64)
        for start, stop, chunk in self.pieces():
            part = chunk if subset is None else chunk[:, subset]
            for c in range(hk.shape[1]):
                hc = hk[start:stop, c]
                weighted = part * hc[:, None]
                out[c, :m, :m] += (weighted.T @ part).double()
                col = (hc @ part).double()  # a float32 sum is fine here: H only steers the steps
                out[c, :m, m] += col
                out[c, m, :m] += col
                out[c, m, m] += hc.double().sum()
        self.design.reducer.sum(out)
        return out if batched else out[0]


_PARTIALS = 1 << 24  # entries of partial products kept before summing in float64


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
    block = max(256, -(-n * k * d // _PARTIALS))
    q = n // block
    out = (R[q * block:].T @ X[q * block:]).double()
    if q:
        parts = torch.bmm(R[:q * block].reshape(q, block, k).transpose(1, 2), X[:q * block].reshape(q, block, d))
        out += parts.double().sum(0)
    return out


def _column_stats(raw_chunks, d, device, dtype, reducer: Reducer):
    """Mean and standard deviation (ddof 0) over all rows of all processes, in float64.

    Two passes (mean, then squared deviations) stay accurate where a column's mean
    is large against its spread. A constant column gets standard deviation 1.
    """
    total = torch.zeros(d + 1, dtype=torch.float64, device=device)
    for chunk in raw_chunks():
        total[:d] += chunk.double().sum(0)
        total[d] += chunk.shape[0]
    reducer.sum(total)
    count = total[d]
    mean = total[:d] / count
    squares = torch.zeros(d, dtype=torch.float64, device=device)
    for chunk in raw_chunks():
        squares += ((chunk.double() - mean) ** 2).sum(0)
    reducer.sum(squares)
    return mean.to(dtype), _usable_std(torch.sqrt(squares / count), mean).to(dtype)


def _usable_std(std: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """A constant column (std at rounding level) gets scale 1, so it standardizes to zeros, not NaN."""
    return torch.where(std > 1e-7 * (1 + mean.abs()), std, torch.ones_like(std))
