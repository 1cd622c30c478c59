"""The coupled Newton model solved on its signs: coordinate descent finds which weights are nonzero and their signs,
a Cholesky solve jumps to the model's minimizer on that pattern, and coordinate descent confirms it or moves on.

The model is ``g . (v - w0) + 1/2 (v - w0)' H (v - w0) + l1 |v_P|_1 + l2/2 |v_P|^2`` (``P``: the penalized
coordinates; the others are the biases). On strongly correlated features (CIFAR-10's grey pixels: the working set's
Hessian at a condition number near 1e8) coordinate descent alone needs thousands of sweeps of ``M^2`` each and, capped,
its inexact steps cost the Newton path more steps: at 3,500 coordinates 90% of a 180 s path was spent there. Once
the signs are right the minimizer solves one linear system, ``(H_AA + l2 I_P) v_A = H_A. w0 - g_A - l1 s_A``.

Example:
    >>> H = np.array([[2.0, 0.0], [0.0, 1.0]]); g = np.array([-4.0, 0.0])
    >>> sign_solve(H, g, np.zeros(2), 1.0, 0.0, np.array([True, True]), max_sweeps=100, tol=1e-14)
    array([1.5, 0. ])
"""

from __future__ import annotations

import numpy as np
import torch

from .coordinate_descent import coupled_cd

#: coordinate descent's sweeps before the first sign step, and between the others. A sign step costs about as much
#: as 100-300 sweeps (a Cholesky factor, ``M^3 / 3``, against ``M^2`` a sweep at most); at 3-10 classes (n=20,000,
#: d=768) nine models in ten converge within 150 sweeps, where the sign steps would only add their cost
FIRST_SWEEPS, ROUND_SWEEPS = 100, 20
#: rounds of sweeps and a sign step at most, before coordinate descent alone goes on
MAX_SIGN_ROUNDS = 10
_ARC_HALVINGS = 30  # the sign step's halvings: from a full step down to about 1e-9 of it


def sign_solve(H: np.ndarray, g: np.ndarray, w0: np.ndarray, l1: float, l2: float, penalized: np.ndarray, *,
               max_sweeps: int, tol: float) -> np.ndarray:
    """Minimize the elastic-net model above over ``v`` (M,) for one-coordinate penalty groups; ``penalized`` (M,)
    marks the penalized coordinates. Rounds of coordinate descent (:func:`~.coordinate_descent.coupled_cd`, stopping
    rule ``tol``) and a sign step; where the rounds end unconverged, coordinate descent goes on up to ``max_sweeps``.
    """
    M = len(g)
    starts = np.arange(M, dtype=np.int64)
    sizes, curvature = np.ones(M, dtype=np.int64), np.zeros(M)

    def cd(start: np.ndarray, sweeps: int, grad: np.ndarray | None = None):
        # the model about ``start``: the same quadratic up to a constant
        grad = g + H @ (start - w0) if grad is None else grad
        return coupled_cd(H, grad, start, l1, l2, starts, sizes, penalized, curvature, sweeps, tol)

    v, converged = cd(w0, min(FIRST_SWEEPS, max_sweeps), g)
    for _ in range(MAX_SIGN_ROUNDS):
        if converged:
            return v
        moved = _sign_step(H, g, w0, v, l1, l2, penalized)
        if moved is None:
            break
        v, converged = cd(moved, min(ROUND_SWEEPS, max_sweeps))
    return cd(v, max_sweeps)[0]


def model_value(H, g, w0, v, l1, l2, penalized) -> float:
    """The model plus penalty at ``v`` (up to the constant it has at ``w0``)."""
    d = v - w0
    p = v[penalized]
    return float(g @ d + 0.5 * d @ (H @ d) + l1 * np.abs(p).sum() + 0.5 * l2 * p @ p)


def _sign_step(H, g, w0, v, l1, l2, penalized):
    """From ``v`` towards the model's minimizer on ``v``'s zeros and signs, the weights that would change sign held at
    zero (an orthant-wise projected arc): the full step where it lowers the model, else halved until it does. None
    where no point along it is lower (``v`` is that minimizer to rounding) or the system is singular (``l2 = 0`` and a
    feature free in every class)."""
    active = np.flatnonzero(~penalized | (v != 0))
    signs, on = np.sign(v[active]), penalized[active]
    K = H[np.ix_(active, active)]
    K[np.diag_indices_from(K)] += l2 * on
    rhs = (H @ w0)[active] - g[active] - l1 * signs * on
    if not on.all():
        # softmax is flat along one constant added to every bias: pin their sum where it is (no change to the model)
        weight = float(K.diagonal().mean())
        K[np.ix_(~on, ~on)] += weight
        rhs[~on] += weight * float(v[active][~on].sum())
    factor, info = torch.linalg.cholesky_ex(torch.from_numpy(K))
    if int(info) != 0:
        return None
    target = torch.cholesky_solve(torch.from_numpy(rhs)[:, None], factor)[:, 0].numpy()
    if not np.isfinite(target).all():
        return None
    best, t = model_value(H, g, w0, v, l1, l2, penalized), 1.0
    for _ in range(_ARC_HALVINGS):
        trial = v.copy()
        trial[active] += t * (target - v[active])
        trial[active[on & (np.sign(trial[active]) != signs)]] = 0.0
        if model_value(H, g, w0, trial, l1, l2, penalized) < best:
            return trial
        t *= 0.5
    return None
