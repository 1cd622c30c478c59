"""The state of one regularization path between its points (`_PathFitter`), and how one point is solved.

At each lambda: strong-rule screening proposes a working set from the previous point's gradient (its candidates
ranked by that gradient extrapolated from the last two points), the working-set
solver (proximal Newton, or the large-k bound solver) solves the problem on it, one pass over all features checks
the KKT conditions (violators join the working set) and computes the duality gap at a dual point made feasible
for the unpenalized bias, until the gap is below ``tol`` relative to the objective. ``fit_path`` drives it.

Example:
    >>> fitter = _PathFitter(problem, alpha=0.99, group=False, tol=1e-6, val=None)
    >>> lam_max = fitter.lam_max()                 # the smallest lambda with all weights zero
    >>> fitter.solve(0.5 * lam_max).metrics["converged"]
    True
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch

from . import newton
from .bound_cd import FeatureGram, bound_solve
from .bias_polish import polish_bias
from .newton import Iterate, newton_solve
from .path import PathPoint
from .penalty import ElasticNet
from .problem import Problem
from .refit import raw_weights, validation_scores
from .screening import extrapolated_gradient, golden_min, working_set
from .secant import secant_start
from .softmax_bias import softmax_bias_alone

logger = logging.getLogger(__name__)

_MAX_ROUNDS = 20
_BOUND_INNER = 1e-2  # the bound solver's inner tolerance, relative to the gap's (its steps converge linearly)
#: Newton's inner tolerance (a share of ``tol``, on the predicted decrease) in a point's first round, then in the
#: others. The first round works on the strong rule's guess at the working set: near the dense end that guess
#: misses features (at 10 classes, a gap of 1e-4 to 3e-3 after the round), so a precision past ``tol`` there is
#: spent on a problem the next round changes. Measured at 10 classes (n=20,000, d=768, 25 lambdas, seed 1), first
#: round at 1e-3 -> 1: lowrank_noisy 213 -> 194 steps, shared48_noisy 191 -> 160, deep 181 -> 165, highrank
#: 173 -> 168, every point certified; 0.1 and 10 were no better; loose after every round that added features
#: (not only the first) took more rounds and was slower on all four. Softmax over 3+ classes only: at two classes
#: (deep, same shape) steps fell 98 -> 93 and 104 -> 93 but the path took 1.03 and 0.94 s against 0.83 (its steps
#: cost less than the extra gap checks). At 100 classes (deep, d=768) seeds 0-2: 11.8 -> 9.4, 12.6 -> 13.0,
#: 11.4 -> 10.9 s; at 1,000 (d=512) fewer steps but slower, 45.4 -> 48.4 and 56.8 -> 63.2 s (a gap check there
#: is an n d k product). Since the strong rule's candidates are ranked by their extrapolated scores (the guess misses
#: 3-10 times fewer weights, see screening.working_set), loose pays below 30 classes only: medians of three, seeds
#: 0-2, k=100 (deep) 12.25 / 15.58 / 19.73 s loose against 12.04 / 14.17 / 17.95 tight; k=30 (seed 1) deep 6.5-6.9
#: against 6.1-6.3, lowrank_noisy 20.6-20.8 against 17.8-20.0; k=10 (seed 1) deep, lowrank_noisy, shared48_noisy
#: 3.4-3.7 / 7.8-9.2 / 4.7 loose against 3.3-3.4 / 7.2-8.4 / 5.1-5.2 tight. Not before a first feature has
#: entered: just below lam_max the first feature's gain is under ``tol`` and a loose round certified the zero weights
#: (no feature at 0.999 lam_max)
_NEWTON_INNER = {"first": 1.0, "later": 1e-3}
_LOOSE_MAX_CLASSES = 30
#: a gap within this factor of the tolerance is worth a bias polish whatever the estimate without the bias term says
#: (k=100 proxy: points needed another Newton round, then stalled and were certified by the polish they got last)
_POLISH_ANYWAY = 100.0
#: a feature outside the working set whose score exceeds l1 by this share means another round whatever the bias: no
#: polish before it. Measured on the k=1000 and k=100 proxies: the 12 polishes at violations of 1.4-64% left gaps of
#: 5-3e5 times tol; those at 0.04-0.8% certified the point in 8 of 11 cases (0.35 s a polish and check at 1,000 classes)
_CLEAR_VIOLATION = 1e-2
_STALLED_GAP = 0.9  # a round that gains too little is a stall only while its gap stays above this share of the last
_MAX_STEPS = 100  # Newton steps per point before giving up on tol (reported as converged=False)
#: a method="newton" point past the coupled Hessian's limit (class blocks instead) that is not certified after this
#: many steps goes on with the coupled Hessian up to _RESCUE_COORDS coordinates (288 MB): on MNIST's pixels (10,000
#: rows, 10 classes, 25 lambdas to 1e-3) the class blocks left 4 of the last 5 points at gaps of 1.3e-6 to 2.3e-3 after
#: 100-131 steps each; the coupled Hessian certifies them in 10-18 steps
_RESCUE_AFTER, _RESCUE_COORDS = 50, 6_000


class _Point(NamedTuple):
    """A solved point as the next ones extrapolate from it: the secant start (weights, bias) and the working set's
    ranking (gradient)."""
    lam: float
    W: torch.Tensor
    b: torch.Tensor
    gradient: torch.Tensor | None


@dataclass
class _Check:
    gradient: torch.Tensor  # (k, d) full gradient of the mean loss
    objective: float
    loss: float
    gap: float


class _PathFitter:
    """Keeps the iterate and screening state between the points of one path."""

    def __init__(self, problem: Problem, *, alpha: float, group: bool, tol: float, val, method: str = "newton"):
        self.problem, self.alpha, self.group, self.tol, self.val = problem, alpha, group, tol, val
        self.method = method
        self.gram = FeatureGram.build(problem) if method == "bound" else None
        self._stall = 1e-14 if method == "bound" else max(1e-14, 1e-2 * tol)
        self.state = Iterate.zeros(problem)
        self.state.keep_arrays = method == "block"  # its step arrays, kept for the path (counted in its formula)
        self.prev_lam: float | None = None
        self.prev_gradient: torch.Tensor | None = None
        self.earlier: _Point | None = None  # the point before the last (the last, once _predict has run)
        self.negative_gaps: list[tuple[float, float]] = []  # (lam, relative gap) below the rounding floor
        # the gap's rounding floor, relative to the objective: with float64 predictions and dual
        # point (every device) the gap is computed to about 1e-12 (times log k: each row's entropy
        # terms sum k entries up to log k in size; -2.3e-12 seen at 310 classes); with float32 ones
        # the dual point's entries, and so its feasibility, hold only float32's digits (-3e-9 seen)
        classes = max(math.log(max(problem.internal_outputs, 2)), 1.0)
        self.gap_floor = 1e-12 * classes if self.state.Z.dtype == torch.float64 else 1e-8

    # -- the start of the path
    def lam_max(self) -> float:
        """Smallest lambda with all weights zero: the largest gradient at W = 0, optimal bias."""
        p = self.problem
        k = p.internal_outputs
        mean_Y = p.dual_data()[0]
        b0 = p.family.intercept_at_zero(mean_Y)
        # the closed form is exact for the mean of y; polish it with Newton steps on the bias alone
        if p.labels is not None:  # softmax over 3+ classes: in k dimensions, no pass over the rows
            self.state.b = softmax_bias_alone(p, mean_Y, b0)
            self.state.Z.copy_(self.state.b.expand_as(self.state.Z))  # in place: no second n x k array
        else:
            b0 = b0.to(p.design.dtype)
            self.state.b = b0.double()
            self.state.Z.copy_(b0.expand_as(self.state.Z))
            self._inner(p, self.state, p.penalty(1.0, self.alpha, self.group),
                        torch.zeros(0, dtype=torch.long, device=p.design.device),
                        torch.zeros(k, 0, dtype=torch.bool), tol=1e-12)
        G = p.design.gradient(p.residual(self.state.Z))
        self.prev_gradient = G
        score = float(p.penalty(1.0, self.alpha, self.group).scores(G).max())
        # The margin covers float rounding, so the first point is all zeros for sure.
        self.prev_lam = p.lambda_from_score(score, self.alpha, self.group) * (1 + 1e-6)
        return self.prev_lam

    # -- one point
    def solve(self, lam: float) -> PathPoint:
        p = self.problem
        started = time.perf_counter()
        pen = p.penalty(lam, self.alpha, self.group)
        prev_l1 = p.penalty(self.prev_lam, self.alpha, self.group).l1
        # strong rule (Tibshirani et al. 2012) plus everything already active, candidates ranked by their scores at lam
        # on the line through the last two points' gradients (see working_set)
        rank = None if self.earlier is None else pen.scores(extrapolated_gradient(
            self.prev_gradient, self.prev_lam, self.earlier.gradient, self.earlier.lam, lam))
        working = working_set(pen.scores(self.prev_gradient), 2 * pen.l1 - prev_l1, self.state.W != 0,
                              limit=self.method != "bound", rank=rank)
        self._predict(lam)
        self.state.refresh(p, torch.nonzero(working.any(0)).flatten())  # the block Newton gathers next
        steps, rounds, tol = 0, 0, self.tol
        # the first round's share of tol (see _NEWTON_INNER): before a first feature has entered, tight too
        first_share = _NEWTON_INNER["first" if p.family.name == "multinomial"
                                    and 3 <= p.internal_outputs < _LOOSE_MAX_CLASSES
                                    and bool((self.state.W != 0).any()) else "later"]
        previous, previous_gap, reuse, retried = math.inf, math.inf, True, False
        max_coupled, step_limit = None, _MAX_STEPS  # the coupled Hessian's default limit, until a rescue
        while True:
            rounds += 1
            cols = torch.nonzero(working.any(0)).flatten()
            inner_tol = tol * (_BOUND_INNER if self.method == "bound"
                               else first_share if rounds == 1 else _NEWTON_INNER["later"])
            # after the first round (the strong rule's guess) the class blocks go on until the gap can be certified
            steps += self._inner(p, self.state, pen, cols, working[:, cols], tol=inner_tol, reuse_hessian=reuse,
                                 max_coupled=max_coupled, gap_tol=self.tol if rounds > 1 else None)
            check = self._check(pen, working=working)
            violators = (pen.scores(check.gradient) > pen.l1 * (1 + 1e-6)) & ~working
            if self.group:
                violators &= self.state.W == 0
            reuse = True  # the last Hessian, grown to any new coordinates
            if -self.gap_floor <= check.gap / max(abs(check.objective), 1e-300) <= self.tol:
                break  # certified: a feature that violates its KKT condition by a hair cannot matter
            if max_coupled is None and steps >= _RESCUE_AFTER and self._rescue_applies(working):
                # the class blocks have not certified this point: the coupled Hessian, from where they left
                max_coupled, step_limit, reuse, tol = _RESCUE_COORDS, steps + _MAX_STEPS, False, self.tol
                if p.design.reducer.rank == 0:
                    logger.info("lambda %.4g: %d class-block steps left a gap of %.2g; going on with the coupled "
                                "Hessian (%d coordinates)", lam, steps, check.gap / max(abs(check.objective), 1e-300),
                                int(working.sum()) + working.shape[0])
                working |= violators
                continue
            if bool(violators.any()):
                working |= violators
            elif rounds >= _MAX_ROUNDS or steps >= step_limit:
                break
            elif check.gap < -self.gap_floor * abs(check.objective) and not retried:
                # below the rounding floor: no certificate; one more round, further, before it is reported
                retried, reuse, tol = True, False, tol * 0.1
            elif check.gap <= self.tol * abs(check.objective):
                break
            elif self.state.stale_model:
                reuse, tol = False, tol * 0.1  # the round ended on an older Hessian: a fresh one, further
            elif self._stalled(check, previous, previous_gap, tol):
                # Before giving up, the bias is polished once whatever the rest of the gap: its gradient weighs
                # in the certificate over the class frequency but only squared in the objective
                # (k=100 proxy: two points stalled at gaps of 3.5e-6 and 5.7e-6 without it).
                check = self._check(pen, force_polish=True)
                break
            else:
                tol *= 0.1
            previous, previous_gap = check.objective, check.gap
        self.prev_lam, self.prev_gradient = lam, check.gradient
        scale = abs(check.objective)
        if check.gap < -self.gap_floor * scale:
            # weak duality says this cannot happen: the certificate failed (rounding beyond its
            # resolution); the point is reported, not accepted
            self.negative_gaps.append((lam, check.gap / max(scale, 1e-300)))
        elif check.gap < 0:
            check.gap = 0.0  # rounding: the gap is zero to the precision it is computed in
        point = self._point(lam, check, steps, time.perf_counter() - started)
        point.metrics["converged"] = bool(0 <= check.gap <= self.tol * scale)
        return point

    def _stalled(self, check: _Check, previous: float, previous_gap: float, tol: float) -> bool:
        """Whether the last round (objective ``previous`` and gap ``previous_gap`` before it, Newton tolerance ``tol``)
        shows that at this precision the gap is what it can be (it has a floor in float32): already at a tighter
        tolerance than the path's, it gained less than a hundredth of the tolerance and left the gap above
        :data:`_STALLED_GAP` of the last. A round that only added a violator or two gains little too: that is no
        stall (giving up there left points at gaps of 1.0-1.4e-6 that one tighter round certifies). Nor is a round that
        cut the gap: near the dense end the gap is mostly the penalty's conjugate term, which fell five-fold (9.9e-6 to
        1.9e-6, CIFAR-10's grey pixels) in a round that gained 7.5e-9 of the objective. The bound solver's linear steps
        leave the gradient (so the gap) loose long after the objective has settled: it goes on to the float64 floor.
        """
        return (tol < self.tol and previous - check.objective <= self._stall * abs(check.objective)
                and check.gap > _STALLED_GAP * previous_gap)

    def _predict(self, lam: float) -> None:
        """Start the point at ``lam`` on the secant through the last two points (:mod:`.secant`)."""
        s = self.state
        earlier, self.earlier = self.earlier, _Point(self.prev_lam, s.W.clone(), s.b.clone(), self.prev_gradient)
        if earlier is not None:
            s.W, s.b = secant_start(s.W, s.b, earlier.W, earlier.b, lam0=earlier.lam, lam1=self.prev_lam, lam=lam,
                                    group=self.group)

    def _inner(self, *args, max_coupled: int | None = None, **kwargs) -> int:
        """The working-set solver of this path: proximal Newton, or the large-k bound solver."""
        if self.method == "bound":
            return bound_solve(*args, gram=self.gram, **kwargs)
        return newton_solve(*args, coupled=self.method != "block", max_coupled=max_coupled, **kwargs)

    def _rescue_applies(self, working: torch.Tensor) -> bool:
        """Whether this point's working set went to class blocks (a method="newton" softmax past the coupled limit)
        and fits the rescue's coupled Hessian."""
        return (self.method == "newton" and newton.uses_class_blocks(self.problem, self.group, working)
                and not newton.uses_class_blocks(self.problem, self.group, working, _RESCUE_COORDS))

    def _check(self, pen: ElasticNet, polish: bool = True, force_polish: bool = False,
               working: torch.Tensor | None = None) -> _Check:
        """Full gradient, objective and duality gap (not clipped: see :meth:`solve`).

        The dual point is the residual, made feasible for the unpenalized bias (its weighted
        rows must sum to zero per output): :meth:`~.families.Family.feasible_dual` mixes a
        share ``s`` of it into a constant, exactly (``D' = (1 - s) D - s Y + v``, whose ``X^T``
        product follows from ``X^T R`` and :meth:`~.problem.Problem.dual_data` without another
        pass over the features). To first order that removes the bias term of the Fenchel-Young
        gap; where the gap is still above ``tol`` and ``s`` is not negligible, Newton steps on the
        bias alone (:func:`~.bias_polish.polish_bias`, ``n k`` each) shrink ``s`` and the gap is
        computed again (when the rest of the gap is below ``tol``, or always with ``force_polish``,
        the path's last try at a point that has stalled), and not while a feature outside ``working`` violates its
        KKT condition by more than :data:`_CLEAR_VIOLATION` (another round follows whatever the bias).
        The gap at ``D`` itself comes from the Fenchel-Young identity (sums of small terms, no
        cancellation of the loss) and the change to ``D'`` is added. The dual point is then
        scaled by ``t`` in (0, 1]: with the small L2 weight of alpha near 1, ``t = 1`` is a loose
        certificate, so ``t`` is tuned by a golden-section search (the dual is concave in ``t``),
        often tightening the gap by an order of magnitude.
        """
        p, s = self.problem, self.state
        reducer = p.design.reducer
        mean_Y, a, B = p.dual_data()
        D, r, M, shift, loss, terms_D = self._dual_point()
        loss = p.loss(s.Z) if loss is None else loss
        penalty = float(pen.value(s.W))
        G = p.design.gradient(D, row_weight=p.row_weight)
        objective = loss + penalty
        bias_term = float((s.b.double() * r).sum())
        conj_G = float(pen.conjugate(-G))
        gap_at_one = float((s.W.double() * G).sum()) + bias_term + penalty + conj_G
        profile_D = (p.family.conjugate_profile(D, p.Y, p.row_weight) if terms_D is None
                     else p.family.profile_from_terms(*terms_D, p.row_weight))
        conj_one = reducer.scalar(profile_D(1.0))
        # the feasible dual point and its X^T product
        mix, v = shift
        keep, shift_Y, add = (1 - mix).to(D), mix.to(D), v.to(D)

        def Dp(start: int, stop: int) -> torch.Tensor:  # the feasible dual point's rows, made on demand, in place
            rows = D[start:stop] * keep if M is None else (D[start:stop] - M.rows(start, stop, p.Y)).mul_(keep)
            return rows.addcmul_(p.Y[start:stop], shift_Y, value=-1).add_(add)
        Gp = G if M is None else G - M.gradient(p.design, p.class_labels(), p.row_weight, p.internal_outputs)
        Gp = (1 - mix)[:, None] * Gp - mix[:, None] * B + v[:, None] * a[None, :]
        compiled = p.softmax_rows(D)
        if compiled is None:
            profile = p.family.conjugate_profile(Dp, p.Y, p.row_weight)
        else:  # the feasible dual point's terms straight from D's rows: no rows of it made
            empty = None if M is None else torch.zeros(p.internal_outputs, dtype=torch.bool).index_fill_(
                0, M.classes.cpu(), True)
            profile = p.family.profile_from_terms(*compiled.shifted_conjugate_terms(
                D, keep, shift_Y, add, empty, None if M is None else M.moved), p.row_weight)

        def gap(t: float) -> float:
            return (gap_at_one - conj_one + reducer.scalar(profile(t))
                    + float(pen.conjugate(-t * Gp)) - conj_G)

        scale = pen.dual_scale(Gp)
        if scale < 1.0:
            best, t_best = gap(scale), scale
        else:
            best, t_best = gap(1.0), 1.0
            if best > self.tol * abs(objective):
                # the best scale sits just below 1: search log10(1 - s) in [-9, -1]
                value, u = golden_min(lambda u: gap(1.0 - 10.0 ** u), -9.0, -1.0)
                if value < best:
                    best, t_best = value, 1.0 - 10.0 ** u
        tol_abs = self.tol * abs(objective)
        if polish and best > tol_abs and working is not None and not force_polish and bool(
                ((pen.scores(G) > pen.l1 * (1 + _CLEAR_VIOLATION)) & ~working).any()):
            polish = False  # a feature outside the working set clearly violates its KKT condition: another round
        if polish and best > tol_abs:
            # The mixing removes the Fenchel-Young gap's bias term to first order; what it costs
            # beyond that (up to about s log k, far less where no probability is below s) pushed
            # the gap over tol where, without the bias term, it would be below: polish the bias
            # and look again (cheaper than another Newton round). With classes that have no
            # examples (``M``) that estimate does not apply: polish whenever ``s`` is not small
            # (at 1,000 classes and 5 rows a class, points stalled at gaps of 1.5e-6 without it).
            if M is None and not force_polish:
                without_bias = (gap_at_one - bias_term - conj_one + reducer.scalar(profile_D(t_best))
                                + float(pen.conjugate(-t_best * G)) - conj_G)
                if without_bias > tol_abs and best > _POLISH_ANYWAY * tol_abs:
                    return _Check(G, objective, loss, best)
            limit = 1e-2 * tol_abs / max(math.log(max(p.internal_outputs, 2)), 1.0)

            def small(r_now: torch.Tensor) -> bool:
                return float(p.family.feasible_dual(r_now, mean_Y)[0].max()) <= limit

            movable = (mean_Y > 0) & ((mean_Y < 1) | (p.family.name == "multinomial"))
            given = r if r.dtype == torch.float64 else None  # the check's bias gradient where summed in float64
            if float(mix.max()) > limit and polish_bias(p, s, movable, small, loss=loss,
                                                        bias_gradient=given) is not None:
                del D, M  # the n x k dual point goes before the next check makes its own
                return self._check(pen, polish=False)
        return _Check(G, objective, loss, best)

    def _dual_point(self):
        """The residual ``D``, its weighted column sums ``r``, the changes that make it dual-feasible (``M`` for
        outputs without examples, ``(s, v)`` for the rest), and the loss and ``D``'s conjugate terms where the
        compiled pass made them beside ``D`` (a softmax head's float64 rows on the CPU; else None, None)."""
        p, s = self.problem, self.state
        reducer = p.design.reducer
        mean_Y = p.dual_data()[0]
        compiled = p.softmax_rows(s.Z)
        if compiled is None:
            D = p.unweighted_residual(s.Z)  # the weighted residual w D is never held whole (10 GB at ImageNet shape)
            r = reducer.sum(p.row_weight.to(D.dtype) @ D)
            loss, terms = None, None
        else:  # one pass for D, r, the loss and D's conjugate terms (four passes over n x k otherwise)
            D, local_loss, r, terms = compiled.dual_rows(s.Z, out=s.array("step"))  # the block solver's, idle now
            r, loss = reducer.sum(r), reducer.scalar(torch.tensor(local_loss, dtype=torch.float64))
        M = p.family.empty_class_shift(D, p.Y, mean_Y)
        r_left = r if M is None else r - reducer.sum(M.column_sums(p.row_weight, p.class_labels(), p.internal_outputs))
        return D, r, M, p.family.feasible_dual(r_left, mean_Y), loss, terms

    def _point(self, lam: float, check: _Check, steps: int, seconds: float) -> PathPoint:
        p, s = self.problem, self.state
        W_std, b_std = p.to_public(s.W, s.b)
        W, b = (t.to(p.design.dtype) for t in raw_weights(W_std, b_std, p.design.mean.double(),
                                                              p.design.std.double()))
        correct = p.design.reducer.scalar(p.family.correct(s.Z, p.Y).sum()) if p.family.is_classification else math.nan
        n_total = p.design.reducer.scalar(torch.tensor(float(p.design.n_rows)))
        support = W != 0
        per_class = support.sum(1).tolist()
        metrics = {
            "lam": lam, "nnz": int(support.sum()), "n_features": int(support.any(0).sum()),
            "features_per_class": per_class, "objective": check.objective, "train_loss": check.loss,
            "train_accuracy": correct / n_total if p.family.is_classification else None,
            "gap": check.gap / max(abs(check.objective), 1e-300), "iterations": steps, "seconds": seconds,
        }
        if self.val is not None:
            metrics.update(validation_scores(p, W, b, *self.val))
        return PathPoint.from_dense(lam, W, b, metrics)
