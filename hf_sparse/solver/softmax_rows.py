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

_PLAIN, _FULL_STEP, _BIAS_STEP, _FULL_STEP_INTO_STEP = 0, 1, 2, 3


_BLOCK = 64  # rows per parallel task (each task keeps one row's scratch)
# fused multiply-adds (one rounding where there were two: no less accurate) in the exp polynomial and the sums: the
# passes are bound by the exp's arithmetic (at 20,000 x 1,000, the loss pass 21.9 -> 18.7 ms)
_CONTRACT = {"contract"}
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact (fdlibm's constants)
_LN2_LO = 1.90821492927058770002e-10


_SHIFTER = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer, held in the sum's low mantissa bits


@numba.njit(inline="always")
def _exp_split(x, scratch, c):
    """``exp(x)`` for ``x <= 0``, in two parts that vectorize (numba's ``math.exp`` is a scalar call): returns
    ``exp(r)``, ``|r| <= ln 2 / 2``, and writes ``m + 1.5 * 2^52`` to ``scratch[c]`` (``x = m ln 2 + r``), whose bits
    :func:`_exp_row` turns into ``2^m`` (the rounding by the added constant, not a float-to-int conversion, which
    kept the loop scalar: 4 times slower). Taylor to degree 13 (truncation below 1e-17): within 1 ulp of libm on
    [-700, 0]; ``x`` below -707 is taken as -707 (``exp`` of it is 1e-307, nothing beside a row's largest entry,
    which is 1)."""
    x = max(x, -707.0)
    shifted = x * _LOG2E + _SHIFTER
    m = shifted - _SHIFTER
    r = (x - m * _LN2_HI) - m * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    scratch[c] = shifted
    return p


@numba.njit(inline="always")
def _exp_row(x, out, scratch):
    """``out = exp(x - max(x))`` for one row (``scratch``: float64 of its length); returns ``(max(x), sum(out))``."""
    k = x.shape[0]
    top = -np.inf
    for c in range(k):
        top = max(top, x[c])
    for c in range(k):
        out[c] = _exp_split(x[c] - top, scratch, c)
    bits = scratch.view(np.int64)
    for c in range(k):
        # the low bits hold m + 2^51; shifted into the exponent field (m >= -1021 here) the rest falls off: 2^m
        bits[c] = (bits[c] + 1023) << 52
    total = 0.0
    for c in range(k):
        out[c] *= scratch[c]
        total += out[c]
    return top, total


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def _weighted_loss(Z, S, s, t, mode, labels, weight, P):
    """``sum_i weight_i (logsumexp(z_i) - z_i[label_i])`` at ``z = Z + t S`` (mode 1; mode 3 also writes ``z`` over
    ``S``), ``Z + t s`` with a bias step ``s`` (mode 2), or ``Z`` (mode 0); with ``P`` of ``Z``'s shape,
    ``softmax(z)`` written into it."""
    n, k = Z.shape
    write = P.shape[0] == n
    out = np.zeros(n)
    for block in numba.prange((n + _BLOCK - 1) // _BLOCK):
        x, e, powers = np.empty(k), np.empty(k), np.empty(k)
        for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
            # one loop per mode: a test inside the loop kept it from vectorizing (a third of the pass)
            if mode == 1 or mode == 3:
                for c in range(k):
                    x[c] = Z[i, c] + t * S[i, c]
                if mode == 3:  # the row is in cache: writing it costs ~3% of the pass, a separate Z += t S a third
                    for c in range(k):
                        S[i, c] = x[c]
            elif mode == 2:
                for c in range(k):
                    x[c] = Z[i, c] + t * s[c]
            else:
                for c in range(k):
                    x[c] = Z[i, c]
            top, total = _exp_row(x, e, powers)
            out[i] = weight[i] * (math.log(total) + top - x[labels[i]])
            if write:
                scale = 1.0 / total
                for c in range(k):
                    P[i, c] = e[c] * scale
    return out.sum()


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def _probabilities(Z, labels, weight, P, R):
    """Row softmax into ``P``; with ``R`` of ``Z``'s shape also ``R = weight (P - onehot(labels))``."""
    n, k = Z.shape
    residual = R.shape[0] == n
    for block in numba.prange((n + _BLOCK - 1) // _BLOCK):
        e, powers = np.empty(k), np.empty(k)
        for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
            _, total = _exp_row(Z[i], e, powers)
            scale = 1.0 / total
            for c in range(k):
                P[i, c] = e[c] * scale
            if residual:
                for c in range(k):
                    R[i, c] = weight[i] * P[i, c]
                R[i, labels[i]] -= weight[i]


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def _curvatures(P, weight, out):
    """``out = weight p (1 - p)`` from probabilities ``P``, in ``out``'s precision: one pass (torch took three)."""
    n, k = P.shape
    for block in numba.prange((n + _BLOCK - 1) // _BLOCK):
        for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
            w = weight[i]
            for c in range(k):
                p = P[i, c]
                out[i, c] = w * p * (1.0 - p)


def row_curvatures(P: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The rows' softmax curvatures ``weight p (1 - p)`` from probabilities ``P`` (contiguous float64 CPU, n x k)
    into ``out`` (contiguous, ``P``'s shape, float32 or float64); ``weight`` (n,). Returns ``out``."""
    if not (usable(P) and out.is_contiguous() and out.device.type == "cpu" and out.shape == P.shape):
        raise ValueError("P must be a contiguous float64 CPU tensor and out a contiguous CPU tensor of its shape")
    with PARALLEL_KERNEL:
        _curvatures(P.numpy(), weight.double().cpu().contiguous().numpy(), out.numpy())
    return out


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def _probability_sums(Z, weight, parts):
    """``sum_i weight_i softmax(Z_i)`` (k,), in ``parts`` partial sums (each over every ``parts``-th block of rows:
    the same sums on any thread count)."""
    n, k = Z.shape
    blocks = (n + _BLOCK - 1) // _BLOCK
    sums = np.zeros((parts, k))
    for part in numba.prange(parts):
        e, powers = np.empty(k), np.empty(k)
        for block in range(part, blocks, parts):
            for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
                _, total = _exp_row(Z[i], e, powers)
                scale = weight[i] / total
                for c in range(k):
                    sums[part, c] += e[c] * scale
    return sums.sum(0)


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
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
                rest += (1.0 - y) * q * math.log(q)
        a[i] = first
        others[i] = rest


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def _dual_rows(Z, labels, weight, D, losses, a, others, parts):
    """The gap check's pass over the predictions: ``D = softmax(Z) - onehot(labels)`` written, and per row the
    weighted loss, ``a = 1 - p_label`` and ``others = sum_{c != label} p_c log p_c`` (the conjugate terms of
    :func:`_conjugate_terms` for ``D``, with ``log p`` from the logits: no ``log`` call);
    returns the weighted column sums of ``D`` (k,), in ``parts`` partial sums (the same on any thread count)."""
    n, k = Z.shape
    blocks = (n + _BLOCK - 1) // _BLOCK
    sums = np.zeros((parts, k))
    for part in numba.prange(parts):
        e, powers = np.empty(k), np.empty(k)
        for block in range(part, blocks, parts):
            for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
                top, total = _exp_row(Z[i], e, powers)
                log_total = math.log(total) + top
                y = labels[i]
                losses[i] = weight[i] * (log_total - Z[i, y])
                scale = 1.0 / total
                rest = 0.0
                for c in range(k):
                    q = e[c] * scale
                    D[i, c] = q
                    sums[part, c] += weight[i] * q
                    if c != y:
                        rest += q * (Z[i, c] - log_total)
                q = D[i, y]
                D[i, y] = q - 1.0
                sums[part, y] -= weight[i]
                a[i] = 1.0 - q
                others[i] = rest
    return sums.sum(0)


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def _shifted_conjugate_terms(D, labels, keep, shift, add, empty, moved, a, others):
    """:func:`_conjugate_terms` of the feasible dual point ``keep (D - M) - shift Y + add`` (per class vectors)
    without making it: ``M`` moves each row's mass on the ``empty`` classes (True/False per class) to its own
    class (``moved``, per row; :class:`~.empty_classes.EmptyClassShift`), which leaves nothing on them."""
    n, k = D.shape
    for i in numba.prange(n):
        y = labels[i]
        rest = 0.0
        for c in range(k):
            if c == y:
                continue
            q = add[c] if empty[c] else keep[c] * D[i, c] + add[c]
            if q > 0.0:
                rest += q * math.log(q)
        a[i] = -(keep[y] * (D[i, y] + moved[i]) - shift[y] + add[y])
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


def row_softmax(Z: torch.Tensor) -> torch.Tensor | None:
    """Softmax of each row in one compiled pass (a new array), or None where it does not apply (:func:`usable`)."""
    if not usable(Z):
        return None
    P = torch.empty_like(Z)
    none = np.zeros(0, dtype=np.int64)
    with PARALLEL_KERNEL:
        _probabilities(Z.numpy(), none, np.zeros(0), P.numpy(), np.zeros((0, 0)))
    return P


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
        self._ones = None  # unit weights, made when first needed

    def loss(self, Z: torch.Tensor, step: torch.Tensor | None = None, t: float = 1.0,
             probabilities: torch.Tensor | None = None, into_step: bool = False) -> float:
        """``sum_i weight_i loss_i(Z_i + t step_i)`` (this process's rows); ``step`` (n, k), or (k,) for a
        change of the bias alone. ``probabilities``: written with the softmax there in the same pass (contiguous
        float64, ``Z``'s shape), for a line search whose accepted point is where the next step starts.
        ``into_step``: the point ``Z + t step`` written over ``step`` (an (n, k) one) in the same pass."""
        if into_step and (step is None or step.dim() != 2):
            raise ValueError("into_step needs an (n, k) step to write the point over")
        empty = np.zeros((0, 0))
        if probabilities is None:
            P = empty
        elif usable(probabilities) and probabilities.shape == Z.shape:
            P = probabilities.numpy()
        else:
            raise ValueError("probabilities must be a contiguous float64 CPU tensor of Z's shape")
        Zn = Z.numpy()
        if step is None:
            args = (empty, np.zeros(0), 0.0, _PLAIN)
        elif step.dim() == 1:
            args = (empty, step.detach().cpu().double().numpy(), float(t), _BIAS_STEP)
        else:
            args = (step.numpy(), np.zeros(0), float(t), _FULL_STEP_INTO_STEP if into_step else _FULL_STEP)
        with PARALLEL_KERNEL:
            return float(_weighted_loss(Zn, *args, self.labels, self.weight, P))

    def probabilities(self, Z: torch.Tensor, residual: bool = False, out=None):
        """The row softmax ``P``; with ``residual`` also ``(P, weight (P - Y))`` (the loss's gradient in ``Z``).

        ``out``: ``P``, or ``(P, R)`` with ``residual``, to write into (contiguous float64, ``Z``'s shape): a solver
        that makes them at every step keeps them (a fresh ``n x k`` array costs its page faults, at 20,000 x 1,000
        about as much as the pass itself).
        """
        if out is None:
            P = torch.empty_like(Z)
            R = torch.empty_like(Z) if residual else None
        else:
            P, R = out if residual else (out, None)
            if not all(usable(A) and A.shape == Z.shape for A in ((P, R) if residual else (P,))):
                raise ValueError("out must be contiguous float64 CPU tensors of Z's shape")
        if R is None:
            R = torch.empty(0, 0, dtype=Z.dtype)
        with PARALLEL_KERNEL:
            _probabilities(Z.numpy(), self.labels, self.weight, P.numpy(), R.numpy())
        return (P, R) if residual else P

    def dual_rows(self, Z: torch.Tensor, out: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, float, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The gap check's dual point ``D = P - Y`` in one pass (into ``out`` if given), with what the check needs
        beside it: the weighted loss (float), ``D``'s weighted column sums (k,) and its conjugate terms
        ``(a, others)`` (n,) each (:func:`conjugate_terms`), all float64 (this process's rows)."""
        n = Z.shape[0]
        if out is not None and not (usable(out) and out.shape == Z.shape):
            raise ValueError("out must be a contiguous float64 CPU tensor of Z's shape")
        D = torch.empty_like(Z) if out is None else out
        losses, a, others = (torch.empty(n, dtype=torch.float64) for _ in range(3))
        with PARALLEL_KERNEL:
            sums = _dual_rows(Z.numpy(), self.labels, self.weight, D.numpy(), losses.numpy(), a.numpy(),
                              others.numpy(), 8)
        return D, float(losses.numpy().sum()), torch.from_numpy(sums), (a, others)

    def shifted_conjugate_terms(self, D: torch.Tensor, keep: torch.Tensor, shift: torch.Tensor, add: torch.Tensor,
                                empty: torch.Tensor | None = None, moved: torch.Tensor | None = None):
        """The conjugate terms ``(a, others)`` of the dual point ``keep (D - M) - shift Y + add`` (``keep``, ``shift``,
        ``add`` per class) made row by row from ``D``: ``M`` moves the mass on the ``empty`` classes (bool, k) to each
        row's own class, ``moved`` (n,) of it (both None: no class is empty)."""
        n, k = D.shape
        if empty is None:
            empty, moved = torch.zeros(k, dtype=torch.bool), torch.zeros(n, dtype=torch.float64)
        a, others = (torch.empty(n, dtype=torch.float64) for _ in range(2))
        vectors = [v.double().cpu().contiguous().numpy() for v in (keep, shift, add)]
        with PARALLEL_KERNEL:
            _shifted_conjugate_terms(D.numpy(), self.labels, *vectors, empty.cpu().numpy(),
                                     moved.double().cpu().contiguous().numpy(), a.numpy(), others.numpy())
        return a, others

    def bias_gradient(self, Z: torch.Tensor) -> torch.Tensor:
        """``sum_i weight_i (p_i - y_i)`` (k,) float64: the loss's gradient in the bias, one pass, no ``n x k`` array."""
        with PARALLEL_KERNEL:
            sums = _probability_sums(Z.numpy(), self.weight, 8)
        return torch.from_numpy(sums - np.bincount(self.labels, weights=self.weight, minlength=Z.shape[1]))

    def unweighted_residual(self, Z: torch.Tensor) -> torch.Tensor:
        """``P - Y`` (the dual point of the gap check), one pass."""
        if self._ones is None:
            self._ones = np.ones_like(self.weight)
        R = torch.empty_like(Z)
        with PARALLEL_KERNEL:
            _probabilities(Z.numpy(), self.labels, self._ones, R.numpy(), R.numpy())
        return R

    def residual(self, Z: torch.Tensor) -> torch.Tensor:
        """``weight (P - Y)`` alone (the probabilities are made in the same array, row by row)."""
        R = torch.empty_like(Z)
        with PARALLEL_KERNEL:
            _probabilities(Z.numpy(), self.labels, self.weight, R.numpy(), R.numpy())
        return R
