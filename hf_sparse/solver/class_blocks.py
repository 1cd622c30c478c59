"""Every class's Newton block on its free features and bias, formed in one batched product (:class:`ClassBlocks`).

The class-diagonal blocks of the softmax Hessian, ``H_c = [X_F_c, 1]' diag(w p_c (1 - p_c)) [X_F_c, 1]``, one per
class on its free columns ``F_c`` of the working set and its bias, padded to one layout; their penalized quadratic
model is solved by coordinate descent on every class at once. :mod:`.block_newton` takes steps with them.

Example:
    >>> blocks = ClassBlocks.build(block, h, free)          # h: (n, k) curvatures, free: (k, m) bool
    >>> V = blocks.solve(g, v0, l1, l2, max_sweeps=2000, tol=1e-12)   # g, v0: (k, m + 1), bias last
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
from . import pair_kernels
from .pair_kernels import PairKernels
from .softmax_hessian import add_batched_gram
from .softmax_rows import PARALLEL_KERNEL

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
