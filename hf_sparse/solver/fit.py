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

The state kept between the points of the path (the iterate, the screening gradient) and the solve of one point
are in :mod:`.path_fitter`; this module runs the grid, its progress bar and early stops, and assembles the path.
"""

from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from .design import Design
from .distributed import Reducer
from .path import RegularizationPath
from .path_fitter import _PathFitter
from .problem import Problem
from .refit import Refitter
from .validation import check_features, check_options, check_targets

__all__ = ["BLOCK_MIN_CLASSES", "auto_method", "fit_path"]

logger = logging.getLogger(__name__)

# method="auto": the class-block Newton (solver/block_newton.py) from this many classes, on every device; the bound
# solver only when asked for. Measured 2026-11-26, one process each (deep_features, alpha 0.99, to 1e-2 lam_max):
# n=5000, d=256, k=100, 10 lambdas: newton 10.0 s / 206 steps, block 3.8-3.9 s / 196 steps, 10/10 certified in
# both; the proxy (n=20000, d=768, k=100, 25 lambdas): newton 37.1 s, block 39.7 s (a tie), 23/25 certified
# in both. At 1,000 classes block won on the CPU (2-core box: k=1000 proxy, n=20000, d=512, 25 lambdas, block 551 s
# / 25 of 25 certified, bound 904 s / 20 of 25) and on one H200 at the ImageNet shape (1.28M x 2048, 100 lambdas to
# 1e-3 lam_max, same process, 2026-11-26/27: the first 30 lambdas in 59.9 s / 111 steps against 89.4 s / 300+
# steps, every point certified in both; benchmarks/RESULTS.md "GPU").
BLOCK_MIN_CLASSES = 100


def fit_path(X, y, family: str = "multinomial", alpha: float = 0.99, lambdas=None, n_lambdas: int = 100,
             lambda_min_ratio: float = 1e-3, X_val=None, y_val=None, sample_weight=None, group: bool = False,
             *, tol: float = 1e-6, n_classes: int | None = None, device=None, dtype=None,
             chunk_rows: int | None = None, distributed: bool | None = None, max_features: int | None = None,
             stop_at_features_per_class: int | None = None, progress: bool = False,
             standardize: bool = True, method: str = "auto", copy_X: bool = True) -> RegularizationPath:
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
            ``converged=False`` and a RuntimeWarning. A point that stops above ``tol`` (its step or round
            limit) is reported ``converged=False`` with a RuntimeWarning too.
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
            without ``group`` only), ``"block"`` (proximal Newton on class-diagonal blocks plus
            shared-feature moves at every size, :mod:`.block_newton`, multinomial without ``group``;
            ``"newton"`` switches to it past 2,000 working coordinates) or ``"auto"``
            (:func:`auto_method`: ``"block"`` from :data:`BLOCK_MIN_CLASSES` classes on every device, it
            beat ``"bound"`` on a CPU and on a GPU at 1,000 classes; else ``"newton"``).
        copy_X: ``False`` lets the solver standardize X in place where X already is a contiguous tensor on
            ``device`` in ``dtype`` (scikit-learn's ``copy_X=False``): X is overwritten with its standardized
            columns, and memory holds one copy of the features, not two (10.5 GB less at the ImageNet shape).
            Anywhere else a copy is made and X is left as it was.

    Memory (bytes, one process, in-memory design; ``b``: bytes of ``dtype``; ``m``: the working set's
    features; ``E``: the entries of one row chunk of ``n x k`` work, ``min(n k, 2^22)`` on a CPU and
    ``min(n k, 2^26)`` on a GPU, :mod:`.chunking`):

        peak ~ n d b + n m b + n k (b + 17) + 36 E + 8 (d+1)^2     (method="bound"; no Gram for "newton")
        peak ~ n d b + n m b + n k (b + 25) + 32 E + 16 k p^2       (method="block" on a CPU)
        peak ~ n d b + n m b + 17 n k + 48 E                        (method="block" on a GPU)

    the standardized copy of X, the working set's gathered columns, the one-hot targets (one byte each), the
    float64 predictions ``Z`` and one more float64 ``n x k`` array (the duality-gap check's dual point, a step's
    probabilities; the bound method's change of predictions in ``dtype`` beside them), a few float64 temporaries
    of one row chunk (every ``n x k`` loop runs in row chunks and its steps in place where they can), and the
    Gram. The block method on a GPU makes its residual, curvatures, blocks and line-search points in row chunks.
    The block method on a CPU keeps, for the whole path, the probabilities, change of predictions (float64, also
    the gap check's dual point) and row curvatures (``dtype``) beside ``Z`` and the targets (a fresh ``n x k``
    array a step cost as much in page faults as the pass that fills it), plus its ``k`` class blocks of up to ``p``
    slots, kept between the rounds at one lambda (growing them holds the old blocks beside the new); where its
    gradient is a dense product (over 14% of the working set's class-feature pairs free) a float64 residual too,
    during a call (``n k (b + 33)``).
    The caller's own X comes on top (with ``copy_X=False`` it is the standardized copy). Example: n=20,000,
    d=768, k=1000 on the CPU, float32, block: 61 MB + 61 MB + 580 MB + 134 MB + 10 MB; the ImageNet shape on a GPU
    (n=1.28M, d=2048, k=1000), block: 10.5 + 21.8 + 3.2 GB + 5.1 GB per 1,000 active features: 40.6 GB at
    m=1,000, 46 GB with all 2,048 (56.5 GB with your X; 66.6 GB, 62.5 GiB, measured with the code before
    2026-11-27 at m=1,936, whose softmax held one more ``n x k`` float64 array at the peak and whose targets were
    float32). ``tests/test_solver_large_k.py`` measures it with row chunks of 2^18 entries (a GPU's share of the
    rows): 1.00-1.06 of the formula for bound at two CPU shapes, block 1.01 at one, and its GPU code, run on the
    CPU, 0.98-1.00 at two. Proximal Newton adds its coupled Hessian (up to 32 MB: 2,000 coordinates) or class
    blocks (kept between rounds with the curvatures they were formed from: ``n k b`` more); with
    ``method="newton"``, a point the class blocks leave uncertified after 50 steps goes on with the
    coupled Hessian up to 6,000 coordinates (288 MB, and its ``n x M`` float32 rows in pieces of up to 256 MB).
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
    if method not in ("auto", "newton", "bound", "block"):
        raise ValueError(f"method must be 'auto', 'newton', 'block' or 'bound'; got {method!r}.")
    if method in ("bound", "block") and (family != "multinomial" or group or k < 3):
        raise ValueError(f"method={method!r} solves multinomial heads of 3 or more classes without group=True; "
                         f"got family={family!r}, group={group}, {k} classes. Use method='newton' (or 'auto').")
    design = Design.build(X, device=device, dtype=dtype, reducer=reducer, chunk_rows=chunk_rows,
                          standardize=standardize, overwrite=not copy_X and X_val is not X)
    problem = Problem.build(design, y_t, family=family, n_outputs=k, sample_weight=w)
    if method == "auto":
        method = auto_method(family, group, k)
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
    failed = {lam for lam, _ in fitter.negative_gaps}
    unconverged = [p.metrics for p in points if not p.metrics["converged"] and p.metrics["lam"] not in failed]
    if unconverged:
        lams = [f"{m['lam']:.4g}" for m in unconverged]
        warnings.warn(
            f"{len(unconverged)} of {len(points)} points stopped above the duality-gap tolerance {tol:g} (lambdas "
            f"{lams}; relative gaps up to {max(m['gap'] for m in unconverged):.3g}):"
            " their weights are the solver's best, not certified, and they are reported converged=False. The densest"
            " points are the hardest: a larger lambda_min_ratio, max_features or a looser tol avoids them.",
            RuntimeWarning, stacklevel=2)
    info = {"n_rows": int(reducer.sum(torch.tensor([float(n)], dtype=torch.float64))[0]), "n_features": d,
            "n_outputs": k, "dtype": str(dtype).replace("torch.", ""), "device": str(device),
            "tol": tol, "world_size": reducer.world_size, "seconds": time.perf_counter() - started,
            "method": method, "standardize": bool(standardize), "n_lambdas": int(len(grid)),
            "stop_reason": None if stop_reason is None else stop_reason["why"]}
    return RegularizationPath(points, family=family, alpha=alpha, group=group, mean=design.mean.to(dtype),
                              std=design.std.to(dtype), lam_max=lam_max, info=info,
                              refit=Refitter(problem, alpha=alpha, group=group, tol=tol, val=val))


def auto_method(family: str, group: bool, n_classes: int) -> str:
    """What ``method="auto"`` solves with (measurements beside :data:`BLOCK_MIN_CLASSES`): the class blocks for
    softmax heads of many classes without a group penalty, on a CPU and a GPU alike, else proximal Newton.

    Example:
        >>> auto_method("multinomial", False, 1000)
        'block'
        >>> auto_method("multinomial", False, 10)
        'newton'
    """
    many = family == "multinomial" and not group
    return "block" if many and n_classes >= BLOCK_MIN_CLASSES else "newton"


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
