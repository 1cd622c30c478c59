"""``fit_path``: the elastic-net regularization path of a linear head.

Along a decreasing grid of lambdas, with warm starts: strong-rule screening
proposes a working set, proximal Newton solves the problem on it, one pass over
all features checks the KKT conditions (violators join the working set) and
computes the duality gap, which must fall below ``tol`` relative to the objective.
Cost tracks the active features, not all of them.

Example:
    >>> path = fit_path(X, y, family="multinomial", alpha=0.99, n_lambdas=50, X_val=Xv, y_val=yv)
    >>> path[-1].metrics["gap"] <= 1e-6
    True
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .bound_cd import FeatureGram, bound_solve
from .design import Design
from .distributed import Reducer
from .newton import Iterate, newton_solve, polish_bias
from .path import PathPoint, RegularizationPath
from .penalty import ElasticNet
from .problem import Problem
from .refit import Refitter, raw_weights, validation_scores
from .screening import golden_min, working_set
from .validation import check_features, check_options, check_targets

logger = logging.getLogger(__name__)

_MAX_ROUNDS = 20
_BOUND_INNER = 1e-2  # the bound solver's inner tolerance, relative to the gap's (its steps converge linearly)
# method="auto": the bound solver from this many classes. Measured on the loaded 2-core box, 10 and 6 lambdas
# (deep_features, alpha 0.99): k=100 (n=5000, d=128, to 1e-2 lam_max) Newton 114 s, bound 247 s; k=300
# (n=4000, d=64, to 1e-1 lam_max) Newton 41 s, bound 53 s: Newton's lead shrinks with k (its class blocks
# grow with k, the bound solver's passes only linearly), the switch extrapolated to about 500 classes;
# `bench_solver.py --proxy crossover` (and k=1000) measures it on a quiet machine.
BOUND_MIN_CLASSES = 500
BOUND_MAX_FEATURES = 8192  # ... and up to this many features (its Gram is 8 (d+1)^2 bytes)
_MAX_STEPS = 100  # Newton steps per point before giving up on tol (reported as converged=False)


def fit_path(X, y, family: str = "multinomial", alpha: float = 0.99, lambdas=None, n_lambdas: int = 100,
             lambda_min_ratio: float = 1e-3, X_val=None, y_val=None, sample_weight=None, group: bool = False,
             *, tol: float = 1e-6, n_classes: int | None = None, device=None, dtype=None,
             chunk_rows: int | None = None, distributed: bool | None = None, max_features: int | None = None,
             stop_at_features_per_class: int | None = None, progress: bool = False,
             standardize: bool = True, method: str = "auto") -> RegularizationPath:
    """Fit the path of ``mean loss(W x + b, y) + lam * (alpha |W|_1 + (1 - alpha)/2 |W|_F^2)``.

    With ``standardize=True`` (the default) ``x`` is the standardized feature vector and the
    penalty is on the standardized weights: glm_saga's objective on standardized features (what
    the paper's code feeds it). ``standardize=False`` penalizes the raw-space weights instead.

    Args:
        X: (n, d) features: a torch tensor, NumPy array or memory-mapped array. Standardized
            inside (float64 statistics, at any scale); returned weights take raw features.
            Constant columns get no weight and are named in a warning; columns beyond what
            ``dtype`` can hold (magnitudes above ~4e31 or spreads below ~1e-31 in float32) raise
            a ValueError saying to rescale them.
        y: class indices (multinomial), (n, k) 0/1 labels (multilabel) or targets (gaussian).
        family: ``"multinomial"``, ``"multilabel"`` or ``"gaussian"``.
        alpha: the L1 share of the penalty, in (0, 1].
        lambdas: a decreasing grid (standardized problem); default ``n_lambdas`` points
            from the exact ``lam_max`` down to ``lambda_min_ratio * lam_max``.
        X_val, y_val: validation data, scored at every point.
        sample_weight: non-negative row weights.
        group: penalize each feature's weights across classes as one group.
        tol: stop each point when the duality gap is below ``tol`` times the objective. The gap
            is computed at a dual point feasible for the unpenalized bias, so it bounds the
            suboptimality; it is never clipped: a negative one beyond rounding (1e-12 of the
            objective with float64 predictions, 1e-8 with float32 ones) is reported as it is, with
            ``converged=False`` and a RuntimeWarning.
        device, dtype: where and in which precision to solve (default: X's device, float32).
        chunk_rows: stream X in chunks of this many rows (features larger than memory).
        distributed: reduce across processes (``None``: when a process group is running);
            each process then passes its own shard of the rows.
        max_features: stop the path once more than this many features are used.
        stop_at_features_per_class: stop at the first point where every class uses at least
            this many features (all ``select(features_per_class=k)`` needs, for ``k`` up to it).
        progress: show a progress bar over the path. An early stop (``max_features``,
            ``stop_at_features_per_class``) closes it at the point reached with the reason in its
            description; the stop is also logged (INFO, logger ``hf_sparse.solver.fit``) and kept in
            ``path.info["stop_reason"]`` (None when the whole grid was solved).
        standardize: solve on standardized columns (penalty on standardized weights; returned
            weights still take raw features); ``False``: the raw-space objective, columns as given.
        method: ``"newton"`` (proximal Newton on a working set: exact Hessians, best for few
            classes), ``"bound"`` (the large-k solver of :mod:`.bound_cd`: one Gram of the
            features, a class-coupling model, vectorized block coordinate descent; multinomial
            without ``group`` only) or ``"auto"`` (``"bound"`` for multinomial heads with at least
            :data:`BOUND_MIN_CLASSES` classes and at most :data:`BOUND_MAX_FEATURES` features).

    Memory (bytes, one process, in-memory design; ``b``: bytes of ``dtype``, ``z``: bytes of the
    predictions, 8 on the CPU and ``b`` on a GPU; ``m``: the working set's features):

        peak ~ n d b + n m b + n k (b + 10 z) + 8 (d+1)^2        (method="bound"; no Gram for "newton")

    the standardized copy of X, the working set's gathered columns, the one-hot targets (in
    ``dtype``), the predictions ``Z`` plus up to nine ``n x k`` temporaries of the duality-gap
    check (probabilities, residual, loss terms; the feasible dual point is made row chunk by row
    chunk), and the Gram. On a GPU the ``n x k`` arrays are in ``dtype`` (row sums accumulate in
    float64 without float64 copies). Example: n=20,000, d=768,
    k=1000 on the CPU, float32: 61 MB + 61 MB + 1.7 GB + 5 MB. ``tests/test_solver_large_k.py``
    measures it. Proximal Newton adds its coupled Hessian (up to 128 MB) or class blocks.
    """
    reducer = Reducer.auto(distributed)
    n, d = check_features(X)
    y_t, k = check_targets(y, n, family, reducer, n_classes)
    w = check_options(alpha, sample_weight, n, lambdas, n_lambdas, lambda_min_ratio, tol)
    if device is None:
        device = X.device if isinstance(X, torch.Tensor) else "cpu"
    dtype = dtype or torch.float32
    val = None
    if X_val is not None or y_val is not None:
        if X_val is None or y_val is None:
            raise ValueError("Pass both X_val and y_val, or neither.")
        n_val, d_val = check_features(X_val, "X_val")
        if d_val != d:
            raise ValueError(f"X_val has {d_val} features but X has {d}.")
        yv, _ = check_targets(y_val, n_val, family, Reducer(), k if family == "multinomial" else None, "y_val")
        val = (torch.as_tensor(np.asarray(X_val)) if not isinstance(X_val, torch.Tensor) else X_val, yv)

    started = time.perf_counter()
    if method not in ("auto", "newton", "bound"):
        raise ValueError(f"method must be 'auto', 'newton' or 'bound'; got {method!r}.")
    if method == "bound" and (family != "multinomial" or group or k < 3):
        raise ValueError("method='bound' solves multinomial heads of 3 or more classes without group=True; "
                         f"got family={family!r}, group={group}, {k} classes. Use method='newton' (or 'auto').")
    design = Design.build(X, device=device, dtype=dtype, reducer=reducer, chunk_rows=chunk_rows,
                          standardize=standardize)
    problem = Problem.build(design, y_t, family=family, n_outputs=k, sample_weight=w)
    if method == "auto":
        method = ("bound" if family == "multinomial" and not group and k >= BOUND_MIN_CLASSES
                  and d <= BOUND_MAX_FEATURES else "newton")
    fitter = _PathFitter(problem, alpha=alpha, group=group, tol=tol, val=val, method=method)

    lam_max = fitter.lam_max()
    if lambdas is None:
        grid = lam_max * np.logspace(0, math.log10(lambda_min_ratio), int(n_lambdas))
    else:
        grid = torch.as_tensor(lambdas, dtype=torch.float64).flatten().numpy()
    points = []
    stop_reason = None
    bar = tqdm(total=len(grid), desc="lambda path", unit="lam", disable=not progress or reducer.rank != 0)
    for lam in grid:
        point = fitter.solve(float(lam))
        points.append(point)
        bar.update(1)
        m = point.metrics
        score = m.get("val_accuracy", m["train_accuracy"])
        bar.set_postfix(features=m["n_features"], **({"acc": f"{score:.3f}"} if score is not None else {}))
        stop_reason = _early_stop(m, max_features, stop_at_features_per_class)
        if stop_reason is not None and len(points) < len(grid):
            break
        stop_reason = None
    if stop_reason is not None:
        where = f"lambda {len(points)} of {len(grid)}"
        bar.set_description(f"lambda path: stopped at {where}, {stop_reason['short']}")
        bar.total = bar.n  # complete where it stopped, not frozen part-way
        bar.refresh()
        if reducer.rank == 0:
            logger.info("The lambda path stopped at %s (lambda %.4g) because %s; the remaining %d lambdas are not "
                        "needed.", where, float(grid[len(points) - 1]), stop_reason["why"], len(grid) - len(points))
    bar.close()
    if fitter.negative_gaps:
        worst = min(g for _, g in fitter.negative_gaps)
        warnings.warn(
            f"The duality gap came out negative at {len(fitter.negative_gaps)} of {len(points)} points "
            f"(lambdas {[f'{lam:.4g}' for lam, _ in fitter.negative_gaps]}; as low as {worst:.3g} of the "
            f"objective), beyond the rounding floor of {fitter.gap_floor:g}: their certificate failed "
            "and they are reported converged=False. Fit with dtype=torch.float64 (on the CPU) for a "
            "certified path.", RuntimeWarning, stacklevel=2)
    info = {"n_rows": int(reducer.sum(torch.tensor([float(n)], dtype=torch.float64))[0]), "n_features": d,
            "n_outputs": k, "dtype": str(dtype).replace("torch.", ""), "device": str(device),
            "tol": tol, "world_size": reducer.world_size, "seconds": time.perf_counter() - started,
            "method": method, "standardize": bool(standardize), "n_lambdas": int(len(grid)),
            "stop_reason": None if stop_reason is None else stop_reason["why"]}
    return RegularizationPath(points, family=family, alpha=alpha, group=group, mean=design.mean.to(dtype),
                              std=design.std.to(dtype), lam_max=lam_max, info=info,
                              refit=Refitter(problem, alpha=alpha, group=group, tol=tol, val=val))


def _early_stop(metrics: dict, max_features: int | None, stop_at_features_per_class: int | None) -> dict | None:
    """Why the path stops after a point with these metrics (None: it goes on): {"short": for the bar, "why": for
    the log and ``path.info["stop_reason"]``}."""
    if max_features is not None and metrics["n_features"] > max_features:
        return {"short": f"more than {max_features} features",
                "why": f"it uses {metrics['n_features']} features, more than max_features={max_features}"}
    per_class = metrics["features_per_class"]
    if stop_at_features_per_class is not None and min(per_class) >= stop_at_features_per_class:
        return {"short": f"target of {stop_at_features_per_class} features per class reached",
                "why": f"the target of {stop_at_features_per_class} features per class was reached (every class "
                       f"uses at least {stop_at_features_per_class}: {list(per_class)})"}
    return None


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
        self.prev_lam: float | None = None
        self.prev_gradient: torch.Tensor | None = None
        self.negative_gaps: list[tuple[float, float]] = []  # (lam, relative gap) below the rounding floor
        # the gap's rounding floor, relative to the objective: with float64 predictions (the CPU)
        # the gap is computed to about 1e-12; with float32 ones (a GPU) the dual point's entries,
        # and so its feasibility, hold only float32's digits (a negative gap of a few 1e-9 seen)
        self.gap_floor = 1e-12 if self.state.Z.dtype == torch.float64 else 1e-8

    # -- the start of the path
    def lam_max(self) -> float:
        """Smallest lambda with all weights zero: the largest gradient at W = 0, optimal bias."""
        p = self.problem
        k = p.internal_outputs
        mean_Y = p.design.reducer.sum((p.row_weight[:, None] * p.Y).sum(0, dtype=torch.float64))
        b0 = p.family.intercept_at_zero(mean_Y).to(p.design.dtype)
        # the closed form is exact for the mean of y; polish it with Newton steps on the bias alone
        self.state.b = b0.double()
        self.state.Z = torch.zeros_like(self.state.Z) + b0
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
        # strong rule (Tibshirani et al. 2012) plus everything already active
        working = working_set(pen.scores(self.prev_gradient), 2 * pen.l1 - prev_l1, self.state.W != 0,
                               limit=self.method == "newton")
        self.state.refresh(p, torch.nonzero(working.any(0)).flatten())  # the block Newton gathers next
        steps, rounds, tol = 0, 0, self.tol
        previous, reuse = math.inf, True
        while True:
            rounds += 1
            cols = torch.nonzero(working.any(0)).flatten()
            inner_tol = tol * (_BOUND_INNER if self.method == "bound" else 1e-3)
            steps += self._inner(p, self.state, pen, cols, working[:, cols], tol=inner_tol, reuse_hessian=reuse)
            check = self._check(pen)
            violators = (pen.scores(check.gradient) > pen.l1 * (1 + 1e-6)) & ~working
            if self.group:
                violators &= self.state.W == 0
            reuse = True  # the last Hessian, grown to any new coordinates
            if bool(violators.any()):
                working |= violators
            elif check.gap <= self.tol * abs(check.objective) or rounds >= _MAX_ROUNDS or steps >= _MAX_STEPS:
                break
            elif self.state.stale_model:
                reuse, tol = False, tol * 0.1  # the round ended on an older Hessian: a fresh one, further
            elif previous - check.objective <= self._stall * abs(check.objective):
                # The last round gained less than a hundredth of the tolerance: at this
                # precision the gap is what it can be (it has a floor in float32). The bound
                # solver's linear steps leave the gradient (so the gap) loose long after the
                # objective has settled: it goes on to the float64 floor.
                break
            else:
                tol *= 0.1
            previous = check.objective
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

    def _inner(self, *args, **kwargs) -> int:
        """The working-set solver of this path: proximal Newton, or the large-k bound solver."""
        if self.method == "bound":
            return bound_solve(*args, gram=self.gram, **kwargs)
        return newton_solve(*args, **kwargs)

    def _check(self, pen: ElasticNet, polish: bool = True) -> _Check:
        """Full gradient, objective and duality gap (not clipped: see :meth:`solve`).

        The dual point is the residual, made feasible for the unpenalized bias (its weighted
        rows must sum to zero per output): :meth:`~.families.Family.feasible_dual` mixes a
        share ``s`` of it into a constant, exactly (``D' = (1 - s) D - s Y + v``, whose ``X^T``
        product follows from ``X^T R`` and :meth:`~.problem.Problem.dual_data` without another
        pass over the features). To first order that removes the bias term of the Fenchel-Young
        gap; where the gap is still above ``tol`` and ``s`` is not negligible, Newton steps on the
        bias alone (:func:`~.newton.polish_bias`, ``n k`` each) shrink ``s`` and the gap is
        computed again.
        The gap at ``D`` itself comes from the Fenchel-Young identity (sums of small terms, no
        cancellation of the loss) and the change to ``D'`` is added. The dual point is then
        scaled by ``t`` in (0, 1]: with the small L2 weight of alpha near 1, ``t = 1`` is a loose
        certificate, so ``t`` is tuned by a golden-section search (the dual is concave in ``t``),
        often tightening the gap by an order of magnitude.
        """
        p, s = self.problem, self.state
        reducer = p.design.reducer
        mean_Y, a, B = p.dual_data()
        D, R, r, M, shift = self._dual_point()
        loss = p.loss(s.Z)
        penalty = float(pen.value(s.W))
        G = p.design.gradient(R)
        objective = loss + penalty
        bias_term = float((s.b.double() * r).sum())
        conj_G = float(pen.conjugate(-G))
        gap_at_one = float((s.W.double() * G).sum()) + bias_term + penalty + conj_G
        profile_D = p.family.conjugate_profile(D, p.Y, p.row_weight)
        conj_one = reducer.scalar(profile_D(1.0))
        # the feasible dual point and its X^T product
        mix, v = shift
        keep, shift_Y, add = (1 - mix).to(D), mix.to(D), v.to(D)

        def Dp(start: int, stop: int) -> torch.Tensor:  # the feasible dual point's rows, made on demand
            rows = D[start:stop] if M is None else D[start:stop] - M[start:stop]
            return keep * rows - shift_Y * p.Y[start:stop].to(D) + add
        Gp = G if M is None else G - p.design.gradient(M * p.row_weight[:, None])
        Gp = (1 - mix)[:, None] * Gp - mix[:, None] * B + v[:, None] * a[None, :]
        profile = p.family.conjugate_profile(Dp, p.Y, p.row_weight)

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
        if polish and M is None and best > tol_abs:
            # The mixing removes the Fenchel-Young gap's bias term to first order; what it costs
            # beyond that (up to about s log k, far less where no probability is below s) pushed
            # the gap over tol where, without the bias term, it would be below: polish the bias
            # and look again (cheaper than another Newton round).
            without_bias = (gap_at_one - bias_term - conj_one + reducer.scalar(profile_D(t_best))
                            + float(pen.conjugate(-t_best * G)) - conj_G)
            if without_bias > tol_abs:
                return _Check(G, objective, loss, best)
            limit = 1e-2 * tol_abs / max(math.log(max(p.internal_outputs, 2)), 1.0)

            def small(r_now: torch.Tensor) -> bool:
                return float(p.family.feasible_dual(r_now, mean_Y)[0].max()) <= limit

            movable = (mean_Y > 0) & ((mean_Y < 1) | (p.family.name == "multinomial"))
            if float(mix.max()) > limit and polish_bias(p, s, movable, small) is not None:
                return self._check(pen, polish=False)
        return _Check(G, objective, loss, best)

    def _dual_point(self):
        """The residual ``D`` (and ``R = w D``), its weighted column sums ``r``, and the changes that
        make it dual-feasible: ``M`` for outputs without examples, ``(s, v)`` for the rest."""
        p, s = self.problem, self.state
        reducer = p.design.reducer
        mean_Y = p.dual_data()[0]
        D = p.family.gradient(s.Z, p.Y)
        R = D * p.row_weight[:, None]
        r = reducer.sum(R.sum(0, dtype=torch.float64))
        M = p.family.empty_class_shift(D, p.Y, mean_Y)
        r_left = r if M is None else r - reducer.sum((M * p.row_weight[:, None]).sum(0, dtype=torch.float64))
        return D, R, r, M, p.family.feasible_dual(r_left, mean_Y)

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
