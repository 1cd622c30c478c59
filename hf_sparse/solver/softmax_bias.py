"""The optimal bias of a softmax head whose weights are all zero (the path's start, at lam_max).

Example:
    >>> b = softmax_bias_alone(problem, mean_Y, b0)   # (k,) float64, on the problem's device
"""

from __future__ import annotations

import math

import torch

from .problem import Problem


def softmax_bias_alone(p: Problem, mean_Y: torch.Tensor, b0: torch.Tensor) -> torch.Tensor:
    """The optimal bias of a softmax head whose weights are all zero. Every row's logits are then the bias, so
    the weighted mean loss is ``s logsumexp(b) - mean_Y . b`` (``s``: the row weights' sum, 1 up to their
    rounding): Newton steps in ``k`` dimensions with a backtracking search, no pass over the rows (the block
    solver's steps on the bias took 5 s of a 1,000-class path at 20,000 rows). A class without examples has
    its optimum at minus infinity: its bias is put where its probability is below 1e-17 (its share of the
    loss, below the gap's rounding floor)."""
    total = p.design.reducer.scalar(p.row_weight.double().sum())
    mean_Y = mean_Y.double().cpu()
    movable = torch.nonzero(mean_Y > 0).flatten()
    b = b0.double().cpu().clone()
    b[mean_Y <= 0] = torch.logsumexp(b[movable], 0) + math.log(1e-17)

    def loss(bias: torch.Tensor) -> float:
        return float(total * torch.logsumexp(bias, 0) - mean_Y @ bias)
    value = loss(b)
    for _ in range(50):
        q = torch.softmax(b, 0)[movable]
        g = total * q - mean_Y[movable]
        H = total * (torch.diag(q) - torch.outer(q, q)) + 1.0 / len(movable)  # + flat along all together
        step = torch.linalg.solve(H, g - g.mean())
        if not float(g @ step) > 1e-30 * max(abs(value), 1e-300):
            break
        t = 1.0
        while t > 1e-10:
            trial_b = b.clone()
            trial_b[movable] -= t * step
            trial = loss(trial_b)
            # a full step within the loss's rounding is taken: the model is exact to that order here
            if trial <= value or (t == 1.0 and trial <= value + 1e-14 * abs(value)):
                break
            t *= 0.5
        else:
            break
        b, value = trial_b, trial
    return b.to(p.design.device)
