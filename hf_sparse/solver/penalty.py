"""The elastic-net penalty ``l1 * |W|_1 + l2 / 2 * |W|_F^2`` (or its group form).

With ``group=True`` the L1 term becomes ``l1 * sum_j |W[:, j]|_2``: a feature's
column across classes is one group, so sparsity counts features, not weights.
``l1 = lam * alpha`` and ``l2 = lam * (1 - alpha)`` for the public objective.

Example:
    >>> pen = ElasticNet(l1=0.1, l2=0.01)
    >>> pen.value(torch.tensor([[1.0, -2.0]]))
    tensor(0.3250, dtype=torch.float64)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ElasticNet:
    l1: float
    l2: float
    group: bool = False

    def value(self, W: torch.Tensor) -> torch.Tensor:
        """The penalty, in float64."""
        W = W.double()
        if self.group:
            l1 = torch.linalg.vector_norm(W, dim=0).sum()
        else:
            l1 = W.abs().sum()
        return self.l1 * l1 + 0.5 * self.l2 * (W * W).sum()

    def scores(self, G: torch.Tensor) -> torch.Tensor:
        """Per-coefficient (or per-feature, in group mode) size of a gradient ``G`` (k, d)."""
        if self.group:
            return torch.linalg.vector_norm(G, dim=0).expand_as(G)
        return G.abs()

    def conjugate(self, V: torch.Tensor) -> torch.Tensor:
        """The convex conjugate at ``V`` (k, d); infinite when ``l2 == 0`` and ``V`` is outside the ball."""
        V = V.double()
        excess = torch.relu(self.scores(V) - self.l1)
        if self.group:
            excess = excess[0]
        if self.l2 > 0:
            return (excess * excess).sum() / (2 * self.l2)
        return torch.where(excess.max() > 0, torch.tensor(float("inf"), dtype=V.dtype), torch.tensor(0.0, dtype=V.dtype))

    def dual_excess(self, W: torch.Tensor, G: torch.Tensor, free: torch.Tensor) -> float:
        """What the gradient ``G`` of the loss at ``W`` (k, d) adds to the duality gap through this penalty's
        conjugate, over the ``free`` weights: ``sum r^2 / (2 l2)`` with ``r`` each weight's distance from its
        optimality condition (``G + l1 sign(W) + l2 W`` where ``W != 0``, ``|G| - l1`` past the ball where it is
        zero). With the small ``l2`` of alpha near 1 it dwarfs the objective's distance from its optimum (about
        ``r^2 / 2`` over the loss's curvature): near the dense end a point whose Newton model sees 1e-10 of the
        objective left can be uncertified. Zero without an L2 term or in group mode (no such bound).

        Example:
            >>> pen = ElasticNet(l1=0.25, l2=0.5)      # r = -0.5 + 0.25 + 0.5 at W = 1: 0.25^2 / (2 * 0.5)
            >>> pen.dual_excess(torch.tensor([[1.0]]), torch.tensor([[-0.5]]), torch.tensor([[True]]))
            0.0625
        """
        if self.l2 <= 0 or self.group:
            return 0.0
        W, G = W.double(), G.double()
        r = torch.where(W != 0, G + self.l1 * torch.sign(W) + self.l2 * W, torch.relu(G.abs() - self.l1))
        r = r * free.to(r.device)
        return float((r * r).sum()) / (2 * self.l2)

    def dual_scale(self, V: torch.Tensor) -> float:
        """The factor in (0, 1] that makes ``scale * V`` dual-feasible when ``l2 == 0``."""
        if self.l2 > 0:
            return 1.0
        top = float(self.scores(V).max())
        return 1.0 if top <= self.l1 else self.l1 / top
