"""Which feature columns the solver can use, and what it says about the others.

A column whose standard deviation is at most `CONSTANT_RTOL` of its largest magnitude is constant: it gets scale 1
(so it standardizes to zeros and its weight stays zero) and a warning names it; one whose spread is below what the
solver's precision can divide by gets no weight, also named; one whose values the precision cannot hold is refused.

Example:
    >>> import torch
    >>> usable_std(torch.tensor([0.0, 2.0]), torch.zeros(2), torch.ones(2), torch.float32).tolist()
    [1.0, 2.0]
"""

from __future__ import annotations

import math
import warnings

import torch

CONSTANT_RTOL = 1e-12  # a column whose std is at most this share of its largest magnitude is constant
_PRECISION_LOSS = 1e-3  # warn where eps(dtype) * |mean| / std exceeds this (raw-space weights lose digits)


def usable_std(std: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The scale to divide by: 1 for a constant column (so it standardizes to zeros, not NaN).

    Warns naming the constant columns; raises where a column cannot be held in ``dtype``.
    """
    constant = std <= CONSTANT_RTOL * scale
    if bool(constant.any()):
        cols = torch.nonzero(constant).flatten().tolist()
        warnings.warn(f"{len(cols)} feature column(s) are constant (standard deviation at most "
                      f"{CONSTANT_RTOL:g} of the column's largest magnitude) and get no weight: columns "
                      f"{cols}.", UserWarning, stacklevel=4)
    # A column whose spread is below what `dtype` can divide by (about 1e-31 in float32) is, in that precision,
    # zero: real encoders produce such columns (e.g. pooled dimensions that are ~1e-32 everywhere). It gets no
    # weight, said by name, rather than an error that stops the whole fit.
    info = torch.finfo(dtype)
    vanishing = ~constant & (std < info.tiny / info.eps)
    if bool(vanishing.any()):
        cols = torch.nonzero(vanishing).flatten().tolist()
        warnings.warn(f"{len(cols)} feature column(s) vary by less than {info.tiny / info.eps:.1g} (standard "
                      f"deviation as small as {float(std[vanishing].min()):.3g}), too little for "
                      f"{str(dtype).replace('torch.', '')}, and get no weight: columns {cols[:20]}"
                      f"{' (and more)' if len(cols) > 20 else ''}. To use them, rescale those columns (e.g. "
                      f"multiply by {1 / _power_of_ten(float(std[vanishing].min())):.0e}) or fit with "
                      "dtype=torch.float64.", UserWarning, stacklevel=4)
        constant = constant | vanishing
    kept = ~constant
    check_scales(std[kept], scale[kept], torch.nonzero(kept).flatten(), dtype)
    precision_warning(mean[kept], std[kept], torch.nonzero(kept).flatten(), dtype)
    return torch.where(constant, torch.ones_like(std), std)


def check_scales(std: torch.Tensor, scale: torch.Tensor, cols: torch.Tensor, dtype: torch.dtype) -> None:
    """Refuse columns whose raw values or spread ``dtype`` cannot hold in raw-space weights and
    predictions: largest magnitude above ``max * eps`` (4e31 in float32: the features, and the
    products of the weights with them, overflow) or standard deviation below ``tiny / eps``
    (1e-31: the raw-space weights ``w / std`` overflow)."""
    info = torch.finfo(dtype)
    high, low = info.max * info.eps, info.tiny / info.eps
    name = str(dtype).replace("torch.", "")
    big = scale > high
    if bool(big.any()):
        raise ValueError(
            f"Feature columns {cols[big].tolist()[:20]}{' (and more)' if int(big.sum()) > 20 else ''} hold "
            f"values up to {float(scale[big].max()):.3g}, too large for {name} (it holds feature scales up to "
            f"about {high:.1g}: the features and the products of the weights with them overflow). Rescale "
            f"the features (e.g. divide those columns by {_power_of_ten(float(scale[big].max())):.0e}), "
            "or fit with dtype=torch.float64.")
    small = std < low
    if bool(small.any()):
        raise ValueError(
            f"Feature columns {cols[small].tolist()[:20]}{' (and more)' if int(small.sum()) > 20 else ''} "
            f"vary by as little as {float(std[small].min()):.3g} (standard deviation), too small for {name} "
            f"(below about {low:.1g} the raw-space weights w / std leave its range). Rescale the features (e.g. "
            f"multiply those columns by {1 / _power_of_ten(float(std[small].min())):.0e}), or fit with "
            "dtype=torch.float64.")


def precision_warning(mean: torch.Tensor, std: torch.Tensor, cols: torch.Tensor, dtype: torch.dtype) -> None:
    """Warn where a column's mean is so large against its spread that ``dtype`` raw-space weights
    (``w / std``, with the bias absorbing ``-w mean / std``) lose their digits to cancellation."""
    ratio = mean.abs() / std
    lossy = ratio * torch.finfo(dtype).eps > _PRECISION_LOSS
    if bool(lossy.any()):
        cols = cols[lossy].tolist()
        name = str(dtype).replace("torch.", "")
        warnings.warn(
            f"Feature columns {cols[:20]}{' (and more)' if len(cols) > 20 else ''} have a mean up to "
            f"{float(ratio[lossy].max()):.3g} times their standard deviation: the solver standardizes them "
            f"exactly, but in {name} the returned raw-space weights and predictions (X @ W.T + b) cancel "
            "most of their digits. Center those features (subtract their mean) before fitting, or fit with "
            "dtype=torch.float64.", UserWarning, stacklevel=5)


def _power_of_ten(value: float) -> float:
    return 10.0 ** math.floor(math.log10(value)) if value > 0 else 1.0
