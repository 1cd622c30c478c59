"""The ``n x k`` arrays the block solver (:mod:`.block_newton`) rewrites at every step, kept for the path.

At 20,000 rows and 1,000 classes each is 160 MB: a fresh one per step cost its page faults (35-40 ms, as much as
the pass that fills it), so the probabilities, the step's change of predictions and the rows' curvatures are kept
on the iterate (:meth:`~.newton.Iterate.array`) and rewritten in place by the compiled passes. An accepted full
step's point is written over the step array by the line search's loss pass; that array then becomes the
predictions (:meth:`StepArrays.adopt_point`).

Example:
    >>> kept = StepArrays.for_problem(problem, state)
    >>> P = kept.probabilities(problem, state.Z)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .softmax_rows import row_curvatures


@dataclass
class StepArrays:
    """The ``n x k`` arrays the block solver rewrites at every step, where the compiled passes run (``None``
    elsewhere: the torch code makes its own), kept on the iterate for the path. ``current``: ``P`` holds the
    probabilities at the iterate (the line search wrote them at the point it accepted), so that the next pass over
    them needs no softmax."""

    P: torch.Tensor | None
    step: torch.Tensor | None
    curvatures: torch.Tensor | None
    R: torch.Tensor | None = None  # taken when first needed: the dense gradient's residual
    current: bool = False
    state: object = None  # the iterate these arrays serve (its kept arrays: :meth:`~.newton.Iterate.array`)

    @classmethod
    def for_problem(cls, problem, state) -> "StepArrays":
        if problem.softmax_rows(state.Z) is None:
            return cls(None, None, None, state=state)
        # kept on the iterate for the whole path: the gap check writes its dual point into "step" between calls
        return cls(state.array("probabilities"), state.array("step"), state.array("curvatures", problem.design.dtype),
                   state=state)

    def probabilities(self, problem, Z: torch.Tensor) -> torch.Tensor:
        """Softmax of ``Z``: the kept ones where current, else one pass (into ``P`` where kept)."""
        if self.current:
            return self.P
        P = problem.probabilities(Z, out=self.P)
        self.current = self.P is not None
        return P

    def probabilities_and_residual(self, problem, Z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both in one compiled pass, into the kept arrays (where none are kept, the torch code makes the gradient
        from the probabilities in row chunks: :meth:`~.problem.Problem.residual_products`)."""
        if self.R is None:
            self.R = self.state.array("residual")
        self.current = True
        return problem.probabilities_and_residual(Z, out=(self.P, self.R))

    def adopt_point(self, point: torch.Tensor) -> None:
        """Make ``point`` (an accepted trial point, written over the step) the iterate's ``Z``; the former ``Z``
        becomes the step array (where it is kept for the path, under that name: no array is both)."""
        state = self.state
        former, state.Z = state.Z, point
        if state.scratch.get("step") is point:
            state.scratch["step"] = former
        if self.step is point:
            self.step = former

    def curvature(self, P: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The rows' curvatures ``w p (1 - p)`` in ``dtype`` (``w``: (n, 1)); kept arrays: one compiled pass."""
        if self.curvatures is None:  # the torch code (a GPU): the class blocks ask for them by pieces of rows
            return (1 - P).mul_(P).mul_(w).to(dtype)  # in place after the one new array
        return row_curvatures(P, w[:, 0], self.curvatures)
