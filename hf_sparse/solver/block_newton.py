"""Proximal Newton for many classes: class-diagonal blocks plus shared-feature moves, all classes at once.

Beyond a few thousand working-set coordinates the coupled softmax Hessian
(``n M^2``, :mod:`.softmax_hessian`) is out of reach; this solver uses the exact diagonal
blocks of the Hessian instead, one per class ``c`` on the class's own free features ``F_c``
and its bias:

    H_c = [X_F_c, 1]' diag(w p_c (1 - p_c)) [X_F_c, 1]

(``sum_c n |F_c|^2`` to form, against ``n (sum_c |F_c|)^2`` for the coupled one). Every class's
block is formed in one batched product and the penalized quadratic model is solved by coordinate descent on every
class in one compiled call (:class:`~.class_blocks.ClassBlocks`). Nothing loops over classes in Python.

Alone, these blocks converge slowly (measured: 2-3 times the coupled Newton's steps, and points
left uncertified): softmax is flat along a constant added to every class, and the blocks
overstate the curvature along "move all of a feature's classes together", the direction of the
model's smallest generalized eigenvalues. So each step is followed by the exact 1-D minimizer
along that move for every feature at once (:func:`~.shared_moves.shared_moves`, with the loss's true curvature
along it; from 300 classes after every second step). Steps are taken with the Newton line search; the path's
duality gap certifies every point. The blocks are kept between the path's rounds at one lambda and grown to the
pairs a round adds (:mod:`.kept_blocks`).

Example:
    >>> steps = block_newton_solve(problem, state, penalty, cols, free, tol=1e-9, gap_tol=1e-6)  # updates state
"""

from __future__ import annotations

import math

import torch

from .class_blocks import ClassBlocks
from . import kept_blocks
from .kept_blocks import KeptBlocks
from .pair_kernels import restricted_products
from .shared_moves import shared_moves, shared_terms
from .step_arrays import StepArrays

# keep older blocks while each step's predicted decrease is below this share of the last: at 100 classes half (forming
# blocks costs more than a step there: k=100 proxy 15.5 -> 14.5 s at seed 1, 12.8 -> 12.2 s at seed 0, highrank
# 4.3 -> 3.5 s), at 1,000 a quarter (each step's n x k passes cost more than a block: half took 265 steps against 236
# and 59.5 s against 57.0 s at the k=1000 proxy), below 30 classes whatever the rate (blocks of hundreds of slots
# cost ten steps each: at 10 classes, n=20,000, d=768, lowrank_noisy 12.1 s against 17.2 at half, shared48_noisy
# 7.9 against 8.4; at 30 classes no gain, at 50 slower: 9.4 against 8.8 s). Between the tiers not measured.
_SLOW_RATE = {"few": math.inf, "fewer": 0.5, "many": 0.25}
# the shared moves after every this many block steps (and whenever the blocks see nothing left). From 300 classes
# every second: their pass, step and line search cost a quarter of a step there, and skipping half of them added
# 10-12% of steps at the k=1000 proxy (d=512) but took 59.7 -> 57.2 s at seed 1 and 46.4 -> 44.2 s at seed 0. At
# 100 classes no gain (9.5-9.7 / 11.6-11.8 s either way), at 10 more steps and slower (303 / 292 steps, 5.5 / 4.8 s)
_SHARED_EVERY = {"few": 1, "fewer": 1, "many": 2}
_FEW_CLASSES, _MANY_CLASSES = 30, 300
#: given ``gap_tol`` (the path's tolerance, after a point's first round) a block model that sees nothing left still
#: takes its step, up to _MAX_LOOKS times a call, while the penalty's conjugate term of the gap
#: (:meth:`~.penalty.ElasticNet.dual_excess`) is above _CERTIFIABLE times ``gap_tol`` (the check's bias polish and
#: dual scaling certify somewhat above it). At 10 classes (n=20,000, d=768) lowrank_noisy took 232 / 228 / 214 steps
#: at seeds 0-2 and now 221 / 220 / 208, medians of four alternating runs 5.05 -> 4.79 s and 4.62 -> 4.31 s; same steps
#: at shared48_noisy (184 / 179 -> 182 / 180), deep, highrank and the k=100 proxy, 269 -> 270 at the k=1000 proxy.
#: 0.5 or 1 times ``gap_tol`` took more steps (249, 227), and a tenth of the model's tolerance a look as many as before
_CERTIFIABLE, _MAX_LOOKS = 2.0, 8
# the blocks from about this many rows, a subsample beyond (None: all rows). Measured at the k=100 proxy (n=20,000,
# d=768, 25 lambdas): a 5,000-row subsample took 441 steps against 267 and was slower, so all rows by default
HESSIAN_ROWS: int | None = None
_SHORT_STEP = 1e-3  # a fresh model's step shorter than this (or refused) is retried with damping
_SHORT_HALVINGS = 10  # its line search's tries: 1, 1/2, ..., 2^-9 (the last above _SHORT_STEP)
_MIN_DAMPING, _MAX_DAMPING = 1e-6, 1e6  # relative to the blocks' mean diagonal entry


def gap_out_of_reach(penalty, W_set: torch.Tensor, grad_W: torch.Tensor, free: torch.Tensor, objective: float,
                     gap_tol: float | None, looks: int) -> bool:
    """Whether a Newton model that sees nothing left should still step: given the path's tolerance ``gap_tol``, the
    penalty's conjugate term of the gap (:meth:`~.penalty.ElasticNet.dual_excess`) is above :data:`_CERTIFIABLE`
    times it, and fewer than :data:`_MAX_LOOKS` such steps (``looks``) were taken in this call."""
    return gap_tol is not None and looks < _MAX_LOOKS and penalty.dual_excess(
        W_set, grad_W, free) > _CERTIFIABLE * gap_tol * abs(objective)


def block_newton_solve(problem, state, penalty, cols: torch.Tensor, free: torch.Tensor, *, tol: float,
                       max_steps: int = 50, gap_tol: float | None = None, **_ignored) -> int:
    """Proximal Newton on the class-diagonal blocks, each step followed by shared-feature moves.

    Same contract as :func:`~.newton.newton_solve` (updates ``state``, returns the steps taken).
    A step: the class-diagonal Newton model (:class:`ClassBlocks`, kept while its full steps converge
    fast; damped Levenberg-Marquardt style when a fresh one's step falls short) minimized for all
    classes at once, taken with the line search; then, from the gradient there, every column's
    free classes moved together by the exact 1-D minimizer along that move
    (:func:`~.shared_moves.shared_moves`, all columns at once), again with the line search (from 300 classes after
    every second block step: :data:`_SHARED_EVERY`). The blocks overstate
    the curvature along those moves (softmax is flat along a constant added to every class), where
    alone they converge slowly. The call ends when neither model sees anything left to gain; if the blocks were
    formed at an earlier point, ``state.stale_model`` says so and the path's gap check decides whether fresh ones
    are needed (most points are certified already: forming them again to confirm cost a fifth of the steps).
    ``gap_tol``: the path's tolerance on the relative duality gap. Near the dense end the gap is mostly the penalty's
    conjugate term, which a model's tolerance on the objective does not bound (with alpha 0.99 it is about a hundred
    to ten thousand times the objective's distance from its optimum): given ``gap_tol``, the call goes on while that
    term is out of the gap's reach (:data:`_CERTIFIABLE`). Multinomial without group penalty only.
    """
    from .newton import _MAX_HALVINGS, armijo_backtrack  # newton imports this module for its class blocks

    state.stale_model = False

    design = problem.design
    reducer = design.reducer
    block = design.block(cols)
    W_set = state.W[:, cols].clone()
    objective = problem.loss(state.Z) + float(penalty.value(W_set))
    free_np = free.cpu().numpy()
    # at many classes each class has a few free columns of the working set: products over those alone (compiled
    # kernels on the CPU, Triton's on a GPU)
    pattern = restricted_products(block.data, free) if state.Z.dtype == torch.float64 else None
    restricted_gradient = pattern is not None and pattern.pays("gradient", block.data)
    restricted_matvec = pattern is not None and pattern.pays("matvec", block.data)
    restricted_curvature = pattern is not None and pattern.pays("curvature")
    steps = 0

    w = problem.row_weight.to(state.Z.dtype)[:, None]
    # the compiled passes write into arrays kept on the iterate: a fresh n x k array a step costs its page
    # faults (at 20,000 x 1,000, 35-40 ms each, as much as the pass itself)
    kept = StepArrays.for_problem(problem, state)
    if kept.curvatures is not None and state.class_blocks is not None and state.class_blocks.h is not None:
        kept.curvatures = state.class_blocks.h  # the kept blocks' curvatures: written over only when they are replaced
    # the labels' part of the shared moves' slope, a fixed sum (the moves' passes take the probabilities alone)
    label_sums = problem.label_sums()[:, cols.to(problem.design.device)]

    def gradient():
        """The probabilities, and the gradient in the working set's weights and in the bias."""
        if restricted_gradient:  # the residual made from P in cache: no n x k array; zero off the free pairs
            P = kept.probabilities(problem, state.Z)
            values, sums = pattern.gradient(block.data, P, problem.class_labels(), problem.row_weight)
            grad_W = pattern.dense(reducer.sum(values))
        elif kept.P is None:  # the torch code (a GPU): the residual made in row chunks, never whole
            P = problem.probabilities(state.Z)
            grad_W, sums = problem.residual_products(P, block)
        else:
            P, R = kept.probabilities_and_residual(problem, state.Z)
            grad_W, sums = block.rmatvec(R), R.sum(0, dtype=torch.float64)
        grad_b = reducer.sum(sums)
        return P, grad_W, grad_b - grad_b.mean()

    def take(dW, db, predicted, halvings: int = _MAX_HALVINGS) -> float:
        """The step with the line search (at most ``halvings``); returns its length (0: none accepted)."""
        nonlocal W_set, objective
        if restricted_matvec:  # dW is zero off the free pairs; the bias added in the same pass
            dZ = pattern.matvec(block.data, dW, out=kept.step, bias=db)
        else:
            dZ = block.matvec(dW.to(design.dtype), dtype=state.Z.dtype)
            if db is not None:
                dZ += db.to(state.Z.dtype)
        # each trial writes its probabilities into the kept P: the accepted one (the last tried) is where the next
        # pass over them starts. The full step's trial also writes its point over dZ (most are accepted: then that
        # is the new Z, with no pass to add the step); a shorter trial first takes dZ back.
        written = False

        def value_at(t: float) -> float:
            nonlocal written
            if written:
                dZ.sub_(state.Z)
            written = t == 1.0
            return (problem.loss(state.Z, dZ, t, probabilities=kept.P, into_step=written)
                    + float(penalty.value(W_set + t * dW)))
        t, trial, accepted = armijo_backtrack(value_at, objective, predicted, halvings)
        kept.current = accepted and kept.P is not None
        if not accepted:
            return 0.0
        W_set = W_set + t * dW
        if db is not None:
            state.b = state.b + t * db
        if written:
            kept.adopt_point(dZ)
        else:
            state.Z.add_(dZ, alpha=t)  # in place: no second n x k array
        objective = trial
        return t

    m, damping = W_set.shape[1], 0.0
    # the blocks of this lambda's last call, as they are or grown to new free pairs (see kept_blocks)
    blocks = kept_blocks.take(state.class_blocks, block, free_np, penalty.l1)
    classes = state.W.shape[0]
    tier = "many" if classes >= _MANY_CLASSES else "fewer" if classes >= _FEW_CLASSES else "few"
    slow_rate, shared_every = _SLOW_RATE[tier], _SHARED_EVERY[tier]
    fresh, last_decrease = False, math.inf
    moved = True  # whether the point moved since the shared moves last looked (they found nothing there)
    # the undamped model's step was refused at this point with these blocks: a damped model that then sees nothing
    # ends the block steps (looking again undamped would repeat the refused step: a two-step cycle to max_steps,
    # each with a line search halved 40 times, seen at 300 classes in the GPU's code)
    undamped_refused = False
    looks = 0  # times the models saw nothing left while the gap could not yet be certified (see gap_tol)
    for steps in range(1, max_steps + 1):
        scale = tol * max(abs(objective), 1e-12)
        P, grad_W, grad_b = gradient()
        if blocks is None:
            # the torch code's curvatures by pieces of rows, as the blocks take them (the compiled pass keeps its own)
            h = (kept.curvature(P, w, design.dtype) if kept.curvatures is not None
                 else lambda a, b: kept.curvature(P[a:b], w[a:b], design.dtype))
            stride = max(1, design.n_rows // (HESSIAN_ROWS or design.n_rows))
            blocks = ClassBlocks.build(block, h, free_np, stride=stride,
                                       probabilities=None if kept.curvatures is not None else (P, problem.row_weight))
            fresh, undamped_refused = True, False  # formed at the current point (until a step moves it)
            # grown later from these curvatures where the compiled kernel formed every block
            growable = not callable(h) and blocks.slots.shape[1] <= blocks.compiled_slots_cap
            state.class_blocks = KeptBlocks(blocks, block.cols.cpu().numpy(), free_np.copy(), h if growable else None,
                                            penalty.l1)
        del P
        g = torch.cat([grad_W, grad_b[:, None]], dim=1).double().cpu().numpy()
        w0 = torch.cat([W_set, state.b[:, None]], dim=1).double().cpu().numpy()
        v = torch.as_tensor(blocks.solve(g, w0, penalty.l1, penalty.l2, max_sweeps=2_000, tol=1e-3 * scale,
                                         damping=damping * blocks.scale), device=W_set.device, dtype=W_set.dtype)
        dW, db = v[:, :m] - W_set, v[:, m] - state.b
        predicted = float((grad_W * dW).sum() + (grad_b * db).sum()) + float(
            penalty.value(W_set + dW) - penalty.value(W_set))
        block_done = -predicted <= scale
        if block_done and gap_out_of_reach(penalty, W_set, grad_W, free, objective, gap_tol, looks):
            block_done, looks = False, looks + 1  # the step the model sees, however small: the gap is not in reach
        if block_done and damping > 0.0 and not undamped_refused:
            damping, block_done = 0.0, False  # a damped model sees too little: look again undamped
        elif not block_done:
            # blocks formed at an earlier point are kept while their full steps converge fast (forming
            # them is most of a step's cost); a short step or a slow one asks for new ones
            slow = not fresh and -predicted > slow_rate * last_decrease
            last_decrease = -predicted
            # loss and penalty are >= 0: a model that promises more than the whole objective is refused unsearched
            # and a fresh one that may still be damped is searched only down to _SHORT_STEP (shorter means damping)
            halvings = _SHORT_HALVINGS if fresh and damping < _MAX_DAMPING else _MAX_HALVINGS
            t = take(dW, db, predicted, halvings) if -predicted <= objective else 0.0
            if t < _SHORT_STEP and fresh and damping < _MAX_DAMPING:
                # a class whose probabilities are all near 0 or 1 has nearly flat blocks and the
                # model promises far more than the loss gives: damp it (Levenberg-Marquardt)
                undamped_refused |= damping == 0.0
                damping = max(10 * damping, _MIN_DAMPING)
            elif t < 1.0 or slow:
                block_done = t == 0.0 and fresh
                blocks = None if t > 0.0 or not fresh else blocks
            elif damping > 0.0:
                damping = 0.0 if damping <= _MIN_DAMPING else 0.1 * damping
            if t > 0.0:
                fresh, moved = False, True
            if t >= _SHORT_STEP:
                undamped_refused = False
        if m > 0 and (moved or not block_done) and (block_done or steps % shared_every == 0):
            # the shared-feature moves, from the slope and curvature along them where the block step left
            moving = free & (W_set != 0)  # the smooth part: moving a zero weight costs l1 at once
            # one pass over the probabilities gives the slope and the curvature along the moves
            P = kept.probabilities(problem, state.Z)
            if restricted_curvature:
                first, h = (reducer.sum(v) for v in type(pattern).from_mask(moving).shared_terms(
                    block.data, P, problem.row_weight))
            else:
                first, h = shared_terms(problem, block, P, moving)
            del P
            slope = first - (label_sums * moving).sum(0)
            moves = torch.as_tensor(shared_moves(slope.cpu().numpy(), W_set.cpu().numpy(), moving.cpu().numpy(),
                                                 h.cpu().numpy(), penalty.l1, penalty.l2), device=W_set.device,
                                    dtype=W_set.dtype)
            dW = moves[None, :] * moving.to(W_set)
            predicted = float((slope.to(moves) * moves).sum()) + float(penalty.value(W_set + dW) - penalty.value(W_set))
            shared_done = -predicted <= scale or take(dW, None, predicted) == 0.0
            moved = not shared_done
            if not shared_done:
                fresh = False
        else:
            shared_done = True  # no columns, the point where they found nothing, or not their turn (many classes)
        if block_done and shared_done:
            # older blocks that see nothing left end the call too: the path's gap check decides
            # whether fresh ones are needed (most often the point is certified already)
            state.stale_model = not fresh
            break
    state.W[:, cols] = W_set
    state.scratch.pop("residual", None)  # kept for the call only: not beside the gap check's arrays
    return steps
