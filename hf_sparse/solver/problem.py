"""One fitting problem: standardized design, encoded targets, row weights and family.

Also the internal reparameterization of two-class softmax: its two weight rows
are always opposite at the optimum (the penalty splits the difference evenly), so
it is solved as one logistic regression on ``beta = W[1] - W[0]`` with the penalty
rescaled to match, then mapped back to two rows. Same objective, half the work,
and an exact Hessian for the Newton steps.

Example:
    >>> problem = Problem.build(design, y, family="multinomial", n_outputs=2, sample_weight=None)
    >>> problem.internal_outputs
    1
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .chunking import chunk_rows
from .design import Design
from .thin_products import accurate_rmatvec
from .families import Family, Multilabel, get_family, softmax
from .penalty import ElasticNet
from .softmax_rows import SoftmaxRows, usable


@dataclass
class Problem:
    design: Design
    family: Family            # the family solved internally
    public_family: str
    Y: torch.Tensor           # (n_local, k_internal) encoded targets
    row_weight: torch.Tensor  # (n_local,), sums to one over all processes
    n_outputs: int            # k of the public weight matrix
    binary_softmax: bool
    labels: torch.Tensor | None = None  # (n_local,) classes, for the compiled softmax passes (multinomial, k > 2)
    _dual: tuple | None = field(default=None, repr=False)
    _rows: SoftmaxRows | None = field(default=None, repr=False)
    _label_sums: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def build(cls, design: Design, y: torch.Tensor, *, family: str, n_outputs: int,
              sample_weight: torch.Tensor | None) -> "Problem":
        fam = get_family(family)
        dtype, device = design.dtype, design.device
        y = y.to(device)
        binary = family == "multinomial" and n_outputs == 2
        if binary:
            Y = (y == 1).to(dtype)[:, None]
            internal = Multilabel()
        else:
            # one-hot targets in bytes: a quarter of float32's n x k (3.6 GB less at the ImageNet shape); every use
            # takes rows of them into its own precision
            Y = fam.encode(y, n_outputs, torch.uint8 if family == "multinomial" else dtype)
            internal = fam
        if sample_weight is None:
            w = torch.ones(len(y), device=device, dtype=torch.float64)
        else:
            w = sample_weight.to(device=device, dtype=torch.float64)
        total = design.reducer.scalar(w.sum())
        row_weight = (w / total).to(dtype)
        labels = y.long() if family == "multinomial" and not binary else None
        return cls(design, internal, family, Y, row_weight, n_outputs, binary, labels)

    def softmax_rows(self, Z: torch.Tensor, step: torch.Tensor | None = None) -> SoftmaxRows | None:
        """The compiled row passes (:mod:`.softmax_rows`) where they apply to ``Z`` (and ``step``), else None."""
        if self.labels is None or not usable(Z, step):
            return None
        if self._rows is None:
            self._rows = SoftmaxRows(self.labels, self.row_weight)
        return self._rows

    def class_labels(self) -> torch.Tensor:
        """Each row's class (n_local,): a softmax head over three or more classes only (its targets are one-hot)."""
        if self.labels is None:
            raise ValueError(f"class labels are kept for a softmax head over 3+ classes, not for this "
                             f"{self.public_family} problem with {self.internal_outputs} internal output(s)")
        return self.labels

    @property
    def internal_outputs(self) -> int:
        return self.Y.shape[1]

    def penalty(self, lam: float, alpha: float, group: bool) -> ElasticNet:
        """The penalty on the internal weights that equals ``lam`` on the public ones."""
        if self.binary_softmax:
            # W = [-beta/2, beta/2]: |W|_1 = |beta|_1, |W|^2 = |beta|^2 / 2, |W_j|_2 = |beta_j| / sqrt(2)
            l1 = lam * alpha * (1 / math.sqrt(2) if group else 1.0)
            return ElasticNet(l1=l1, l2=lam * (1 - alpha) / 2, group=group)
        return ElasticNet(l1=lam * alpha, l2=lam * (1 - alpha), group=group)

    def lambda_from_score(self, score: float, alpha: float, group: bool) -> float:
        """The public lambda at which ``score`` (a gradient size) meets the L1 threshold."""
        factor = self.penalty(1.0, alpha, group).l1
        return score / factor

    def loss(self, Z: torch.Tensor, step: torch.Tensor | None = None, t: float = 1.0,
             probabilities: torch.Tensor | None = None, into_step: bool = False) -> float:
        """The weighted mean loss at predictions ``Z + t step``, in row chunks: a line search's trial point
        is never made whole (an ``n x k`` float64 copy is 10 GB at the ImageNet shape). ``step``: (n, k),
        or (k,) for a change of the bias alone. ``probabilities`` (multinomial, ``Z``'s shape): written with the
        softmax at that point in the same pass (a line search's accepted point is where the next step starts).
        ``into_step``: the point ``Z + t step`` written over the (n, k) ``step`` in the same pass (an accepted trial
        then needs no ``Z += t step``: the caller takes ``step`` as its new ``Z``)."""
        if probabilities is not None and self.family.name != "multinomial":
            raise ValueError(f"probabilities are a softmax head's, not a {self.family.name} problem's")
        if into_step and (step is None or step.dim() != 2):
            raise ValueError("into_step needs an (n, k) step to write the point over")
        compiled = self.softmax_rows(Z, step)
        if compiled is not None:
            return self.design.reducer.scalar(torch.tensor(
                compiled.loss(Z, step, t, probabilities=probabilities, into_step=into_step), dtype=torch.float64))
        rows = chunk_rows(Z.shape[1], Z.device)
        total = torch.zeros((), dtype=torch.float64, device=Z.device)
        for a in range(0, Z.shape[0], rows):
            if step is None:
                Zc = Z[a:a + rows]
            elif into_step:  # the point made in the step's own rows (the same op as below): no new chunk, no copy
                Zc = torch.add(Z[a:a + rows], step[a:a + rows], alpha=t, out=step[a:a + rows])
            else:
                Zc = torch.add(Z[a:a + rows], step if step.dim() == 1 else step[a:a + rows], alpha=t)
            if probabilities is not None:
                probabilities[a:a + rows] = softmax(Zc)
            total += self._weighted_losses(Zc, a)
        return self.design.reducer.scalar(total)

    def _weighted_losses(self, Zc: torch.Tensor, start: int) -> torch.Tensor:
        """The weighted row losses' float64 sum over the chunk of predictions ``Zc`` of rows from ``start`` on."""
        stop = start + Zc.shape[0]
        if self.labels is not None:  # the label's entry picked: no n x k product with the one-hot targets
            losses = torch.logsumexp(Zc, dim=1) - Zc.gather(1, self.labels[start:stop, None])[:, 0]
        else:
            losses = self.family.row_loss(Zc, self.Y[start:stop])
        return (self.row_weight[start:stop] * losses).double().sum()

    def unweighted_residual(self, Z: torch.Tensor) -> torch.Tensor:
        """``dloss_i / dZ_i`` per row (before the row weights), made in row chunks (one ``n x k`` array)."""
        compiled = self.softmax_rows(Z)
        if compiled is not None:
            return compiled.unweighted_residual(Z)
        out = torch.empty_like(Z)
        rows = chunk_rows(Z.shape[1], Z.device)
        for a in range(0, Z.shape[0], rows):
            out[a:a + rows] = self.family.gradient(Z[a:a + rows], self.Y[a:a + rows])
        return out

    def residual(self, Z: torch.Tensor) -> torch.Tensor:
        """Gradient of the weighted mean loss with respect to ``Z``."""
        compiled = self.softmax_rows(Z)
        if compiled is not None:
            return compiled.residual(Z)
        R = self.unweighted_residual(Z)
        R *= self.row_weight[:, None].to(R.dtype)
        return R

    def probabilities(self, Z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Softmax's row probabilities (multinomial), one compiled pass into ``out`` where it applies."""
        compiled = self.softmax_rows(Z)
        if compiled is not None:
            return compiled.probabilities(Z, out=out)
        return softmax(Z)

    def probabilities_and_residual(self, Z: torch.Tensor, out=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax's row probabilities ``P`` and the weighted residual ``w (P - Y)`` (multinomial): one compiled
        pass where it applies (:mod:`.softmax_rows`), written into ``out = (P, R)`` if given (the torch code,
        which makes new arrays, ignores it)."""
        compiled = self.softmax_rows(Z)
        if compiled is not None:
            return compiled.probabilities(Z, residual=True, out=out)
        P = softmax(Z)
        return P, (P - self.Y.to(P.dtype)) * self.row_weight[:, None].to(P.dtype)

    def residual_products(self, P: torch.Tensor, block) -> tuple[torch.Tensor, torch.Tensor]:
        """``X_cols^T R`` (k, m) summed over processes and ``R``'s column sums (k,) on this process's rows, for the
        weighted residual ``R = w (P - Y)`` of the probabilities ``P`` (multinomial) and a
        :class:`~.design.Block`: made in row chunks, never whole (the torch code's gradient, as on a GPU)."""
        k = P.shape[1]
        grad = torch.zeros(k, len(block.cols), dtype=torch.float64, device=P.device)
        sums = torch.zeros(k, dtype=torch.float64, device=P.device)
        for start, stop, rows in block.pieces(chunk_rows(k, P.device)):
            R = (P[start:stop] - self.Y[start:stop]).mul_(self.row_weight[start:stop, None].to(P.dtype))
            grad += accurate_rmatvec(R, rows)
            sums += R.sum(0, dtype=torch.float64)
        return self.design.reducer.sum(grad), sums

    def bias_gradient(self, Z: torch.Tensor) -> torch.Tensor:
        """The weighted mean loss's gradient in the bias (k,), float64, this process's rows: one compiled pass
        without ``n x k`` arrays where it applies, else the family's."""
        compiled = self.softmax_rows(Z)
        if compiled is not None:
            return compiled.bias_gradient(Z)
        return self.family.bias_gradient(Z, self.Y, self.row_weight)

    def bias_trial(self, Z: torch.Tensor, step: torch.Tensor, t: float) -> tuple[float, torch.Tensor]:
        """The weighted mean loss and its gradient in the bias (over all processes) at ``Z + t step``, ``step`` a
        change of the bias (k,): one pass (a bias polish's trial gives its next step's slope), compiled where it
        applies, else in row chunks (no ``n x k`` array)."""
        compiled = self.softmax_rows(Z)
        if compiled is not None:
            loss, gradient = compiled.bias_trial(Z, step, t)
            total = torch.tensor(loss, dtype=torch.float64)
        else:
            total = torch.zeros((), dtype=torch.float64, device=Z.device)
            gradient = torch.zeros(Z.shape[1], dtype=torch.float64, device=Z.device)
            rows = chunk_rows(Z.shape[1], Z.device)
            for a in range(0, Z.shape[0], rows):
                Zc, w = torch.add(Z[a:a + rows], step, alpha=t), self.row_weight[a:a + rows, None]
                total += self._weighted_losses(Zc, a)
                gradient += (w.to(Zc.dtype) * self.family.gradient(Zc, self.Y[a:a + rows].to(Zc.dtype))).sum(
                    0, dtype=torch.float64)
        return self.design.reducer.scalar(total), self.design.reducer.sum(gradient)

    def curvature(self, Z: torch.Tensor) -> torch.Tensor:
        return self.family.curvature(Z) * self.row_weight[:, None]

    def dual_data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean_Y, a, B)`` in float64, over all processes: the weighted mean of the targets (k,),
        ``X^T w`` (d,) and ``(w Y)^T X`` (k, d), which map a shift of the dual point to its
        change in ``X^T R`` without another pass over the features. Computed once."""
        if self._dual is None:
            w = self.row_weight[:, None]
            if self.labels is not None:  # one-hot targets: (w Y)^T X is the label sums, n d work
                mean_Y = torch.zeros(self.internal_outputs, dtype=torch.float64, device=w.device).index_add_(
                    0, self.labels, w[:, 0].double())  # each label's weight: no n x k product
                self._dual = (self.design.reducer.sum(mean_Y), self.design.gradient(w)[0], self.label_sums())
            else:
                mean_Y = self.design.reducer.sum((w * self.Y).sum(0, dtype=torch.float64))
                XtM = self.design.gradient(torch.cat([w, w * self.Y], dim=1))
                self._dual = (mean_Y, XtM[0], XtM[1:])
        return self._dual

    def label_sums(self) -> torch.Tensor:
        """``(w Y)^T X`` (k, d), float64 and exact (summed by label, not by a float32 product), over all processes:
        the label part of the gradient ``X^T w (P - Y)``, for products that take ``P`` alone. Computed once."""
        if self._label_sums is None:
            self._label_sums = self.design.rows_by_label(self.class_labels(), self.row_weight, self.internal_outputs)
        return self._label_sums

    def to_public(self, W: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Internal (standardized) weights to the public parameterization (still standardized)."""
        if self.binary_softmax:
            return torch.cat([-W / 2, W / 2]), torch.cat([-b / 2, b / 2])
        return W, b

    def support_to_internal(self, support: torch.Tensor) -> torch.Tensor:
        """Which internal weights may be nonzero, from a public (k, d) boolean support."""
        if self.binary_softmax:
            return support.any(0, keepdim=True)
        return support

    def to_internal(self, W: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.binary_softmax:
            return (W[1:2] - W[0:1]), (b[1:2] - b[0:1])
        return W, b
