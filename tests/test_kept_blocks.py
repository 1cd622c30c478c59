"""The block solver's class blocks kept between its calls at one lambda (``solver/kept_blocks.py``): grown blocks
against float64 NumPy, when they are taken, and a path that keeps them against one that forms them every call."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import hf_sparse.solver.block_newton as block_newton
import hf_sparse.solver.kept_blocks as kept_blocks
import hf_sparse.solver.newton as newton
from hf_sparse.solver import fit_path
from hf_sparse.solver.block_newton import ClassBlocks
from hf_sparse.solver.class_grams import class_grams
from hf_sparse.solver.design import Design
from hf_sparse.solver.kept_blocks import KeptBlocks

from test_solver_block_newton import deep_like


def _expected(X: np.ndarray, h: np.ndarray, c: int, columns: np.ndarray) -> np.ndarray:
    """``[X_cols, 1]' diag(h_c) [X_cols, 1]`` in float64."""
    A = np.hstack([X[:, columns], np.ones((len(X), 1))])
    return A.T @ (A * h[:, c][:, None])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_class_grams_from_a_first_slot_are_those_rows_and_nothing_else(dtype):
    """Rows (and, mirrored, columns) from ``first[c]`` on equal the float64 block's; the entries among the slots
    before it stay zero. First slots and sizes at every remainder by four (the kernel takes rows four at a time), 0
    and the bias alone."""
    rng = np.random.default_rng(1)
    n, m, k = 301, 40, 6
    X = torch.as_tensor(rng.normal(size=(n, m)), dtype=dtype)
    h = torch.as_tensor(rng.random((n, k)), dtype=dtype)
    sizes = np.array([9, 16, 1, 23, 6, 30])
    slots = np.full((k, sizes.max()), m + 1, dtype=np.int64)
    for c in range(k):
        slots[c, :sizes[c] - 1] = rng.choice(m, sizes[c] - 1, replace=False)
        slots[c, sizes[c] - 1] = m
    first = np.array([3, 0, 0, 10, 5, 29])
    H = class_grams(X, h, slots, sizes, first=first)
    X64, h64 = X.double().numpy(), h.double().numpy()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for c in range(k):
        s, f = sizes[c], first[c]
        expected = _expected(X64, h64, c, slots[c, :s - 1])
        expected[:f, :f] = 0.0
        np.testing.assert_allclose(H[c, :s, :s], expected, rtol=tol, atol=tol * np.abs(expected).max())


def _layouts(rng, d: int, k: int):
    """An old working set and free pairs, and a larger new one: most old pairs stay free, some leave, new columns
    and pairs join (each class's kept count odd or even)."""
    old_cols = np.sort(rng.choice(d, 14, replace=False))
    old_free = rng.random((k, len(old_cols))) < 0.6
    new_cols = np.union1d(old_cols, rng.choice(d, 6, replace=False))
    new_free = rng.random((k, len(new_cols))) < 0.3
    for c in range(k):
        for a, col in enumerate(old_cols):
            if old_free[c, a] and rng.random() < 0.8:
                new_free[c, np.searchsorted(new_cols, col)] = True
    return old_cols, old_free, new_cols, new_free


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grown_blocks_are_the_blocks_at_the_kept_curvatures(dtype):
    """A block grown to a new working set (new columns, new free pairs, pairs no longer free) is, entry by entry,
    ``[X_F_c, 1]' diag(h_c) [X_F_c, 1]`` in float64 at the curvatures the old one was formed from, in its own slot
    order: kept pairs first, in their old order, then the new ones, the bias last."""
    rng = np.random.default_rng(2)
    n, d, k = 260, 30, 7
    design = Design.build(torch.as_tensor(rng.normal(size=(n, d))), device="cpu", dtype=dtype)
    h = torch.as_tensor(rng.random((n, k)), dtype=dtype)
    old_cols, old_free, new_cols, new_free = _layouts(rng, d, k)
    old = ClassBlocks.build(design.block(torch.as_tensor(old_cols)), h, old_free)
    kept = KeptBlocks(old, old_cols, old_free, h, l1=0.1)
    block = design.block(torch.as_tensor(new_cols))
    grown = kept_blocks.take(kept, block, new_free, 0.1)
    assert grown is not None and grown is not old
    X64, h64 = block.data.double().numpy(), h.double().numpy()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for c in range(k):
        s = grown.sizes[c]
        assert s == new_free[c].sum() + 1 and grown.slots[c, s - 1] == len(new_cols)
        columns = grown.slots[c, :s - 1]
        assert sorted(columns) == list(np.flatnonzero(new_free[c]))
        still_free = [col for col in old_cols[old.slots[c, :old.sizes[c] - 1]] if col in new_cols[new_free[c]]]
        assert list(new_cols[columns[:len(still_free)]]) == still_free  # the kept pairs first, in their old order
        expected = _expected(X64, h64, c, columns)
        np.testing.assert_allclose(grown.H[c, :s, :s], expected, rtol=tol, atol=tol * np.abs(expected).max())


def test_blocks_are_taken_at_their_lambda_only():
    """The same layout takes the kept blocks themselves; another lambda, blocks kept without their curvatures (a
    new layout then cannot be grown) or an empty working set take none."""
    rng = np.random.default_rng(3)
    n, d, k = 100, 24, 4
    design = Design.build(torch.as_tensor(rng.normal(size=(n, d))), device="cpu", dtype=torch.float64)
    h = torch.as_tensor(rng.random((n, k)))
    old_cols, old_free, new_cols, new_free = _layouts(np.random.default_rng(4), d, k)
    block = design.block(torch.as_tensor(old_cols))
    old = ClassBlocks.build(block, h, old_free)
    kept = KeptBlocks(old, old_cols, old_free, h, l1=0.5)
    assert kept_blocks.take(kept, block, old_free, 0.5) is old
    assert kept_blocks.take(kept, block, old_free, 0.25) is None
    assert kept_blocks.take(None, block, old_free, 0.5) is None
    new_block = design.block(torch.as_tensor(new_cols))
    assert kept_blocks.take(KeptBlocks(old, old_cols, old_free, None, l1=0.5), new_block, new_free, 0.5) is None
    empty = design.block(torch.zeros(0, dtype=torch.long))
    assert kept_blocks.take(kept, empty, np.zeros((k, 0), dtype=bool), 0.5) is None
    assert old.compiled_slots_cap >= old.sizes.max()  # formed by the compiled kernel: grown by it
    narrow = KeptBlocks(dataclasses.replace(old, compiled_slots_cap=2), old_cols, old_free, h, l1=0.5)
    assert kept_blocks.take(narrow, new_block, new_free, 0.5) is None  # wider than the compiled kernel takes


def test_a_path_that_keeps_its_blocks_reaches_the_same_points_with_fewer_builds(monkeypatch):
    """Keeping the blocks between the rounds at one lambda (grown to the pairs a round adds) changes the steps'
    model, not the points: every point certified, objectives within 1e-8 of a path that forms its blocks at every
    call; blocks are grown, and fewer are formed."""
    X, y = deep_like(n=800, d=40, k=12, rank=8)
    kwargs = dict(alpha=0.99, n_lambdas=10, lambda_min_ratio=1e-2, dtype=torch.float64, method="block")
    builds, grown = [], []
    build, grow = ClassBlocks.build.__func__, kept_blocks.grow
    monkeypatch.setattr(ClassBlocks, "build", classmethod(lambda cls, *a, **kw: builds.append(1) or build(
        cls, *a, **kw)))
    monkeypatch.setattr(kept_blocks, "grow", lambda *a: grown.append(1) or grow(*a))
    kept = fit_path(X, y, **kwargs)
    kept_builds = len(builds)
    builds.clear()
    monkeypatch.setattr(block_newton.kept_blocks, "take", lambda *a: None)
    fresh = fit_path(X, y, **kwargs)
    assert grown and kept_builds < len(builds), (len(grown), kept_builds, len(builds))
    for a, b in zip(kept, fresh):
        assert a.metrics["converged"] and b.metrics["converged"]
        assert abs(a.metrics["objective"] - b.metrics["objective"]) <= 1e-8 * abs(b.metrics["objective"])


@pytest.mark.parametrize("classes, group, limit", [(3, False, 2_000), (9, False, 2_000), (10, False, 600),
                                                   (100, False, 600), (10, True, 2_000)])
def test_the_coupled_hessian_takes_fewer_coordinates_from_ten_classes(classes, group, limit):
    assert newton.coupled_limit(classes, group) == limit
