"""The change of a softmax dual point that takes all mass off the classes no row has.

No feasible dual point gives a class without examples any probability, so the gap check moves each
row's mass on those classes to the row's own class: ``M = P_E (on the empty classes) - Y sum(P_E)``
with ``P_E`` the dual point's mass there. ``M`` is kept as that ``n x e`` block and the rows' sums
(``e`` empty classes, often a handful out of 1,000), never as an ``n x k`` array: its rows are made on
demand, and its ``X^T`` product is ``X^T P_E`` plus a sum of rows per class (``n d`` work), not another
``n d k`` pass over the features (at 1,000 classes and 20,000 rows that pass and the dense ``M`` took
a quarter of a second per check).

Example:
    >>> D = torch.tensor([[-0.5, 0.2, 0.3], [0.4, -0.6, 0.2]], dtype=torch.float64)
    >>> Y = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64)
    >>> shift = EmptyClassShift.of(D, Y, mean_Y=torch.tensor([0.5, 0.5, 0.0]))
    >>> shift.moved                       # class 2's mass, moved to each row's own class
    tensor([0.3000, 0.2000], dtype=torch.float64)
    >>> (D + Y - shift.rows(0, 2, Y))[:, 2]  # the shifted dual point: nothing on class 2
    tensor([0., 0.], dtype=torch.float64)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EmptyClassShift:
    """``M = P_E`` on the empty classes ``classes`` minus ``Y`` times ``moved = P_E.sum(1)`` (this process's rows)."""

    classes: torch.Tensor  # (e,) the classes without examples
    mass: torch.Tensor  # (n_local, e) the dual point's mass on them, P_E = D + Y there
    moved: torch.Tensor  # (n_local,) each row's mass moved to its own class

    @classmethod
    def of(cls, D: torch.Tensor, Y: torch.Tensor, mean_Y: torch.Tensor) -> "EmptyClassShift | None":
        """The shift for the dual point ``D`` (n, k); ``mean_Y`` (k,) the weighted mean of ``Y``, zero where a
        class has no examples. None when every class has some."""
        empty = mean_Y <= 0
        if not bool(empty.any()):
            return None
        classes = torch.nonzero(empty).flatten().to(D.device)
        mass = D.index_select(1, classes) + Y.index_select(1, classes).to(D.dtype)
        return cls(classes, mass, mass.sum(1))

    def rows(self, start: int, stop: int, Y: torch.Tensor) -> torch.Tensor:
        """``M[start:stop]`` (stop - start, k)."""
        M = Y[start:stop].to(self.mass.dtype) * -self.moved[start:stop, None]
        M[:, self.classes] += self.mass[start:stop]
        return M

    def column_sums(self, weight: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
        """``weight @ M`` (k,), float64, this process's rows; ``labels`` (n_local,) each row's class."""
        w = weight.double()
        out = torch.zeros(n_classes, dtype=torch.float64, device=w.device)
        out.index_add_(0, labels, -(w * self.moved.double()))
        out[self.classes] += w @ self.mass.double()
        return out

    def gradient(self, design, labels: torch.Tensor, weight: torch.Tensor, n_classes: int) -> torch.Tensor:
        """``X^T diag(weight) M`` as (k, d) float64, summed over processes: ``labels`` (n_local,) each row's class."""
        # each row's moved mass, summed per class: n d work
        out = -design.rows_by_label(labels, weight.double() * self.moved.double(), n_classes)
        out[self.classes] += design.gradient(self.mass, row_weight=weight)
        return out
