"""Proximal Newton steps on a working set of features.

Each step forms the Hessian of the loss on the working set (exact per output for logistic, Gaussian and two-class
softmax; for softmax over more classes the full coupled Hessian up to 2,000 coordinates, 600 from 10 classes on,
beyond that its class-diagonal blocks with shared-feature moves, :mod:`.block_newton`), solves the penalized
quadratic model by coordinate descent (the coupled one jumping to its minimizer on the signs coordinate descent
finds where that converges slowly, :mod:`.sign_solve`), and takes the step with a backtracking line search on the
true objective.
The softmax Hessian is the costly part (``n M^2``): kept while it serves, grown with the working set.

Example:
    >>> state = Iterate.zeros(problem)
    >>> steps = newton_solve(problem, state, penalty, cols, free, tol=1e-9)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .block_newton import block_newton_solve, gap_out_of_reach
from .class_blocks import ClassBlocks
from .pair_kernels import restricted_products
from .coordinate_descent import coupled_cd, elastic_net_cd, group_elastic_net_cd
from .penalty import ElasticNet
from .problem import Problem
from .sign_solve import sign_solve
from .softmax_hessian import SoftmaxHessian

_ARMIJO = 1e-4
_MAX_HALVINGS = 40
_MAX_SWEEPS = 2_000
#: coordinate descent on a model of M coordinates sweeps up to this many multiply-adds (a sweep costs up to M^2) if
#: that is more than _MAX_SWEEPS sweeps: on ill-conditioned features (700 MiniLM sentence embeddings, 384 features,
#: the selected columns' Gram at a condition number near 1e8) CD needs 10^4-10^5 sweeps, and capped, its inexact
#: model steps took 120-130 Newton steps a point and left 8 of 100 points uncertified
_SWEEP_WORK = 2e8
_SLOW_RATE = 0.25  # keep an older Hessian while each step's predicted decrease is below this share of the last
# the full softmax Hessian up to this many coordinates (32 MB), class blocks with shared moves beyond: at 10 classes
# (n=20,000, d=768, 25 lambdas) 2,000 took 8.8 s against 14.6 at the former 4,000 on shared48_noisy and 17.6 against
# 22.9 on lowrank_noisy (forming an n M^2 Hessian of 2,000-4,000 coordinates cost 1-1.4 s a step), at 30 classes
# 3.2 / 4.4 s against 6.1 / 6.6; 1,500 and 2,500 were no better; paths that stay below it are unchanged
_COUPLED_MAX_COORDS = 2_000
#: ... from _MANY_CLASSES classes on (no groups) this many, the class blocks being kept between rounds (kept_blocks).
#: Same shape, seed 1, 2,000 against 600: at 10 classes lowrank_noisy 7.28 / 6.55 s, shared48_noisy 5.23 / 3.87,
#: deep 3.34 / 3.20, highrank 4.42 / 3.84, MNIST's pixels 4.4 / 3.7; at 30 lowrank_noisy 14.6 / 12.3, deep 8.0 / 6.9.
#: Not below (the blocks miss more coupling between fewer classes): at 3 classes lowrank_noisy 3.2 / 5.5 s, at 5
#: deep 1.9 / 2.3. 300 was no better at 10 classes; 6-9 classes not measured
_COUPLED_MAX_COORDS_MANY, _MANY_CLASSES = 600, 10
_CLASS_LOOP = False  # True: the former large-k branch (class blocks one class at a time, no shared moves; benchmarks)


def _max_sweeps(size: int) -> int:
    """The sweep limit for a coordinate-descent model of ``size`` coordinates (see :data:`_SWEEP_WORK`)."""
    return max(_MAX_SWEEPS, int(_SWEEP_WORK // max(size, 1) ** 2))


def coupled_limit(classes: int, group: bool) -> int:
    """The most working-set coordinates the coupled Hessian takes by default (see :data:`_COUPLED_MAX_COORDS`)."""
    few = group or classes < _MANY_CLASSES
    return _COUPLED_MAX_COORDS if few else min(_COUPLED_MAX_COORDS, _COUPLED_MAX_COORDS_MANY)


def uses_class_blocks(problem: Problem, group: bool, free: torch.Tensor, max_coupled: int | None = None,
                      coupled: bool = True) -> bool:
    """Whether :func:`newton_solve` hands this working set (``free``: (k, m) or (k, d)) to the class blocks of
    :mod:`.block_newton`: softmax over 3+ classes without groups, past ``max_coupled`` coordinates (default
    :func:`coupled_limit`) or at any size with ``coupled=False``."""
    max_coupled = coupled_limit(free.shape[0], group) if max_coupled is None else max_coupled
    return (problem.family.name == "multinomial" and not group and free.shape[0] >= 3 and not _CLASS_LOOP
            and (not coupled or int(free.sum()) + free.shape[0] > max_coupled))


@dataclass
class Iterate:
    """The internal (standardized) weights, bias and this process's linear predictions.

    Weights and predictions ``Z`` are kept in float64 whatever the design's precision and
    device: near the optimum a step changes ``Z`` by less than float32 can resolve, so with
    float32 predictions line searches fail (on a GPU at the ImageNet shape, 11 loss
    evaluations per step instead of one) and the duality gap stalls above the tolerance.
    What a GPU cannot afford is ``n x k`` float64 *temporaries* (10 GB each at the ImageNet
    shape): losses, line-search trials and residuals are made in row chunks, and besides ``Z``
    only the gap check's dual point is held whole (:mod:`.chunking`).
    """

    W: torch.Tensor  # (k, d) float64
    b: torch.Tensor  # (k,) float64
    Z: torch.Tensor  # (n_local, k)
    hessian: SoftmaxHessian = field(default_factory=SoftmaxHessian)  # kept between calls (3+ classes)
    class_blocks: object = None  # the block solver's last blocks (:class:`~.kept_blocks.KeptBlocks`)
    stale_model: bool = False  # whether the last Newton model used an older Hessian
    scratch: dict = field(default_factory=dict)  # n x k work arrays kept for the path (see :meth:`array`)
    keep_arrays: bool = False  # whether :meth:`array` keeps them (the block method's path) or makes fresh ones
    bias_hessian: tuple | None = None  # (outputs, their (k, k) Hessian, its Cholesky factor): the next polish's start

    def array(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """An ``n x k`` array of ``Z``'s shape (contents undefined), kept under ``name`` for the whole path where
        ``keep_arrays``: a fresh one per use costs its page faults (at 20,000 x 1,000, 40 ms for 160 MB, as much as
        the pass that fills it). The block solver's steps and the gap check's dual point use them (the block
        method's memory formula counts them; the other methods' peaks would grow by them)."""
        dtype = dtype or self.Z.dtype
        if not self.keep_arrays:
            return torch.empty(self.Z.shape, dtype=dtype, device=self.Z.device)
        kept = self.scratch.get(name)
        if kept is None or kept.shape != self.Z.shape or kept.dtype != dtype:
            kept = self.scratch[name] = torch.empty(self.Z.shape, dtype=dtype, device=self.Z.device)
        return kept

    @classmethod
    def zeros(cls, problem: Problem) -> "Iterate":
        d = problem.design
        k = problem.internal_outputs
        W = torch.zeros(k, d.n_features, device=d.device, dtype=torch.float64)
        b = torch.zeros(k, device=d.device, dtype=torch.float64)
        return cls(W, b, torch.zeros(d.n_rows, k, device=d.device, dtype=prediction_dtype(d)))

    def refresh(self, problem: Problem, cols: torch.Tensor | None = None) -> None:
        """Recompute ``Z`` from scratch (incremental updates drift in float32).

        ``cols`` must hold every nonzero weight's column (default: exactly those).
        """
        if cols is None:
            cols = torch.nonzero(self.W.abs().sum(0) > 0).flatten()
        dtype = problem.design.dtype
        block = problem.design.block(cols)
        W = self.W[:, cols]
        pattern = restricted_products(block.data, W != 0) if self.Z.dtype == torch.float64 else None
        if pattern is not None and pattern.pays("matvec"):  # the nonzero weights' products only, summed in float64
            pattern.matvec(block.data, W, out=self.Z, bias=self.b)
        else:
            self.Z.copy_(block.matvec(W.to(dtype)))  # in place: no second n x k
            self.Z += self.b.to(self.Z.dtype)


def prediction_dtype(design) -> torch.dtype:
    """float64 for ``Z`` on every device (see :class:`Iterate`); a test switches it to float32."""
    return torch.float64


def newton_solve(problem: Problem, state: Iterate, penalty: ElasticNet, cols: torch.Tensor,
                 free: torch.Tensor, *, tol: float, max_steps: int = 50, reuse_hessian: bool = False,
                 coupled: bool = True, max_coupled: int | None = None, gap_tol: float | None = None) -> int:
    """Minimize the objective over the weights ``W[:, cols]`` where ``free`` (k, m) allows.

    Stops when the model's predicted decrease falls below ``tol`` times the
    objective, or the line search cannot make progress (float noise). Updates
    ``state`` in place and returns the number of Newton steps taken.

    The Hessian is formed once and kept while full steps are taken and converge fast (it
    changes little near the optimum); when that older model sees nothing left to gain,
    the caller's duality-gap check decides, and calls again (with a fresh Hessian) if it
    must. ``reuse_hessian``: start from the softmax Hessian of the last call, grown to the
    new coordinates (:class:`~.softmax_hessian.SoftmaxHessian`). Softmax over 3+ classes beyond
    ``max_coupled`` coordinates (default :func:`coupled_limit`; or at any size with ``coupled=False``) goes to
    :func:`~.block_newton.block_newton_solve`: class-diagonal blocks plus shared-feature moves. ``gap_tol``: the
    path's tolerance, as there: a model that sees nothing left still steps while the penalty's conjugate term keeps
    the gap out of reach (at CIFAR-10's densest points the coupled model stopped at 1e-10 of the objective and gaps
    of 3.8e-6).
    """
    if uses_class_blocks(problem, penalty.group, free, max_coupled, coupled):
        return block_newton_solve(problem, state, penalty, cols, free, tol=tol, max_steps=max_steps, gap_tol=gap_tol)
    max_coupled = coupled_limit(free.shape[0], penalty.group) if max_coupled is None else max_coupled
    block = problem.design.block(cols)
    reducer = problem.design.reducer
    W_set = state.W[:, cols].clone()
    objective = problem.loss(state.Z) + float(penalty.value(W_set))
    free_np = free.cpu().numpy()
    steps = 0
    model, reuse, last_decrease, looks, gradient = None, reuse_hessian, math.inf, 0, None
    for steps in range(1, max_steps + 1):
        if gradient is None:  # (at a point where a look re-solves the model, the one there)
            R = problem.residual(state.Z)
            gradient = block.rmatvec(R), reducer.sum(R.sum(0, dtype=torch.float64))
            if problem.family.name == "multinomial":
                # Softmax is unchanged by adding one constant to every bias, so the exact gradient
                # sums to zero over classes; float32 rounding leaves a residue along that flat
                # direction, where the Hessian is zero, and the model would chase it forever.
                gradient[1].sub_(gradient[1].mean())
        grad_W, grad_b = gradient
        if model is None:
            model, fresh = _quadratic_model(problem, block, state, penalty, free_np, reuse=reuse, coupled=coupled,
                                            max_coupled=max_coupled)
            reuse, state.stale_model, at_point = False, not fresh, fresh
        new_W, new_b = model(grad_W, grad_b, W_set, state.b, _model_tol(penalty, free, objective, tol, gap_tol, looks))
        dW, db = new_W - W_set, new_b - state.b
        predicted = float((grad_W * dW).sum() + (grad_b * db).sum()) + float(
            penalty.value(new_W) - penalty.value(W_set))
        if -predicted <= tol * max(abs(objective), 1e-12):
            if not gap_out_of_reach(penalty, W_set, grad_W, free, objective, gap_tol, looks):
                break
            # the model sees nothing left, but the gap is out of reach (as in block_newton_solve): its step however
            # small, the model solved to the gap's precision
            looks += 1
            if looks == 1:
                continue  # the same model, solved to the gap's precision
            if not at_point:
                model = None  # its step fell short: a Hessian at this point (an older one's steps converge linearly)
                continue
        # an older Hessian is kept while it converges fast (each step's predicted
        # decrease a small share of the last); slower than that, a fresh one pays off
        slow = not fresh and -predicted > _SLOW_RATE * last_decrease
        last_decrease = -predicted
        dZ = block.matvec(dW.to(problem.design.dtype)).to(state.Z.dtype) + db.to(state.Z.dtype)
        t, trial, accepted = armijo_backtrack(
            lambda t: problem.loss(state.Z, dZ, t) + float(penalty.value(W_set + t * dW)), objective, predicted)
        if not accepted:
            if fresh:
                break
            model = None
            continue
        if t < 1.0 or slow:
            model = None
        W_set += t * dW
        state.b = state.b + t * db
        state.Z = state.Z + t * dZ
        objective, at_point, gradient = trial, False, None
        if fresh and t == 1.0 and gap_tol is None and -predicted <= 1e3 * tol * max(abs(objective), 1e-12):
            # Newton converges quadratically from here: what is left is far below tol.
            # The caller's duality-gap check confirms it (and asks for more steps if not).
            break
    state.W[:, cols] = W_set
    return steps


def _model_tol(penalty: ElasticNet, free: torch.Tensor, objective: float, tol: float, gap_tol: float | None,
               looks: int) -> float:
    """The model solve's stopping rule (a coordinate step's curvature times its square): a thousandth of ``tol`` on
    the objective, and once the path's gap is out of the model's reach (``looks``), small enough that what it leaves
    of each weight's optimality condition (``r^2`` up to the step's curvature, at most 1/4 on standardized
    features) adds at most half of ``gap_tol`` through the penalty's conjugate term ``sum r^2 / (2 l2)``."""
    loose = 1e-3 * tol * max(objective, 1e-12)
    if not looks or gap_tol is None or penalty.l2 <= 0:
        return loose
    return min(loose, penalty.l2 * gap_tol * max(objective, 1e-12) / (int(free.sum()) + free.shape[0]))


def armijo_backtrack(value_at, objective: float, predicted: float, max_halvings: int = _MAX_HALVINGS):
    """Halve the step `t` from 1 until `value_at(t)` makes the Armijo decrease over `objective` (`predicted`: the
    model's predicted change, negative); returns `(t, value, accepted)`.

    Example:
        >>> armijo_backtrack(lambda t: (1 - 2 * t) ** 2, 1.0, -4.0)
        (0.5, 0.0, True)
    """
    t, value = 1.0, objective
    for _ in range(max_halvings):
        value = value_at(t)
        if value <= objective + _ARMIJO * t * predicted:
            return t, value, True
        t *= 0.5
    return t, value, False


def _quadratic_model(problem: Problem, block, state: Iterate, penalty: ElasticNet, free: np.ndarray,
                     *, reuse: bool, coupled: bool = True, max_coupled: int = _COUPLED_MAX_COORDS):
    """The Hessian as a function that minimizes the model plus penalty from a gradient, and
    whether that Hessian is the one at ``state.Z`` (``reuse``: the softmax Hessian kept from an
    earlier call may serve, grown to these coordinates)."""
    layout = _coupled_layout(problem, free, penalty.group, max_coupled) if coupled else None
    if layout is not None:
        return _coupled_model(problem, block, state, penalty, layout, reuse=reuse)
    h = problem.curvature(state.Z).to(problem.design.dtype)
    if not penalty.group and not _CLASS_LOOP and free.shape[0] >= 3:  # all outputs' blocks in one batched call
        blocks = ClassBlocks.build(block, h, free)

        def solve_batched(grad_W, grad_b, W_set, b, tol):
            m = W_set.shape[1]
            g = torch.cat([grad_W, grad_b[:, None]], dim=1).double().cpu().numpy()
            w0 = torch.cat([W_set, b[:, None]], dim=1).double().cpu().numpy()
            v = blocks.solve(g, w0, penalty.l1, penalty.l2, max_sweeps=_max_sweeps(blocks.slots.shape[1]), tol=tol)
            out = torch.as_tensor(v, device=W_set.device, dtype=W_set.dtype)
            return out[:, :m], out[:, m]
        return solve_batched, True
    if penalty.group:
        H = block.gram(h).cpu().numpy()
        grams = None
    else:
        H = None
        grams = [block.gram(h[:, c], torch.as_tensor(np.flatnonzero(free[c]), device=h.device)).cpu().numpy()
                 for c in range(free.shape[0])]

    def solve(grad_W, grad_b, W_set, b, tol):
        return _solve_blocks(H, grams, grad_W, grad_b, W_set, b, penalty, free, tol=tol)
    return solve, True


def _solve_blocks(H, grams, grad_W, grad_b, W_set, b, penalty: ElasticNet, free: np.ndarray, *, tol: float):
    """Minimize the block-diagonal quadratic model plus penalty; returns the new (W_set, b)."""
    k, m = W_set.shape
    g = torch.cat([grad_W, grad_b[:, None]], dim=1).double().cpu().numpy()
    w0 = torch.cat([W_set, b[:, None]], dim=1).double().cpu().numpy()
    if penalty.group:
        mask = np.append(free.any(0), True)
        v = group_elastic_net_cd(H, g, w0, penalty.l1, penalty.l2, mask, _max_sweeps(int(mask.sum()) * k), tol)
    else:
        v = w0.copy()
        for c in range(k):
            idx = np.append(np.flatnonzero(free[c]), m)
            v[c, idx] = elastic_net_cd(grams[c], g[c, idx], w0[c, idx], penalty.l1, penalty.l2,
                                       np.ones(len(idx), dtype=np.bool_), _max_sweeps(len(idx)), tol)
    out = torch.as_tensor(v, device=W_set.device, dtype=W_set.dtype)
    return out[:, :m], out[:, m]


def _coupled_layout(problem: Problem, free: np.ndarray, group: bool, max_coords: int = _COUPLED_MAX_COORDS):
    """Coordinates for the exact softmax Hessian, or None to use its diagonal blocks.

    Softmax over three or more classes is flat along ``W[c] += v`` for all ``c`` but for
    the penalty; the diagonal blocks miss that and converge slowly near the dense end.
    Group mode lays coordinates out feature by feature (a group is consecutive), else
    class by class; the biases come last.
    """
    if problem.family.name != "multinomial":
        return None
    k, m = free.shape
    if group:
        features = np.flatnonzero(free.any(0))
        cols = np.repeat(features, k)
        classes = np.tile(np.arange(k), len(features))
    else:
        classes, cols = np.nonzero(free)
    M = len(cols) + k
    if M > max_coords:
        return None
    coord_col = np.concatenate([cols, np.full(k, m)])
    coord_class = np.concatenate([classes, np.arange(k)])
    n_groups = len(cols) // k if group else len(cols)
    size = k if group else 1
    group_start = np.concatenate([np.arange(n_groups) * size, [len(cols)]]).astype(np.int64)
    group_size = np.concatenate([np.full(n_groups, size), [k]]).astype(np.int64)
    penalized = np.concatenate([np.ones(n_groups, dtype=np.bool_), [False]])
    return coord_col, coord_class, group_start, group_size, penalized


def _coupled_model(problem, block, state: Iterate, penalty: ElasticNet, layout, *, reuse: bool):
    coord_col, coord_class, group_start, group_size, penalized = layout
    H, fresh = state.hessian.at(block, state.Z, problem.row_weight, coord_col, coord_class,
                                fresh=not reuse)
    curvature = np.zeros(len(group_start))
    if penalty.group and len(group_start) > 1:
        blocks = torch.stack([H[s:s + n, s:s + n] for s, n in zip(group_start[:-1], group_size[:-1])])
        curvature[:-1] = torch.linalg.eigvalsh(blocks)[:, -1].cpu().numpy()
    H = H.cpu().numpy()

    reducer = problem.design.reducer

    def solve(grad_W, grad_b, W_set, b, tol):
        new_W, new_b = _solve_coupled(H, curvature, grad_W, grad_b, W_set, b, penalty, layout, tol=tol)
        if reducer.world_size > 1:  # the sign solve's BLAS may round by thread count: every process takes the mean
            both = reducer.sum(torch.cat([new_W, new_b[:, None]], dim=1)) / reducer.world_size  # contiguous
            new_W, new_b = both[:, :-1], both[:, -1]
        return new_W, new_b
    return solve, fresh


def _solve_coupled(H, curvature, grad_W, grad_b, W_set, b, penalty: ElasticNet, layout, *, tol: float):
    coord_col, coord_class, group_start, group_size, penalized = layout
    device = W_set.device
    k, m = W_set.shape
    g_full = torch.cat([grad_W, grad_b[:, None]], dim=1).double()
    w_full = torch.cat([W_set, b[:, None]], dim=1).double()
    cc, cl = torch.as_tensor(coord_class, device=device), torch.as_tensor(coord_col, device=device)
    g, w0 = g_full[cc, cl].cpu().numpy(), w_full[cc, cl].cpu().numpy()
    if penalty.group:
        v = coupled_cd(H, g, w0, penalty.l1, penalty.l2, group_start, group_size, penalized, curvature,
                       _max_sweeps(len(g)), tol)[0]
    else:  # one weight a group: exact on its signs (sign_solve)
        v = sign_solve(H, g, w0, penalty.l1, penalty.l2, np.repeat(penalized, group_size), max_sweeps=_max_sweeps(
            len(g)), tol=tol)
    out = w_full.clone()
    out[cc, cl] = torch.as_tensor(v, device=device)
    out = out.to(W_set.dtype)
    return out[:, :m], out[:, m]
