"""Compiled passes over a softmax head's predictions, one row at a time (CPU, float64).

torch makes several passes and an ``n x k`` temporary for each step of a row's loss or probabilities
(the trial point, its shift, exp, sum, log, the label's entry); these kernels read each row once and
write nothing but their result. At 1,000 classes and 20,000 rows a line search's loss took 40 ms
against torch's 150 ms (2 cores), to the same float64 result (relative difference ~1e-15): the
line searches, gradients and bias steps of the many-class solvers are made of these passes.

Used for the multinomial family wherever the predictions are a contiguous float64 CPU tensor
(:func:`usable`); elsewhere (GPUs, float32) the torch code in :mod:`.families` runs.

Example:
    >>> Z = torch.zeros(3, 4, dtype=torch.float64)
    >>> rows = SoftmaxRows(torch.tensor([0, 1, 3]), torch.full((3,), 1 / 3))
    >>> round(rows.loss(Z), 6)          # log 4
    1.386294
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np
import torch

#: One launch of a parallel kernel at a time: with numba's "workqueue" threading layer (where neither OpenMP nor
#: TBB is available) two threads launching parallel kernels at once abort the process.
PARALLEL_KERNEL = threading.Lock()

_PLAIN, _FULL_STEP, _BIAS_STEP = 0, 1, 2


@numba.njit(inline="always")
def _entry(Z, S, s, t, mode, i, c):
    """``Z + t S`` (mode 1), ``Z + t s`` with a bias step ``s`` (mode 2), or ``Z`` (mode 0), at ``(i, c)``."""
    if mode == 1:
        return Z[i, c] + t * S[i, c]
    if mode == 2:
        return Z[i, c] + t * s[c]
    return Z[i, c]


@numba.njit(cache=True, nogil=True, parallel=True)
def _weighted_loss(Z, S, s, t, mode, labels, weight):
    n, k = Z.shape
    out = np.zeros(n)
    for i in numba.prange(n):
        top = -np.inf
        for c in range(k):
            top = max(top, _entry(Z, S, s, t, mode, i, c))
        total = 0.0
        for c in range(k):
            total += math.exp(_entry(Z, S, s, t, mode, i, c) - top)
        out[i] = weight[i] * (math.log(total) + top - _entry(Z, S, s, t, mode, i, labels[i]))
    return out.sum()


@numba.njit(cache=True, nogil=True, parallel=True)
def _probabilities(Z, labels, weight, P, R):
    """Row softmax into ``P``; with ``R`` of ``Z``'s shape also ``R = weight (P - onehot(labels))``."""
    n, k = Z.shape
    residual = R.shape[0] == n
    for i in numba.prange(n):
        top = -np.inf
        for c in range(k):
            top = max(top, Z[i, c])
        total = 0.0
        for c in range(k):
            e = math.exp(Z[i, c] - top)
            P[i, c] = e
            total += e
        scale = 1.0 / total
        for c in range(k):
            P[i, c] *= scale
        if residual:
            for c in range(k):
                R[i, c] = weight[i] * P[i, c]
            R[i, labels[i]] -= weight[i]


@numba.njit(cache=True, nogil=True, parallel=True)
def _conjugate_terms(D, Y, a, others):
    """Per row: ``a = -sum_c D Y`` and ``others = sum_c (1 - Y) xlogx(D + Y)`` (``xlogx(0) = 0``)."""
    n, k = D.shape
    for i in numba.prange(n):
        first = 0.0
        rest = 0.0
        for c in range(k):
            y = Y[i, c]
            first -= D[i, c] * y
            q = D[i, c] + y
            if q > 0.0:
                rest += (1.0 - y) * q * math.log(max(q, 1e-12))
        a[i] = first
        others[i] = rest


def conjugate_terms(D: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The per-row terms of the softmax conjugate's profile (:meth:`~.families.Multinomial.conjugate_profile`) in one
    pass, or None where the compiled pass does not apply (``D`` not contiguous float64 on the CPU)."""
    if not usable(D) or Y.device.type != "cpu" or not Y.is_contiguous():
        return None
    a, others = (torch.empty(D.shape[0], dtype=torch.float64) for _ in range(2))
    with PARALLEL_KERNEL:
        _conjugate_terms(D.numpy(), Y.numpy(), a.numpy(), others.numpy())
    return a, others


def usable(Z: torch.Tensor, step: torch.Tensor | None = None) -> bool:
    """Whether the compiled passes apply: contiguous float64 CPU predictions (and an (n, k) step)."""
    tensors = (Z,) if step is None or step.dim() == 1 else (Z, step)
    return all(x.device.type == "cpu" and x.dtype == torch.float64 and x.is_contiguous() and not x.requires_grad
               for x in tensors)


class SoftmaxRows:
    """The compiled passes for one problem's labels and row weights (this process's rows).

    ``labels`` (n,) integer classes, ``weight`` (n,) row weights.
    """

    def __init__(self, labels: torch.Tensor, weight: torch.Tensor):
        self.labels = labels.detach().cpu().numpy().astype(np.int64)
        self.weight = weight.detach().cpu().double().numpy()

    def loss(self, Z: torch.Tensor, step: torch.Tensor | None = None, t: float = 1.0) -> float:
        """``sum_i weight_i loss_i(Z_i + t step_i)`` (this process's rows); ``step`` (n, k), or (k,) for a
        change of the bias alone."""
        empty = np.zeros((0, 0))
        Zn = Z.numpy()
        if step is None:
            args = (empty, np.zeros(0), 0.0, _PLAIN)
        elif step.dim() == 1:
            args = (empty, step.detach().cpu().double().numpy(), float(t), _BIAS_STEP)
        else:
            args = (step.numpy(), np.zeros(0), float(t), _FULL_STEP)
        with PARALLEL_KERNEL:
            return float(_weighted_loss(Zn, *args, self.labels, self.weight))

    def probabilities(self, Z: torch.Tensor, residual: bool = False):
        """The row softmax ``P``; with ``residual`` also ``(P, weight (P - Y))`` (the loss's gradient in ``Z``)."""
        P = torch.empty_like(Z)
        R = torch.empty_like(Z) if residual else torch.empty(0, 0, dtype=Z.dtype)
        with PARALLEL_KERNEL:
            _probabilities(Z.numpy(), self.labels, self.weight, P.numpy(), R.numpy())
        return (P, R) if residual else P

    def residual(self, Z: torch.Tensor) -> torch.Tensor:
        """``weight (P - Y)`` alone (the probabilities are made in the same array, row by row)."""
        R = torch.empty_like(Z)
        with PARALLEL_KERNEL:
            _probabilities(Z.numpy(), self.labels, self.weight, R.numpy(), R.numpy())
        return R
