"""Proximal Newton for many classes: class-diagonal blocks plus shared-feature moves, all classes at once.

Beyond a few thousand working-set coordinates the coupled softmax Hessian
(``n M^2``, :mod:`.softmax_hessian`) is out of reach; this solver uses the exact diagonal
blocks of the Hessian instead, one per class ``c`` on the class's own free features ``F_c``
and its bias:

    H_c = [X_F_c, 1]' diag(w p_c (1 - p_c)) [X_F_c, 1]

(``sum_c n |F_c|^2`` to form, against ``n (sum_c |F_c|)^2`` for the coupled one). Every class's
block is formed by one batched product over padded class layouts (classes sorted by size and
grouped, so that padding stays small), and
the penalized quadratic model is solved by coordinate descent on every class in one compiled
call (classes in parallel). Nothing loops over classes in Python.

Alone, these blocks converge slowly (measured: 2-3 times the coupled Newton's steps, and points
left uncertified): softmax is flat along a constant added to every class, and the blocks
overstate the curvature along "move all of a feature's classes together", the direction of the
model's smallest generalized eigenvalues. So each step is followed by the exact 1-D minimizer
along that move for every feature at once (:func:`~.shared_moves.shared_moves`, with the loss's true curvature
along it; from 300 classes after every second step). Steps are taken with the Newton line search; the path's
duality gap certifies every point. The blocks are kept between the path's rounds at one lambda and grown to the
pairs a round adds (:mod:`.kept_blocks`).

Example:
    >>> model = ClassBlocks.build(block, h, free)          # h: (n, k) curvatures, free: (k, m) bool
    >>> V = model.solve(g, v0, l1, l2, max_sweeps=2000, tol=1e-12)   # g, v0: (k, m + 1), bias last
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import torch

from .chunking import chunk_rows
from .class_grams import class_grams
from .class_products import ClassPattern
from .coordinate_descent import batched_cd
from . import kept_blocks
from .kept_blocks import KeptBlocks
from . import pair_kernels
from .pair_kernels import PairKernels, restricted_products
from .shared_moves import shared_moves, shared_terms
from .softmax_hessian import add_batched_gram
from .softmax_rows import PARALLEL_KERNEL
from .step_arrays import StepArrays

# rows x classes x slots of the gathered temporaries per piece on a CPU (32 MB of float32; a GPU takes chunking's)
_PIECE_ENTRIES = 1 << 23
_GROUP = 16  # classes per batched product (similar sizes together: padding stays small)
#: on the CPU the blocks are formed by the compiled row-tile kernel (:func:`~.class_grams.class_grams`, sums in
#: float32 per tile of rows), at 20,000 rows twice as fast as batched BLAS at every size measured: 100 classes of
#: 100-150 slots 232 against 546 ms, 150-250 slots 568 against 1,083 ms; 30 classes of 250-350 slots 289 against
#: 635 ms; 10 classes of 350-420 slots 160 against 320 ms. Blocks past this many slots go to BLAS (tests lower it)
COMPILED_MAX_SLOTS = math.inf
#: ... but the kernel runs classes in parallel: with fewer than this many classes per thread, blocks past
#: :data:`_FEW_CLASSES_MAX_SLOTS` slots go to (multithreaded) BLAS, where the kernel would leave threads idle
_CLASSES_PER_THREAD = 4
_FEW_CLASSES_MAX_SLOTS = 128
#: the batched products' rows per batch, by device (none: one product per class over a piece's rows). On an H200 at
#: the ImageNet shape (1.28M rows, 1,000 classes) the blocks took 0.8 s a build, 43% of the path, as one product per
#: class over up to 500,000 rows
GRAM_ROWS_PER_BATCH = {"cuda": 2048}
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
# the blocks from about this many rows, a subsample beyond (None: all rows). Measured at the k=100 proxy (n=20,000,
# d=768, 25 lambdas): a 5,000-row subsample took 441 steps against 267 and was slower, so all rows by default
HESSIAN_ROWS: int | None = None
_SHORT_STEP = 1e-3  # a fresh model's step shorter than this (or refused) is retried with damping
_SHORT_HALVINGS = 10  # its line search's tries: 1, 1/2, ..., 2^-9 (the last above _SHORT_STEP)
_MIN_DAMPING, _MAX_DAMPING = 1e-6, 1e6  # relative to the blocks' mean diagonal entry


@dataclass
class ClassBlocks:
    """Every class's Newton block on its free features and bias, padded to one layout.

    ``slots[c, :sizes[c] - 1]`` index the working set's columns of class ``c``'s free features,
    ``slots[c, sizes[c] - 1]`` is ``m`` (the bias); ``H[c]`` is the block in that order.
    """

    H: np.ndarray  # (k, p, p) float64
    slots: np.ndarray  # (k, p) int64, padded with m + 1
    sizes: np.ndarray  # (k,) int64
    compiled_slots_cap: float = 0.0  # the widest block the compiled CPU kernel formed on this route (0: not it)

    @classmethod
    def build(cls, block, h, free: np.ndarray, stride: int = 1,
              probabilities: tuple[torch.Tensor, torch.Tensor] | None = None) -> "ClassBlocks":
        """The blocks ``[X_F_c, 1]' diag(h_c) [X_F_c, 1]`` over all processes, float64.

        ``block``: the working set (:class:`~.design.Block`, ``m`` columns); ``h`` (n_local, k) the
        row curvatures (row weights included), or a function ``(start, stop) ->`` those rows (no whole array of
        them: 5 GB at the ImageNet shape); ``free`` (k, m) each class's free columns. ``stride``:
        sum every ``stride``-th row only, times ``stride`` (a subsampled Hessian, ``stride`` times cheaper).
        ``probabilities``: ``(P, row weights)`` that ``h`` is made from, for the GPU's kernel
        (:func:`~.pair_kernels.class_grams`, which makes the curvatures itself).
        """
        k, m = free.shape
        counts = free.sum(1)
        sizes = counts.astype(np.int64) + 1
        p = int(sizes.max())
        slots = np.full((k, p), m + 1, dtype=np.int64)  # m + 1: a zero column (padding)
        for_class, col = np.nonzero(free)  # row-major: grouped by class, columns ascending
        position = np.arange(len(col)) - np.repeat(np.cumsum(counts) - counts, counts)
        slots[for_class, position] = col
        slots[np.arange(k), counts] = m  # m: the ones column (bias)
        H = np.zeros((k, p, p))
        # the blocks by the compiled kernel on the CPU, up to the cap (see COMPILED_MAX_SLOTS), or by Triton's on a GPU
        # up to pair_kernels.MAX_GRAM_SLOTS; the others by batched BLAS
        compiled = stride == 1 and ClassPattern.applies(block.data)
        cap = cls.compiled_slots(block, k) if compiled else 0.0
        small = np.zeros(0, dtype=np.int64)
        if compiled:
            small = np.nonzero(sizes <= cap)[0]
        elif stride == 1 and probabilities is not None and PairKernels.applies(block.data):
            small = np.nonzero(sizes <= pair_kernels.MAX_GRAM_SLOTS)[0]  # the GPU's kernel
        if len(small):
            q = int(sizes[small].max())
            if compiled:
                part = torch.from_numpy(class_grams(block.data, h(0, block.design.n_rows) if callable(h) else h,
                                                    slots[small, :q], sizes[small], classes=small))
            else:
                part = pair_kernels.class_grams(block.data, *probabilities, slots[small, :q], sizes[small], small)
                part = part[:, :q, :q].contiguous()
            part = block.design.reducer.sum(part).cpu().numpy()
            if len(small) == k:
                return cls(part, slots, sizes, cap)  # q == p: every block is here (no copy)
            H[small, :q, :q] = part
        rest = np.setdiff1d(np.arange(k), small)
        order = rest[np.argsort(sizes[rest], kind="stable")]
        device = block.design.device
        groups = []  # (classes, width, their slots, the classes as a tensor)
        for a in range(0, len(order), _GROUP):
            classes = order[a:a + _GROUP]
            q = int(sizes[classes].max())
            groups.append((classes, q, torch.as_tensor(slots[classes, :q].reshape(-1), device=device),
                           torch.as_tensor(classes, device=device)))
        outs = [torch.zeros(len(g[0]), g[1], g[1], dtype=torch.float64, device=device) for g in groups]
        # pieces of rows bounded by the gathered columns' width and by the rows' curvatures (k wide)
        for start, stop, chunk in block.pieces(stride * chunk_rows(max(min(k, _GROUP) * p, k), device, _PIECE_ENTRIES)):
            first = (-start) % stride  # rows whose index is a multiple of the stride
            chunk = chunk[first::stride]
            r = chunk.shape[0]
            if r == 0:
                continue
            ext = torch.cat([chunk, torch.ones(r, 1, dtype=chunk.dtype, device=device),
                             torch.zeros(r, 1, dtype=chunk.dtype, device=device)], dim=1)
            rows = h(start, stop) if callable(h) else h[start:stop]
            root = rows[first::stride].to(chunk.dtype).clamp_min(0).mul_(stride).sqrt_()
            for (classes, q, idx, cls_t), out in zip(groups, outs):
                A = ext.index_select(1, idx).reshape(r, len(classes), q)
                A *= root.index_select(1, cls_t)[:, :, None]
                add_batched_gram(out, A, GRAM_ROWS_PER_BATCH.get(device.type))
        for (classes, q, _, _), out in zip(groups, outs):
            block.design.reducer.sum(out)
            H[classes, :q, :q] = out.cpu().numpy()
        return cls(H, slots, sizes, cap)

    @staticmethod
    def compiled_slots(block, k: int) -> float:
        """The widest block the compiled CPU kernel forms here (wider ones go to BLAS: see
        :data:`COMPILED_MAX_SLOTS`)."""
        threads = numba.get_num_threads()
        if block.design.reducer.enabled:  # each class must take the same route in every process (parts are summed)
            threads = int(block.design.reducer.max(torch.tensor([threads])))
        few = k < _CLASSES_PER_THREAD * threads
        return min(COMPILED_MAX_SLOTS, _FEW_CLASSES_MAX_SLOTS) if few else COMPILED_MAX_SLOTS

    @property
    def scale(self) -> float:
        """The blocks' mean diagonal entry (the unit of the damping)."""
        k, p = self.slots.shape
        used = np.arange(p)[None, :] < self.sizes[:, None]
        diagonal = np.diagonal(self.H, axis1=1, axis2=2)[used]
        return float(diagonal.mean()) if diagonal.size else 0.0

    def solve(self, g: np.ndarray, w0: np.ndarray, l1: float, l2: float, *, max_sweeps: int,
              tol: float, damping: float = 0.0) -> np.ndarray:
        """Minimize ``g.(v - w0) + 1/2 (v - w0)' (H + damping I) (v - w0) + l1 |v|_1 + l2/2 |v|^2`` per
        class (bias unpenalized, not-free weights kept). ``g``, ``w0``: (k, m + 1), the bias last.
        Returns (k, m + 1).
        """
        k, p = self.slots.shape
        rows = np.arange(k)[:, None]
        gp = np.zeros((k, p))
        wp = np.zeros((k, p))
        g_ext = np.concatenate([g, np.zeros((k, 1))], axis=1)  # column m + 1: padding
        w_ext = np.concatenate([w0, np.zeros((k, 1))], axis=1)
        gp[:] = g_ext[rows, self.slots]
        wp[:] = w_ext[rows, self.slots]
        with PARALLEL_KERNEL:  # numba's fallback threading layer (workqueue) aborts on concurrent launches
            v = batched_cd(self.H, self.sizes, gp, wp, l1, l2, damping, max_sweeps, tol)
        out = w_ext.copy()
        used = np.arange(p)[None, :] < self.sizes[:, None]
        out[np.broadcast_to(rows, (k, p))[used], self.slots[used]] = v[used]
        return out[:, :-1]


def block_newton_solve(problem, state, penalty, cols: torch.Tensor, free: torch.Tensor, *, tol: float,
                       max_steps: int = 50, **_ignored) -> int:
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
    Multinomial without group penalty only.
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
