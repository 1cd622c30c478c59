"""Loss families: the smooth part of the objective, row by row.

Each family maps linear predictions ``Z`` (n, k) and encoded targets ``Y`` (n, k)
to per-row losses, the gradient with respect to ``Z``, a per-entry curvature used
by the Newton steps, and the per-row convex conjugate used by the duality gap.

Example:
    >>> fam = get_family("multinomial")
    >>> Y = fam.encode(torch.tensor([0, 2, 1]), n_outputs=3, dtype=torch.float32)
    >>> fam.row_loss(torch.zeros(3, 3), Y)      # log(3) for every row
    tensor([1.0986, 1.0986, 1.0986])
"""

from __future__ import annotations

import math

import torch

from .chunking import chunk_rows
from .empty_classes import EmptyClassShift
from .softmax_rows import conjugate_terms, row_softmax



def softmax(Z: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax; for the few columns of a head's logits several times faster than
    ``torch.softmax`` on the CPU, which vectorizes along the (short) class axis (one compiled pass for
    float64 rows on the CPU, :func:`~.softmax_rows.row_softmax`)."""
    compiled = row_softmax(Z)
    if compiled is not None:
        return compiled
    # in place after the one new array: out-of-place steps held one more ``Z``-sized array beside it (at the
    # ImageNet shape 9.5 GiB in float64, where the GPU's memory peaked)
    E = Z - Z.amax(1, keepdim=True)
    E.exp_()
    return E.div_(E.sum(1, keepdim=True))


def _add_symmetric_product(out: torch.Tensor, A: torch.Tensor, B: torch.Tensor, pieces: int = 4) -> None:
    """``out += A^T B`` in float64 where the product is symmetric (``A = diag(w) B``): by blocks of columns on and
    above the diagonal, the others mirrored (10 products of a sixteenth each instead of 16 at ``pieces=4``)."""
    k = A.shape[1]
    width = max(256, -(-k // pieces))
    edges = list(range(0, k, width)) + [k]
    for i in range(len(edges) - 1):
        rows = slice(edges[i], edges[i + 1])
        for j in range(i, len(edges) - 1):
            cols = slice(edges[j], edges[j + 1])
            block = (A[:, rows].T @ B[:, cols]).double()
            out[rows, cols] += block
            if j > i:
                out[cols, rows] += block.T


def _xlogx(p: torch.Tensor) -> torch.Tensor:
    """``p log p``, 0 where ``p <= 0`` (a floor like 1e-12 biased the many tiny probabilities of classes without
    examples: a gap of -9e-12 of the objective at 1,000 classes and 300 rows)."""
    if p.numel() > 1 << 20:  # a chunk of n x k work: xlogy (0 log 0 = 0) makes one array, where() a mask and two
        q = p.clamp_min(0)
        return q.xlogy_(q)
    # smaller (the dual profile's vectors, evaluated some 30 times a check): xlogy is 40% slower there on a CPU
    return torch.where(p > 0, p.clamp_min(torch.finfo(p.dtype).tiny).log_().mul_(p), 0.0)


class Family:
    """Base class. ``name`` is the public family name."""

    name: str = ""
    #: whether predictions are class labels scored by accuracy
    is_classification: bool = True

    def encode(self, y: torch.Tensor, n_outputs: int, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError

    def row_loss(self, Z: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def gradient(self, Z: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """d row_loss / dZ, shape (n, k)."""
        raise NotImplementedError

    def curvature(self, Z: torch.Tensor) -> torch.Tensor:
        """Per-entry second derivative (diagonal of each row's Hessian), shape (n, k)."""
        raise NotImplementedError

    def row_conjugate(self, D: torch.Tensor, Y: torch.Tensor, scale: float) -> torch.Tensor:
        """ell_i^*(scale * D_i) for each row, where ``D = gradient(Z, Y)``: the dual's loss term."""
        raise NotImplementedError

    def conjugate_profile(self, D: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor):
        """``t -> sum_i weight_i ell_i^*(t D_i)`` (float64), for the dual-scale search. ``D`` may be a
        function ``(start, stop) -> rows of D``."""
        if callable(D):
            D = D(0, Y.shape[0])

        def profile(t: float) -> torch.Tensor:
            return (weight.double() * self.row_conjugate(D, Y, t).double()).sum()  # (n,) float64 only
        return profile

    def intercept_at_zero(self, mean_Y: torch.Tensor) -> torch.Tensor:
        """The optimal bias when all weights are zero, from the (weighted) mean of the targets."""
        raise NotImplementedError

    def bias_gradient(self, Z: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The gradient (k,) of the weighted loss in the bias, float64, over this process's rows."""
        return (weight[:, None] * self.gradient(Z, Y)).sum(0, dtype=torch.float64)

    def bias_hessian(self, Z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The Hessian (k, k) of the weighted loss in the bias, float64, over this process's rows."""
        return torch.diag((weight[:, None] * self.curvature(Z)).sum(0, dtype=torch.float64))

    def feasible_dual(self, r: torch.Tensor, mean_Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s, v)``, (k,) each, such that ``D' = (1 - s) D - s Y + v`` is a dual point for the
        unpenalized bias: its weighted rows sum to zero (``r`` is the weighted sum of ``D``'s
        rows, ``mean_Y`` that of ``Y``'s; the row weights sum to one) and it stays in the
        conjugate's domain. For a probability model ``Y + D'`` mixes the model's probabilities
        with a constant distribution ``e = v / s``: ``(1 - s) p + s e``, with the smallest ``s``
        that makes ``e`` a valid one.
        """
        raise NotImplementedError

    def empty_class_shift(self, D: torch.Tensor, Y: torch.Tensor, mean_Y: torch.Tensor) -> EmptyClassShift | None:
        """A row-wise change ``M`` of the dual point that zeroes the outputs no (weighted) row has:
        no feasible dual point gives them mass. ``None`` when there is nothing to change."""
        return None

    def correct(self, Z: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Per-row accuracy (0/1, or the share of labels right for multilabel)."""
        raise NotImplementedError


class Multinomial(Family):
    """Softmax cross-entropy over ``k`` classes; labels are integers in ``[0, k)``."""

    name = "multinomial"

    def encode(self, y, n_outputs, dtype):
        # scattered straight into ``dtype`` (one_hot would first build an int64 n x k copy)
        out = torch.zeros(len(y), n_outputs, dtype=dtype, device=y.device)
        return out.scatter_(1, y.long()[:, None], 1.0)

    def row_loss(self, Z, Y):
        return torch.logsumexp(Z, dim=1) - (Z * Y).sum(1)

    def gradient(self, Z, Y):
        return softmax(Z) - Y

    def curvature(self, Z):
        P = softmax(Z)
        return P * (1 - P)

    def row_conjugate(self, D, Y, scale):
        # ell*(u) = sum_c q_c log q_c with q = y + u on the simplex; here q = y + s (p - y).
        return _xlogx(Y + scale * D).sum(1)

    def conjugate_profile(self, D, Y, weight):
        # q = y + t (p - y): the true class has 1 - t a with a = 1 - p_y, the others t p_c, so
        # sum_c q_c log q_c = (1 - t a) log(1 - t a) + a t log t + t sum_{c != y} p_c log p_c.
        # per row, in row chunks (no n x k temporaries beyond one chunk); ``D`` may be a function
        # ``(start, stop) -> rows of D`` so that a dual point derived from another is never held whole
        n, k = Y.shape
        rows = chunk_rows(k, Y.device)
        a = torch.empty(n, dtype=torch.float64, device=Y.device)
        others = torch.empty(n, dtype=torch.float64, device=Y.device)
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            Dc = D(start, stop) if callable(D) else D[start:stop]
            compiled = conjugate_terms(Dc, Y[start:stop])  # one pass over the rows (CPU, float64)
            if compiled is not None:
                a[start:stop], others[start:stop] = compiled
                continue
            label = Y[start:stop].argmax(1, keepdim=True)  # one-hot rows: D's label entry is p_y - 1, the others p_c
            a[start:stop] = -Dc.gather(1, label)[:, 0].double()
            others[start:stop] = _xlogx(Dc).scatter_(1, label, 0.0).sum(1).double()  # one chunk-sized temporary
        return self.profile_from_terms(a, others, weight)

    @staticmethod
    def profile_from_terms(a: torch.Tensor, others: torch.Tensor, weight: torch.Tensor):
        """:meth:`conjugate_profile` from its per-row terms: ``a = -D_label`` and ``others = sum_{c != label}
        xlogx(D_c)`` (n,) float64 each, made by a compiled pass beside ``D`` (:mod:`.softmax_rows`)."""
        w = weight.double()
        wa, w_others = float((w * a).sum()), float((w * others).sum())

        def profile(t: float) -> torch.Tensor:
            tl = t * math.log(t) if t > 0 else 0.0
            return (w * _xlogx(1 - t * a)).sum() + wa * tl + t * w_others
        return profile

    def intercept_at_zero(self, mean_Y):
        freq = mean_Y.clamp_min(1e-6)
        logp = torch.log(freq)
        return logp - logp.mean()

    def bias_gradient(self, Z, Y, weight):
        out = torch.zeros(Z.shape[1], dtype=torch.float64, device=Z.device)
        rows = chunk_rows(Z.shape[1], Z.device)
        for a in range(0, Z.shape[0], rows):  # row chunks: no n x k temporaries
            out += (weight[a:a + rows, None].to(Z.dtype) * self.gradient(Z[a:a + rows], Y[a:a + rows].to(Z.dtype))
                    ).sum(0, dtype=torch.float64)
        return out

    def bias_hessian(self, Z, weight):
        # sums in float64 over row chunks: no n x k temporaries (10 GB each at the ImageNet shape)
        k = Z.shape[1]
        p_sum = torch.zeros(k, dtype=torch.float64, device=Z.device)
        PP = torch.zeros(k, k, dtype=torch.float64, device=Z.device)
        rows = chunk_rows(k, Z.device)
        for a in range(0, Z.shape[0], rows):
            P = softmax(Z[a:a + rows])
            wP = weight[a:a + rows, None].to(P.dtype) * P
            p_sum += wP.sum(0, dtype=torch.float64)
            # the Hessian only steers the bias steps (the gradient is exact): its n k^2 product in float32,
            # twice as fast (0.3 s a step at 20,000 rows and 1,000 classes)
            _add_symmetric_product(PP, wP.float(), P.float())
        return torch.diag(p_sum) - PP

    def empty_class_shift(self, D, Y, mean_Y):
        # a class without examples: its probability moves to each row's own class
        return EmptyClassShift.of(D, Y, mean_Y)

    def feasible_dual(self, r, mean_Y):
        r = r - r.mean()  # softmax rows sum to one: r sums to zero but for rounding
        pos = (r > 0) & (mean_Y > 0)  # classes without examples: zeroed by empty_class_shift
        r = torch.where(mean_Y > 0, r, torch.zeros_like(r))
        s = float((r[pos] / (mean_Y[pos] + r[pos])).max()) if bool(pos.any()) else 0.0
        s = torch.full_like(r, s)
        return s, s * mean_Y - (1 - s) * r

    def correct(self, Z, Y):
        return (Z.argmax(1) == Y.argmax(1)).to(Z.dtype)


class Multilabel(Family):
    """Independent sigmoid cross-entropy per output; targets are 0/1 (or in [0, 1])."""

    name = "multilabel"

    def encode(self, y, n_outputs, dtype):
        return y.to(dtype).reshape(len(y), n_outputs)

    def row_loss(self, Z, Y):
        return (torch.nn.functional.softplus(Z) - Z * Y).sum(1)

    def gradient(self, Z, Y):
        return torch.sigmoid(Z) - Y

    def curvature(self, Z):
        P = torch.sigmoid(Z)
        return P * (1 - P)

    def row_conjugate(self, D, Y, scale):
        Q = Y + scale * D
        return (_xlogx(Q) + _xlogx(1 - Q)).sum(1)

    def intercept_at_zero(self, mean_Y):
        mean = mean_Y.clamp(1e-6, 1 - 1e-6)
        return torch.log(mean) - torch.log1p(-mean)

    def feasible_dual(self, r, mean_Y):
        # each output is its own Bernoulli: e in [0, 1] per output
        s = torch.where(r > 0, r / (mean_Y + r), torch.where(r < 0, -r / (1 - mean_Y - r), torch.zeros_like(r)))
        return s, s * mean_Y - (1 - s) * r

    def correct(self, Z, Y):
        return ((Z > 0).to(Y.dtype) == (Y > 0.5).to(Y.dtype)).to(Z.dtype).mean(1)


class Gaussian(Family):
    """Half squared error per output (regression heads)."""

    name = "gaussian"
    is_classification = False

    def encode(self, y, n_outputs, dtype):
        return y.to(dtype).reshape(len(y), n_outputs)

    def row_loss(self, Z, Y):
        return 0.5 * ((Z - Y) ** 2).sum(1)

    def gradient(self, Z, Y):
        return Z - Y

    def curvature(self, Z):
        return torch.ones_like(Z)

    def row_conjugate(self, D, Y, scale):
        # ell*(u) = |u|^2 / 2 + u . y
        U = scale * D
        return (0.5 * U * U + U * Y).sum(1)

    def intercept_at_zero(self, mean_Y):
        return mean_Y

    def feasible_dual(self, r, mean_Y):
        return torch.zeros_like(r), -r  # no domain to keep: shift every row by the mean residual

    def correct(self, Z, Y):
        return torch.full((Z.shape[0],), math.nan, dtype=Z.dtype, device=Z.device)


FAMILIES = {cls.name: cls for cls in (Multinomial, Multilabel, Gaussian)}


def get_family(name: str) -> Family:
    """The family called ``name``: ``multinomial``, ``multilabel`` or ``gaussian``."""
    try:
        return FAMILIES[name]()
    except KeyError:
        raise ValueError(
            f"Unknown family {name!r}: choose one of {sorted(FAMILIES)} "
            "(multinomial for single-label classes, multilabel for several labels at once, "
            "gaussian for regression)."
        ) from None
