"""The standardized feature matrix the solver works on.

Columns are centered and scaled with the training rows' mean and standard
deviation (computed across all processes, in float64, at any scale: each column
is first divided by its largest magnitude, so neither ``1e30`` nor ``1e-30``
overflows or vanishes, and two passes keep a large mean from swamping a small
spread). The standardization itself runs in float64 before the cast to the
solver's precision, so a column with mean 1e4 and std 1e-3 keeps its signal.

A column whose standard deviation is at most ``1e-12`` of its largest magnitude
is constant: it gets scale 1, so it stays all-zero and its weight zero (without
NaN), and a warning names it. A column whose values or spread lie outside what
the solver's precision can hold in raw-space weights and predictions (about
1e-31 to 4e31 in float32) is refused with an error saying to rescale it.

The matrix is held on the device, or, for features larger than device memory,
streamed in row chunks from a (memory-mapped) NumPy array and standardized chunk
by chunk.

Example:
    >>> design = Design.build(torch.randn(100, 5), device="cpu", dtype=torch.float32)
    >>> design.block(torch.tensor([0, 3])).matvec(torch.ones(1, 2)).shape
    torch.Size([100, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numba
import numpy as np
import torch

from .chunking import chunk_rows
from .column_scales import usable_std
from .column_stats import column_stats, column_stats32, holds_float32
from .distributed import Reducer
from .softmax_rows import PARALLEL_KERNEL
from .thin_products import accurate_rmatvec, gather_columns, rows_times, takes


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
    exact: bool = True  # streamed chunks standardized in float64 (else in float32, as built)

    @classmethod
    def build(cls, X, *, device, dtype, reducer: Reducer | None = None, chunk_rows: int | None = None,
              standardize: bool = True, stats: tuple[torch.Tensor, torch.Tensor] | None = None,
              overwrite: bool = False) -> "Design":
        """``stats``: a given (mean, std) instead of the rows' own (to refit a loaded path). ``overwrite``: X is
        standardized in place where it already is a tensor on ``device`` in ``dtype`` (no second copy of the
        features; elsewhere a copy is made, as without it).

        ``mean`` and ``std`` are kept in float64.
        """
        reducer = reducer or Reducer()
        device = torch.device(device)
        n, d = X.shape
        rows = chunk_rows or max(1, _STAT_ENTRIES // max(d, 1))

        def raw_chunks(precision=torch.float64):  # row chunks of the raw features
            return (_as_tensor(X[a:a + rows], device, precision) for a in range(0, n, rows))

        # float32 features solved in float32: centered in float32 (exact for any value a float32
        # column can hold, to its own rounding), with float64 sums; else all in float64
        fast = standardize and stats is None and dtype == torch.float32 and holds_float32(X)
        data = None
        if chunk_rows is None:
            data = X if overwrite and _writable_as(X, device, dtype) else torch.empty(n, d, device=device, dtype=dtype)
        if isinstance(X, torch.Tensor):
            X = X.detach()  # features straight from a model's forward pass: no graph to record the statistics in
        found = column_stats32(lambda: raw_chunks(torch.float32), d, device, reducer, data) if fast else None
        if found is not None:
            mean, std, scale = found
            std = usable_std(std, mean, scale, dtype)
            if data is not None:
                data /= std.to(dtype)
        else:
            fast = False
            if stats is not None:
                mean, std = (torch.as_tensor(t).to(device=device, dtype=torch.float64) for t in stats)
            elif standardize:
                mean, std, scale = column_stats(raw_chunks, d, device, reducer)
                std = usable_std(std, mean, scale, dtype)
            else:
                mean = torch.zeros(d, device=device, dtype=torch.float64)
                std = torch.ones(d, device=device, dtype=torch.float64)
            if data is not None:
                start = 0
                for chunk in raw_chunks():
                    data[start:start + chunk.shape[0]] = ((chunk - mean) / std).to(dtype)
                    start += chunk.shape[0]
        if data is not None:
            return cls(data, mean, std, device, dtype, reducer, None)
        return cls(X, mean, std, device, dtype, reducer, chunk_rows, exact=not fast)

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
            work = torch.float64 if self.exact else self.dtype  # as in build
            chunk = _as_tensor(raw, self.device, work)
            mean, std = (self.mean, self.std) if cols is None else (self.mean[cols], self.std[cols])
            yield ((chunk - mean.to(work)) / std.to(work)).to(self.dtype)

    def gradient(self, R: torch.Tensor, row_weight: torch.Tensor | None = None) -> torch.Tensor:
        """``X^T R`` (or ``X^T diag(row_weight) R``) over all features and all processes, as (k, d).

        Taken in pieces of rows, so that ``R``'s working-precision copy (and its weighting) is never
        made whole: at the ImageNet shape that would be 5-10 GB beside ``R`` itself.
        """
        k = R.shape[1]
        out = torch.zeros(k, self.n_features, device=self.device, dtype=torch.float64)
        step = chunk_rows(k, self.device)
        # equal weights (no sample weights) scale the product once instead of every row (a pass over n x k)
        same = row_weight is not None and len(row_weight) > 0 and bool((row_weight == row_weight[0]).all())
        start = 0
        for chunk in self.chunks():
            for a in range(0, chunk.shape[0], step):
                b = min(a + step, chunk.shape[0])
                rows = R[start + a:start + b]
                if row_weight is not None and not same:
                    rows = rows * row_weight[start + a:start + b, None].to(rows.dtype)
                out += accurate_rmatvec(rows, chunk[a:b])
            start += chunk.shape[0]
        if same:
            out *= float(row_weight[0])
        return self.reducer.sum(out)

    def rows_by_label(self, labels: torch.Tensor, values: torch.Tensor, n_labels: int) -> torch.Tensor:
        """``sum_{i: labels_i = c} values_i x_i`` per label ``c``: (n_labels, d) float64, summed over processes,
        exact (float64 sums, ``n d`` work: no ``n d k`` product for a one-hot matrix)."""
        out = torch.zeros(n_labels, self.n_features, dtype=torch.float64, device=self.device)
        X = self.source
        if self.chunk_rows is None and X.device.type == "cpu" and X.is_contiguous():
            # one compiled pass over the rows grouped by label (a float64 copy of X and torch's scatter took 27 ms
            # a check at 20,000 x 512); each label's rows summed in row order: the same sums on any thread count
            order = torch.argsort(labels, stable=True)
            starts = torch.searchsorted(labels[order], torch.arange(n_labels + 1, device=labels.device))
            with PARALLEL_KERNEL:
                _rows_by_label(X.numpy(), order.numpy(), starts.numpy(), values.double().contiguous().numpy(),
                               out.numpy())
            return self.reducer.sum(out)
        step = chunk_rows(self.n_features, self.device)
        start = 0
        for chunk in self.chunks():
            for a in range(0, chunk.shape[0], step):
                rows = slice(start + a, start + min(a + step, chunk.shape[0]))
                out.index_add_(0, labels[rows], chunk[a:a + step].double() * values[rows].double()[:, None])
            start += chunk.shape[0]
        return self.reducer.sum(out)

    def block(self, cols: torch.Tensor) -> "Block":
        """The columns ``cols``: gathered once and kept on the device when not streaming."""
        if self.chunk_rows is not None:
            return Block(self, cols, None)
        cached = self.__dict__.get("_last_block")
        if cached is not None and torch.equal(cached.cols, cols):
            return cached  # the working set often stays the same between calls
        every = len(cols) == self.n_features and bool((cols == torch.arange(len(cols), device=cols.device)).all())
        # every column in order (the dense end): the features themselves, not a copy (a fresh 60 MB array at
        # 20,000 x 768 costs 15 ms of page faults, six times its gather)
        data = self.source if every and self.source.is_contiguous() else gather_columns(self.source, cols)
        self._last_block = Block(self, cols, data)
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

    def subset(self, idx: torch.Tensor) -> "Block":
        """The block's columns ``idx`` (positions in ``cols``), gathered from the columns held here, not from the
        design: the design's cache keeps this block (gathering it again cost half of a 10-class path's time)."""
        return Block(self.design, self.cols[idx], None if self.data is None else gather_columns(self.data, idx))

    def matvec(self, W: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``X_cols @ W.T`` for this process's rows: (n_local, k), in ``dtype`` (default ``W``'s; another is
        written in row chunks, with no whole array in ``W``'s dtype beside it)."""
        dtype = dtype or W.dtype
        if W.shape[1] == 0:
            return torch.zeros(self.design.n_rows, W.shape[0], device=W.device, dtype=dtype)
        X = self.data
        if X is not None and W.dtype == X.dtype and takes("matvec", X, W.shape[0]):
            out = torch.empty(X.shape[0], W.shape[0], dtype=dtype)
            return rows_times(X, W, out)
        if dtype == W.dtype:
            return torch.cat([chunk @ W.T for chunk in self._chunks()])
        out = torch.empty(self.design.n_rows, W.shape[0], device=W.device, dtype=dtype)
        for start, stop, rows in self.pieces(chunk_rows(W.shape[0], W.device)):
            out[start:stop] = rows @ W.T
        return out

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


@numba.njit(cache=True, nogil=True, parallel=True)
def _rows_by_label(X, order, starts, values, out):
    """``out[c] += sum values_i X[i]`` over the rows ``order[starts[c]:starts[c + 1]]`` (label ``c``'s), float64."""
    d = X.shape[1]
    for c in numba.prange(out.shape[0]):
        for p in range(starts[c], starts[c + 1]):
            i = order[p]
            v = values[i]
            for j in range(d):
                out[c, j] += v * X[i, j]


_STAT_ENTRIES = 1 << 22  # entries per float64 row chunk when computing statistics and standardizing


def _writable_as(X, device, dtype) -> bool:
    """Whether ``X`` can be standardized in place: a contiguous tensor already on ``device`` in ``dtype`` that no
    autograd graph records."""
    return (isinstance(X, torch.Tensor) and X.to(device=device, dtype=dtype) is X and X.is_contiguous()
            and not X.requires_grad)
