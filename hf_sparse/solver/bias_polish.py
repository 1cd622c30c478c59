"""Newton steps on the unpenalized bias alone, the weights fixed: the duality gap's dual point needs the residuals'
weighted column sums at zero, and a few ``n k`` steps get them there without a pass over the features.

Example:
    >>> polish_bias(problem, state, outputs, lambda r: float(r.abs().max()) < 1e-12)  # returns the new loss or None
"""

from __future__ import annotations

import math

import torch

from .newton import Iterate
from .problem import Problem


def polish_bias(problem: Problem, state: Iterate, outputs: torch.Tensor, done, *, max_steps: int = 3,
                loss: float | None = None, bias_gradient: torch.Tensor | None = None) -> float | None:
    """Newton steps on the unpenalized bias alone (the weights fixed) until ``done(r)`` holds for
    the residuals' weighted column sums ``r`` (the duality gap's dual point needs them at zero).
    Each step costs a few ``n k`` operations (no pass over the features); a step that does not
    lower the loss is not taken. ``outputs``: which biases to move (not those of outputs without
    examples, whose optimal bias is minus infinity). Returns the new loss, or None if no step
    was taken. ``loss`` and ``bias_gradient`` (all processes' sum): at ``state.Z``, where the caller has them (else
    a pass makes each). Each trial gives the loss and the bias gradient in one pass
    (:meth:`~.problem.Problem.bias_trial`): an accepted one's is the next step's.

    The bias Hessian (an ``n k^2`` product: at 1,000 classes 0.2 s, against 30 ms for the gradient) is formed
    once and kept on ``state`` with its Cholesky factor for the next polish, a path point later: it only steers
    the steps (the gradient is exact). A kept one whose step does not at least halve the gradient is replaced by a
    fresh one.
    """
    reducer = problem.design.reducer
    idx = torch.nonzero(outputs.cpu()).flatten()
    k = len(idx)
    multinomial = problem.family.name == "multinomial"
    loss, moved = problem.loss(state.Z) if loss is None else loss, False
    r_all = reducer.sum(problem.bias_gradient(state.Z)) if bias_gradient is None else bias_gradient
    kept = state.bias_hessian
    H, factor = kept[1:] if kept is not None and torch.equal(kept[0], idx) else (None, None)
    fresh, previous = False, math.inf
    for _ in range(max_steps + (H is not None)):  # one more where a kept Hessian may be replaced
        if done(r_all):
            break
        r = r_all.cpu().double()[idx]
        if multinomial:
            r -= r.mean()
        size = float(r.norm())
        if H is None or (not fresh and size > 0.5 * previous):
            H = reducer.sum(problem.family.bias_hessian(state.Z, problem.row_weight)).cpu()[idx][:, idx]
            if multinomial:
                H = H + torch.ones_like(H) / k  # flat along adding one constant to every bias: fix that direction
            factor, fresh = None, True
        if factor is None:
            # factored once per Hessian (a 1,000 x 1,000 solve took 18 ms a step; two triangular ones, 1-2)
            factor, info = torch.linalg.cholesky_ex(H)
            if int(info) != 0:
                break  # not positive definite: an output whose probabilities are all 0 or 1
            state.bias_hessian = (idx, H, factor)
        previous = size
        part = torch.cholesky_solve(r[:, None], factor)[:, 0]
        if not float(r @ part) > 1e-28 * max(abs(loss), 1e-300):
            break
        step = torch.zeros(problem.internal_outputs, dtype=torch.float64)
        step[idx] = part
        step = step.to(state.b.device)
        t = 1.0
        noise = 1e-14 * max(abs(loss), 1e-300)
        for _ in range(30):
            trial, r_trial = problem.bias_trial(state.Z, step.to(state.Z.dtype), -t)  # no n x k trial copy
            # a full step whose change is within the loss's rounding (a sum of n rounded terms jitters by
            # ~1e-15 of it) is taken: on the bias alone the Newton model is exact to that order, and
            # ``done`` judges by the bias gradient, which that rounding does not hide
            if trial <= loss or (t == 1.0 and trial <= loss + noise):
                break
            t *= 0.5
        else:
            break
        state.Z -= (t * step).to(state.Z.dtype)
        state.b, loss, moved, r_all = state.b - t * step, trial, True, r_trial
    return loss if moved else None
