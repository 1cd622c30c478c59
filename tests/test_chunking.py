"""Row chunks of ``n x k`` work (``solver/chunking.py``): the same numbers whatever the chunk size.

Every loss, residual, curvature, bias step and dual profile of the large-k path runs in row chunks, so that a
GPU holds no ``n x k`` float64 temporary (10 GB each at the ImageNet shape). Here the chunks are shrunk to a few
rows, so that each loop runs many times and must stitch its rows back exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_sparse.solver import chunking, fit_path
from hf_sparse.solver.design import Design
from hf_sparse.solver.problem import Problem

from solver_helpers import make_data


def test_chunk_rows_by_device():
    assert chunking.chunk_rows(1000, "cpu") == (1 << 22) // 1000
    assert chunking.chunk_rows(1000, torch.device("cuda")) == (1 << 26) // 1000  # no GPU needed to ask
    assert chunking.chunk_rows(10**9, "cpu") == 1  # at least one row
    assert chunking.chunk_rows(0, "cpu") == 1 << 22


@pytest.mark.parametrize("method", ["bound", "newton"])
def test_tiny_chunks_give_the_same_path(monkeypatch, method):
    """A path fit with chunks of 37 rows (hundreds of chunks) equals the one fit in a single chunk."""
    X, y = make_data("multinomial", n=1500, d=12, k=6, seed=3)
    whole = fit_path(X, y, n_lambdas=6, lambda_min_ratio=0.05, method=method, dtype=torch.float64)
    monkeypatch.setattr(chunking, "CPU_ENTRIES", 37 * 6)
    assert chunking.chunk_rows(6, "cpu") == 37
    pieces = fit_path(X, y, n_lambdas=6, lambda_min_ratio=0.05, method=method, dtype=torch.float64)
    for a, b in zip(whole, pieces):
        assert abs(a.metrics["objective"] - b.metrics["objective"]) <= 1e-10 * abs(a.metrics["objective"])
        torch.testing.assert_close(a.weight, b.weight, rtol=1e-6, atol=1e-8)
        assert b.metrics["converged"]


def test_weighted_gradient_and_shifted_loss_against_a_direct_computation(monkeypatch):
    """``X^T diag(w) D`` in row pieces and the loss at ``Z + t step`` (a bias shift, or a line search's trial
    point) without an ``n x k`` copy, against the same sums written out in float64."""
    monkeypatch.setattr(chunking, "CPU_ENTRIES", 50 * 4)  # 50 rows a piece
    rng = np.random.default_rng(0)
    n, d, k = 333, 7, 4
    X = torch.as_tensor(rng.standard_normal((n, d)))
    y = torch.as_tensor(rng.integers(0, k, n))
    w = torch.as_tensor(rng.random(n))
    design = Design.build(X, device="cpu", dtype=torch.float64)
    problem = Problem.build(design, y, family="multinomial", n_outputs=k, sample_weight=w)
    Z = torch.as_tensor(rng.standard_normal((n, k)))
    D = problem.unweighted_residual(Z)
    Y = torch.nn.functional.one_hot(y, k).double()
    torch.testing.assert_close(D, torch.softmax(Z, 1) - Y)
    weights = problem.row_weight.double()
    expected = design.source.T.double() @ (weights[:, None] * D)
    torch.testing.assert_close(design.gradient(D, row_weight=problem.row_weight), expected.T, rtol=1e-12, atol=1e-14)
    equal = torch.full((n,), 1 / n, dtype=torch.float64)  # equal weights: the product scaled once, the same numbers
    torch.testing.assert_close(design.gradient(D, row_weight=equal), (design.source.T.double() @ D).T / n,
                               rtol=1e-12, atol=1e-14)
    shift = torch.tensor([0.3, -1.0, 0.0, 2.0], dtype=torch.float64)
    direct = float((weights * (torch.logsumexp(Z + shift, 1) - ((Z + shift) * Y).sum(1))).sum())
    assert problem.loss(Z, shift) == pytest.approx(direct, rel=1e-13)
    step = torch.as_tensor(rng.standard_normal((n, k)))  # a line search's trial point, never made whole
    trial = Z - 0.25 * step
    direct = float((weights * (torch.logsumexp(trial, 1) - (trial * Y).sum(1))).sum())
    assert problem.loss(Z, step, -0.25) == pytest.approx(direct, rel=1e-13)
    r, H = problem.family.bias_gradient(Z, problem.Y, problem.row_weight), problem.family.bias_hessian(Z, problem.row_weight)
    P = torch.softmax(Z, 1)
    torch.testing.assert_close(r, (weights[:, None] * (P - Y)).sum(0))
    torch.testing.assert_close(H, torch.diag((weights[:, None] * P).sum(0)) - (weights[:, None] * P).T @ P)


def test_symmetric_product_by_blocks_and_the_compiled_softmax():
    """The bias Hessian's ``(w P)^T P`` by blocks on and above the diagonal (mirrored below), against the full
    product; ``softmax`` of float64 CPU rows by the compiled pass, against torch's."""
    from hf_sparse.solver.families import _add_symmetric_product, softmax

    rng = np.random.default_rng(4)
    Z = torch.as_tensor(rng.standard_normal((300, 700)) * 4)
    P = torch.softmax(Z, 1)
    torch.testing.assert_close(softmax(Z), P, rtol=1e-14, atol=1e-17)
    torch.testing.assert_close(softmax(Z.float()), P.float())  # the torch code (float32)
    w = torch.as_tensor(rng.random(300))
    A, B = (w[:, None] * P).float(), P.float()
    out = torch.ones(700, 700, dtype=torch.float64)
    _add_symmetric_product(out, A, B)  # 3 blocks of 256, 256 and 188 columns
    want = 1 + (A.double().T @ B.double())
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-9)
    assert torch.equal(out[256:, :256], out[:256, 256:].T)  # the blocks below the diagonal are mirrored


def test_in_place_softmax_and_xlogx_against_direct_formulas(monkeypatch):
    """The torch softmax (a GPU's, made in place after one new array) leaves ``Z`` as it was and matches
    ``torch.softmax``; ``x log x`` is 0 at and below 0 and exact for tiny values, for a vector and for a chunk of
    ``n x k`` work (xlogy past 2^20 entries), against the formula in float64."""
    from hf_sparse.solver import families

    monkeypatch.setattr(families, "row_softmax", lambda Z: None)  # the torch code, as on a GPU
    rng = np.random.default_rng(5)
    Z = torch.as_tensor(rng.standard_normal((400, 50)) * 30)
    before = Z.clone()
    torch.testing.assert_close(families.softmax(Z), torch.softmax(Z, 1), rtol=1e-13, atol=1e-300)
    assert torch.equal(Z, before)
    for size in (1000, (1 << 20) + 1000):
        p = torch.as_tensor(rng.random(size))
        p[:4] = torch.tensor([0.0, -1e-17, 1e-300, 1.0], dtype=torch.float64)
        got = families._xlogx(p)
        want = torch.as_tensor([v * np.log(v) if v > 0 else 0.0 for v in p[:1000].tolist()])
        torch.testing.assert_close(got[:1000], want, rtol=1e-14, atol=0)
        assert got[1] == 0 and got[0] == 0 and got[2] < 0
