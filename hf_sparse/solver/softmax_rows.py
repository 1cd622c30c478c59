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

import threading

import numpy as np
import torch

from . import row_kernels as kernels

#: One launch of a parallel kernel at a time: with numba's "workqueue" threading layer (where neither OpenMP nor
#: TBB is available) two threads launching parallel kernels at once abort the process.
PARALLEL_KERNEL = threading.Lock()


def row_curvatures(P: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The rows' softmax curvatures ``weight p (1 - p)`` from probabilities ``P`` (contiguous float64 CPU, n x k)
    into ``out`` (contiguous, ``P``'s shape, float32 or float64); ``weight`` (n,). Returns ``out``."""
    if not (usable(P) and out.is_contiguous() and out.device.type == "cpu" and out.shape == P.shape):
        raise ValueError("P must be a contiguous float64 CPU tensor and out a contiguous CPU tensor of its shape")
    with PARALLEL_KERNEL:
        kernels.curvatures(P.numpy(), weight.double().cpu().contiguous().numpy(), out.numpy())
    return out


def conjugate_terms(D: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The per-row terms of the softmax conjugate's profile (:meth:`~.families.Multinomial.conjugate_profile`) in one
    pass, or None where the compiled pass does not apply (``D`` not contiguous float64 on the CPU)."""
    if not usable(D) or Y.device.type != "cpu" or not Y.is_contiguous():
        return None
    a, others = (torch.empty(D.shape[0], dtype=torch.float64) for _ in range(2))
    with PARALLEL_KERNEL:
        kernels.conjugate_terms(D.numpy(), Y.numpy(), a.numpy(), others.numpy())
    return a, others


def row_softmax(Z: torch.Tensor) -> torch.Tensor | None:
    """Softmax of each row in one compiled pass (a new array), or None where it does not apply (:func:`usable`)."""
    if not usable(Z):
        return None
    P = torch.empty_like(Z)
    none = np.zeros(0, dtype=np.int64)
    with PARALLEL_KERNEL:
        kernels.probabilities(Z.numpy(), none, np.zeros(0), P.numpy(), np.zeros((0, 0)))
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
            args = (empty, np.zeros(0), 0.0, kernels.PLAIN)
        elif step.dim() == 1:
            args = (empty, step.detach().cpu().double().numpy(), float(t), kernels.BIAS_STEP)
        else:
            mode = kernels.FULL_STEP_INTO_STEP if into_step else kernels.FULL_STEP
            args = (step.numpy(), np.zeros(0), float(t), mode)
        with PARALLEL_KERNEL:
            return float(kernels.weighted_loss(Zn, *args, self.labels, self.weight, P))

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
            kernels.probabilities(Z.numpy(), self.labels, self.weight, P.numpy(), R.numpy())
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
            sums = kernels.dual_rows(Z.numpy(), self.labels, self.weight, D.numpy(), losses.numpy(), a.numpy(),
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
            kernels.shifted_conjugate_terms(D.numpy(), self.labels, *vectors, empty.cpu().numpy(),
                                     moved.double().cpu().contiguous().numpy(), a.numpy(), others.numpy())
        return a, others

    def bias_gradient(self, Z: torch.Tensor) -> torch.Tensor:
        """``sum_i weight_i (p_i - y_i)`` (k,) float64: the loss's gradient in the bias, one pass, no ``n x k``
        array."""
        return self.bias_trial(Z)[1]

    def bias_trial(self, Z: torch.Tensor, step: torch.Tensor | None = None, t: float = 1.0
                   ) -> tuple[float, torch.Tensor]:
        """The weighted loss and its gradient in the bias (:meth:`bias_gradient`) at ``Z + t step`` (``step``: a
        change of the bias, (k,); None: at ``Z``), in one pass (a bias polish's trial and its next step's slope)."""
        s = np.zeros(0) if step is None else step.detach().cpu().double().contiguous().numpy()
        with PARALLEL_KERNEL:
            sums, loss = kernels.probability_sums(Z.numpy(), s, float(t), self.labels, self.weight, 8)
        label_sums = np.bincount(self.labels, weights=self.weight, minlength=Z.shape[1])
        return float(loss), torch.from_numpy(sums - label_sums)

    def unweighted_residual(self, Z: torch.Tensor) -> torch.Tensor:
        """``P - Y`` (the dual point of the gap check), one pass."""
        if self._ones is None:
            self._ones = np.ones_like(self.weight)
        R = torch.empty_like(Z)
        with PARALLEL_KERNEL:
            kernels.probabilities(Z.numpy(), self.labels, self._ones, R.numpy(), R.numpy())
        return R

    def residual(self, Z: torch.Tensor) -> torch.Tensor:
        """``weight (P - Y)`` alone (the probabilities are made in the same array, row by row)."""
        R = torch.empty_like(Z)
        with PARALLEL_KERNEL:
            kernels.probabilities(Z.numpy(), self.labels, self.weight, R.numpy(), R.numpy())
        return R
