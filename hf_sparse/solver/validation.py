"""Checks on the solver's inputs, with errors that say what is wrong and what to do."""

from __future__ import annotations

import numpy as np
import torch

from .distributed import Reducer

_CHECK_ROWS = 65_536  # rows per chunk when scanning a large (memory-mapped) array


def check_features(X, name: str = "X") -> tuple[int, int]:
    """``X`` must be a non-empty 2-D array of finite numbers. Returns its shape."""
    if not hasattr(X, "shape") or len(X.shape) != 2:
        shape = getattr(X, "shape", None)
        raise ValueError(f"{name} must be a 2-D array (rows x features); got shape {shape}. "
                         "Reshape a single row with X.reshape(1, -1).")
    n, d = X.shape
    if n == 0 or d == 0:
        raise ValueError(f"{name} is empty (shape {tuple(X.shape)}): the solver needs at least one row "
                         "and one feature.")
    bad_rows: list[int] = []
    for start in range(0, n, _CHECK_ROWS):
        chunk = X[start:start + _CHECK_ROWS]
        chunk = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.array(chunk))
        if not (chunk.is_floating_point() or chunk.dtype in (torch.int32, torch.int64, torch.uint8)):
            raise TypeError(f"{name} must hold numbers; got dtype {chunk.dtype}.")
        finite = torch.isfinite(chunk).all(dim=1) if chunk.is_floating_point() else None
        if finite is not None and not bool(finite.all()):
            bad_rows.extend((torch.nonzero(~finite).flatten() + start).tolist()[:10])
            if len(bad_rows) >= 10:
                break
    if bad_rows:
        raise ValueError(f"{name} has NaN or inf values in rows {bad_rows[:10]}"
                         f"{' (and more)' if len(bad_rows) >= 10 else ''}: remove or impute those rows first.")
    return n, d


def check_targets(y, n_rows: int, family: str, reducer: Reducer, n_outputs: int | None,
                  name: str = "y") -> tuple[torch.Tensor, int]:
    """Validate targets for ``family``; returns them as a tensor and the number of outputs."""
    y = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    if y.shape[0] != n_rows:
        raise ValueError(f"X and {name} have different lengths: {n_rows} rows of features but "
                         f"{y.shape[0]} targets.")
    if family == "multinomial":
        if y.dim() != 1:
            raise ValueError(f"multinomial {name} must be 1-D class indices; got shape {tuple(y.shape)}. "
                             "For several labels per row use family='multilabel'.")
        if y.is_floating_point():
            if not bool(torch.all(y == torch.round(y))):
                raise TypeError(f"multinomial {name} must hold integer class indices; got non-integer "
                                "values. For regression use family='gaussian'.")
            y = y.long()
        elif y.dtype == torch.bool:
            y = y.long()
        if y.numel() and int(y.min()) < 0:
            raise ValueError(f"{name} has negative class indices (min {int(y.min())}): labels must be "
                             "0, 1, ..., k-1.")
        top = int(y.max()) + 1 if y.numel() else 0
        top = _global_max(top) if reducer.enabled else top
        k = n_outputs if n_outputs is not None else top
        if n_outputs is not None and top > n_outputs:
            raise ValueError(f"{name} has class index {top - 1}, out of range for n_classes={n_outputs}.")
        counts = reducer.sum(torch.bincount(y, minlength=k).double())
        if int((counts > 0).sum()) < 2:
            raise ValueError(f"{name} has fewer than two classes (class counts {counts.long().tolist()}): "
                             "a classifier needs examples of at least two classes.")
        return y, k
    if family == "multilabel":
        if y.dim() != 2:
            raise ValueError(f"multilabel {name} must be 2-D (rows x labels) of 0/1; got shape "
                             f"{tuple(y.shape)}. For one label per row use family='multinomial'.")
        y = y.double() if not y.is_floating_point() else y
        if not bool(torch.isfinite(y).all()) or bool(((y < 0) | (y > 1)).any()):
            raise ValueError(f"multilabel {name} must hold values in [0, 1] (0/1 labels).")
        return y, y.shape[1]
    # gaussian
    if y.dim() not in (1, 2):
        raise ValueError(f"gaussian {name} must be 1-D or 2-D; got shape {tuple(y.shape)}.")
    if not y.is_floating_point():
        y = y.double()
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"gaussian {name} has NaN or inf values.")
    return y.reshape(n_rows, -1), (1 if y.dim() == 1 else y.shape[1])


def _global_max(value: int) -> int:
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t[0])


def check_options(alpha: float, sample_weight, n_rows: int, lambdas, n_lambdas: int,
                  lambda_min_ratio: float, tol: float) -> torch.Tensor | None:
    if not (0 < alpha <= 1):
        raise ValueError(f"alpha must be in (0, 1] (1 is the lasso, 0.99 the paper's setting); got {alpha}.")
    if lambdas is None:
        if int(n_lambdas) < 1:
            raise ValueError(f"n_lambdas must be at least 1; got {n_lambdas}.")
        if not (0 < lambda_min_ratio < 1):
            raise ValueError(f"lambda_min_ratio must be in (0, 1); got {lambda_min_ratio}.")
    else:
        lam = torch.as_tensor(lambdas, dtype=torch.float64).flatten()
        if lam.numel() == 0 or bool((lam <= 0).any()) or not bool(torch.isfinite(lam).all()):
            raise ValueError("lambdas must be positive, finite numbers.")
        if bool((lam[1:] > lam[:-1]).any()):
            raise ValueError("lambdas must be in decreasing order (warm starts go from sparse to dense).")
    if not (tol > 0):
        raise ValueError(f"tol must be positive; got {tol}.")
    if sample_weight is None:
        return None
    w = sample_weight if isinstance(sample_weight, torch.Tensor) else torch.as_tensor(np.asarray(sample_weight))
    w = w.double().flatten()
    if w.shape[0] != n_rows:
        raise ValueError(f"sample_weight has {w.shape[0]} entries for {n_rows} rows.")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("sample_weight has NaN or inf values.")
    if bool((w < 0).any()):
        raise ValueError(f"sample_weight must be non-negative; row {int(torch.nonzero(w < 0)[0])} is "
                         f"{float(w[w < 0][0])}.")
    if float(w.sum()) <= 0:
        raise ValueError("sample_weight sums to zero: at least one row needs a positive weight.")
    return w
