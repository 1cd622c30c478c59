"""The block solver's class blocks, kept between its calls at one lambda: reused as they are, or grown.

The path checks the duality gap after each call of the block solver (:mod:`.block_newton`) and calls it again
while the point is not certified, often on the same working set or on one a few free pairs larger (features
that violate their optimality conditions). Each call used to form its class blocks afresh: at 10 classes a
build costs as much as four or five steps. Kept on the iterate with the curvatures they were formed from,

- the same layout takes them as they are;
- a new layout copies the entries of the pairs it keeps and forms only the new pairs' rows, from those
  curvatures, so the blocks stay the exact Hessian blocks at one point (:func:`grow`; the compiled CPU kernel
  only, where they were all formed by it; elsewhere they are formed afresh);
- a new lambda forms them afresh: blocks from the previous lambda's point cost more steps than they saved
  (lowrank_noisy, k=10, seed 1: 239 steps against 206, the last points' rounds up to 48 steps).

Measured at 10 classes (n=20,000, d=768, 25 lambdas to 1e-2, lowrank_noisy, seed 1), the blocks were kept
whatever the path's ``reuse_hessian`` asked: formed afresh after a stale round they saved no step (192 either way).

Example:
    >>> blocks = kept_blocks.take(state.class_blocks, block, free, l1)    # None: form them
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .class_blocks import ClassBlocks
from .class_grams import class_grams


@dataclass
class KeptBlocks:
    """Class blocks (:class:`~.class_blocks.ClassBlocks`) and what they were formed on."""

    blocks: ClassBlocks
    cols: np.ndarray  # the working set's columns (feature indices, ascending) that the slots index
    free: np.ndarray  # (k, m) each class's free columns of that working set
    h: torch.Tensor | None  # the rows' curvatures they were formed from; None: not to be grown
    l1: float  # the L1 weight of the lambda they were formed at


def take(kept: KeptBlocks | None, block, free: np.ndarray, l1: float):
    """The kept blocks on ``block``'s working set and ``free`` pairs (grown where new pairs are free), or None
    where there are none to take: none kept, another lambda, or a layout they cannot be grown to."""
    if kept is None or kept.l1 != l1:
        return None
    cols = block.cols.cpu().numpy()
    if np.array_equal(cols, kept.cols) and np.array_equal(free, kept.free):
        return kept.blocks
    if kept.h is None or block.data is None:
        return None
    return grow(kept, block, cols, free)


def grow(kept: KeptBlocks, block, cols: np.ndarray, free: np.ndarray):
    """The kept blocks on a new layout: the pairs still free keep their entries (in their order), the new free
    pairs follow them, each class's bias comes last; the new slots' rows are formed from the kept curvatures
    (:func:`~.class_grams.class_grams` from a first slot per class). None where a block would be wider than
    the compiled kernel takes."""
    old = kept.blocks
    k, m = free.shape
    m_old = len(kept.cols)
    if m == 0 or m_old == 0:
        return None  # nothing to keep (forming the biases' blocks alone costs nothing)
    rows = np.arange(k)[:, None]
    # each old slot's column in the new working set, and whether that pair is still free there
    is_column = old.slots < m_old
    ids = kept.cols[np.minimum(old.slots, m_old - 1)]
    position = np.searchsorted(cols, ids).clip(max=m - 1)
    kept_pair = is_column & (cols[position] == ids) & free[np.broadcast_to(rows, position.shape), position]
    new = free.copy()
    new[np.broadcast_to(rows, position.shape)[kept_pair], position[kept_pair]] = False
    n_kept, n_new = kept_pair.sum(1), new.sum(1)
    sizes = (n_kept + n_new + 1).astype(np.int64)
    p = int(sizes.max())
    if p > old.compiled_slots_cap:
        return None
    slots = np.full((k, p), m + 1, dtype=np.int64)
    kept_class, kept_slot = np.nonzero(kept_pair)  # row-major: by class, in the old slots' order
    kept_at = np.arange(len(kept_class)) - np.repeat(np.cumsum(n_kept) - n_kept, n_kept)
    slots[kept_class, kept_at] = position[kept_class, kept_slot]
    new_class, new_col = np.nonzero(new)
    new_at = n_kept[new_class] + np.arange(len(new_class)) - np.repeat(np.cumsum(n_new) - n_new, n_new)
    slots[new_class, new_at] = new_col
    slots[np.arange(k), sizes - 1] = m  # the bias
    H = block.design.reducer.sum(torch.from_numpy(class_grams(block.data, kept.h, slots, sizes,
                                                              first=n_kept))).numpy()
    q = int(n_kept.max()) if k else 0
    if q:
        source = np.zeros((k, q), dtype=np.int64)
        source[kept_class, kept_at] = kept_slot
        valid = np.arange(q)[None, :] < n_kept[:, None]
        entries = old.H[rows[:, :, None], source[:, :, None], source[:, None, :]]
        H[:, :q, :q] += np.where(valid[:, :, None] & valid[:, None, :], entries, 0.0)
    return ClassBlocks(H, slots, sizes, old.compiled_slots_cap)
