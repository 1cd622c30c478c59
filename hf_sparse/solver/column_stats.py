"""Each feature column's mean, standard deviation and largest magnitude over all rows of all processes, in
float64 and at any scale, read in row chunks (the design's standardization, :mod:`.design`).

Example:
    >>> import torch
    >>> X = torch.tensor([[1.0, 1e4], [3.0, 1e4 + 2e-3]], dtype=torch.float64)
    >>> mean, std, scale = column_stats(lambda: iter([X]), 2, "cpu", Reducer())
    >>> [round(v, 6) for v in std.tolist()]
    [1.0, 0.001]
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .distributed import Reducer


def holds_float32(X) -> bool:
    dtype = getattr(X, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype == torch.float32
    try:
        return np.dtype(dtype) == np.float32
    except TypeError:
        return False


def column_stats32(raw_chunks, d, device, reducer: Reducer, out: torch.Tensor | None):
    """:func:`column_stats` for float32 rows, in one pass as fast as float32 statistics: each
    chunk's ``var_mean`` (accumulated in float64 on the CPU) is merged in float64 (Chan et al.).
    The returned mean is the float32-rounded one, the centering applied; the magnitude returned
    is the bound ``|mean| + std sqrt(n)`` (a float32 column is constant exactly when its std is
    0). ``out``: written with the centered rows (divide by the std to standardize). None where a
    column's magnitude is outside [1e-18, 1e18] (its square would leave float32 there)."""
    count, mean, m2 = 0, torch.zeros(d, dtype=torch.float64, device=device), torch.zeros(d, dtype=torch.float64,
                                                                                          device=device)
    for chunk in raw_chunks():
        rows = chunk.shape[0]
        if rows == 0:
            continue
        var_c, mean_c = (t.double() for t in torch.var_mean(chunk, 0, correction=0))
        delta = mean_c - mean
        total = count + rows
        mean = mean + delta * (rows / total)
        m2 = m2 + var_c * rows + delta * delta * (count * rows / total)
        count = total
    if reducer.enabled:  # merge the processes' moments: the global mean first, then the spread
        sums = reducer.sum(torch.cat([mean * count, torch.tensor([float(count)], dtype=torch.float64,
                                                                 device=device)]))
        n_all = sums[d]
        local_mean = mean
        mean = sums[:d] / n_all
        m2 = reducer.sum(m2 + count * (local_mean - mean) ** 2)
        count = float(n_all)
    if count == 0:
        return None
    std = torch.sqrt(m2.clamp_min(0) / count)
    bound = mean.abs() + std * math.sqrt(count)
    used = bound > 0
    if not bool(torch.isfinite(bound).all()) or bool((bound[used] > 1e18).any() | (bound[used] < 1e-18).any()):
        return None
    center = mean.float()
    if out is not None:
        start = 0
        for chunk in raw_chunks():
            torch.sub(chunk, center, out=out[start:start + chunk.shape[0]])
            start += chunk.shape[0]
    return center.double(), std, bound


def column_stats(raw_chunks, d, device, reducer: Reducer):
    """Mean, standard deviation (ddof 0) and largest magnitude of every column, over all rows of all
    processes, in float64 and at any scale.

    Each column is divided by its largest magnitude before the squares are summed (so values of
    1e200 do not overflow nor 1e-200 underflow), and the two passes (the mean, then the deviations
    from it, with the corrected two-pass formula) stay exact where a column's mean is large against
    its spread (mean 1e4, std 1e-3).
    """
    total = torch.zeros(d + 1, dtype=torch.float64, device=device)
    scale = torch.zeros(d, dtype=torch.float64, device=device)
    for chunk in raw_chunks():
        total[:d] += chunk.sum(0)
        total[d] += chunk.shape[0]
        if chunk.shape[0]:
            low, high = torch.aminmax(chunk, dim=0)
            scale = torch.maximum(scale, torch.maximum(high, -low))
    reducer.sum(total)
    scale = reducer.max(scale)
    count = total[d]
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    if not bool(torch.isfinite(total[:d]).all()):  # the raw sums overflowed: sum the scaled values
        total[:d] = 0
        for chunk in raw_chunks():
            total[:d] += (chunk / safe).sum(0)
        reducer.sum(total[:d])
        mean_scaled = total[:d] / count
    else:
        mean_scaled = total[:d] / count / safe
    moments = torch.zeros(2, d, dtype=torch.float64, device=device)
    for chunk in raw_chunks():
        dev = chunk / safe - mean_scaled
        moments[0] += dev.sum(0)
        moments[1] += (dev * dev).sum(0)
    reducer.sum(moments)
    var_scaled = (moments[1] - moments[0] ** 2 / count).clamp_min(0) / count
    return mean_scaled * safe, torch.sqrt(var_scaled) * safe, scale
