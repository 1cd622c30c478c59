"""The compiled passes of the many-class solver: row losses and probabilities (``solver/softmax_rows.py``) and
products restricted to each class's free columns (``solver/class_products.py``).

References are written out in float64 torch/NumPy; the paths must not move when the compiled passes replace the
torch ones (the switch is forced both ways here).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hf_sparse.solver.class_products as class_products
from hf_sparse.solver import fit_path
from hf_sparse.solver.class_products import ClassPattern
from hf_sparse.solver.design import Design
from hf_sparse.solver.thin_products import gather_columns
from hf_sparse.solver.empty_classes import EmptyClassShift
from hf_sparse.solver.problem import Problem
from hf_sparse.solver.softmax_rows import SoftmaxRows, row_curvatures, usable

from solver_reference import standardize


def _rows(n=400, k=9, seed=0):
    rng = np.random.default_rng(seed)
    Z = torch.as_tensor(rng.standard_normal((n, k)) * 5)
    step = torch.as_tensor(rng.standard_normal((n, k)))
    bias = torch.as_tensor(rng.standard_normal(k))
    y = torch.as_tensor(rng.integers(0, k, n))
    w = torch.as_tensor(rng.random(n))
    return Z, step, bias, y, w / w.sum()


def _loss(Z, y, w):
    """The weighted softmax cross-entropy written out (float64)."""
    return float((w * (torch.logsumexp(Z, 1) - Z.gather(1, y[:, None])[:, 0])).sum())


def test_row_losses_against_torch_in_float64():
    Z, step, bias, y, w = _rows()
    rows = SoftmaxRows(y, w.float())
    w32 = w.float().double()  # the problem's row weights are in the features' precision
    for got, want in [(rows.loss(Z), _loss(Z, y, w32)),
                      (rows.loss(Z, step, 0.3), _loss(Z + 0.3 * step, y, w32)),
                      (rows.loss(Z, bias, -0.7), _loss(Z - 0.7 * bias, y, w32))]:
        assert abs(got - want) <= 1e-13 * abs(want)
    huge = Z * 1e3  # max-shifted: no overflow at logits of thousands
    assert abs(rows.loss(huge) - _loss(huge, y, w32)) <= 1e-12 * abs(_loss(huge, y, w32))


def test_probabilities_and_residual_against_torch():
    Z, _, _, y, w = _rows(seed=1)
    rows = SoftmaxRows(y, w)
    P, R = rows.probabilities(Z, residual=True)
    Y = torch.nn.functional.one_hot(y, Z.shape[1]).double()
    torch.testing.assert_close(P, torch.softmax(Z, 1), rtol=1e-14, atol=1e-16)
    torch.testing.assert_close(R, w[:, None] * (torch.softmax(Z, 1) - Y), rtol=1e-14, atol=1e-18)
    torch.testing.assert_close(rows.residual(Z), R, rtol=0, atol=0)
    torch.testing.assert_close(rows.unweighted_residual(Z), torch.softmax(Z, 1) - Y, rtol=1e-14, atol=1e-15)
    # written into kept arrays: the same numbers, the same objects
    P_out, R_out = torch.full_like(Z, np.nan), torch.full_like(Z, np.nan)
    P2, R2 = rows.probabilities(Z, residual=True, out=(P_out, R_out))
    assert P2 is P_out and R2 is R_out
    torch.testing.assert_close(P2, P, rtol=0, atol=0)
    torch.testing.assert_close(R2, R, rtol=0, atol=0)
    with pytest.raises(ValueError, match="contiguous float64"):
        rows.probabilities(Z, residual=True, out=(P_out.float(), R_out))


def test_loss_writes_the_probabilities_of_the_point_it_evaluates(monkeypatch):
    # a line search's trial writes softmax(Z + t step) beside its loss: the next step starts from them
    Z, step, bias, y, w = _rows(seed=6)
    X = torch.randn(len(y), 4, dtype=torch.float64)
    problem = Problem.build(Design.build(X, device="cpu", dtype=torch.float64), y, family="multinomial",
                            n_outputs=Z.shape[1], sample_weight=w)
    cases = [(None, 1.0, Z), (step, 0.3, Z + 0.3 * step), (bias, -0.7, Z - 0.7 * bias)]
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(Problem, "softmax_rows", lambda self, Z, step=None: None)
        for s, t, point in cases:
            P = torch.full_like(Z, np.nan)
            loss = problem.loss(Z, s, t, probabilities=P)
            assert abs(loss - problem.loss(Z, s, t)) <= 1e-15 * abs(loss)  # the loss is the same with or without
            torch.testing.assert_close(P, torch.softmax(point, 1), rtol=1e-14, atol=1e-16)
    with pytest.raises(ValueError, match="contiguous float64"):
        SoftmaxRows(y, w).loss(Z, probabilities=torch.zeros(3, 3, dtype=torch.float64))
    # the point written over the step in the same pass (a line search's full step: its point becomes Z)
    monkeypatch.undo()
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(Problem, "softmax_rows", lambda self, Z, step=None: None)
        assert (problem.softmax_rows(Z, step) is not None) == compiled
        for t in (0.3, 1.0):  # the torch code makes the point in the step's own rows (t = 1: one rounding)
            written = step.clone()
            loss = problem.loss(Z, written, t, into_step=True)
            assert loss == problem.loss(Z, step, t)
            torch.testing.assert_close(written, Z + t * step, rtol=1e-15, atol=1e-15)
        with pytest.raises(ValueError, match="into_step needs an \\(n, k\\) step"):
            problem.loss(Z, bias, 0.3, into_step=True)
    binary = Problem.build(Design.build(X, device="cpu", dtype=torch.float64), (y > 4).long(), family="multinomial",
                           n_outputs=2, sample_weight=None)  # one internal output: no softmax rows
    with pytest.raises(ValueError, match="softmax head"):
        binary.loss(torch.zeros(len(y), 1, dtype=torch.float64), probabilities=torch.zeros(len(y), 1))


def test_dual_rows_and_shifted_conjugate_terms_against_the_formulas():
    # the gap check's passes: D = P - Y with the loss, D's weighted column sums and its conjugate terms in one pass;
    # the terms of the feasible dual point keep (D - M) - shift Y + add made from D's rows (M: empty classes' mass)
    Z, _, _, y, w = _rows(n=300, k=7, seed=7)
    y = torch.where(y == 2, 0, y)  # class 2 has no rows
    rows = SoftmaxRows(y, w)
    k = Z.shape[1]
    Y = torch.nn.functional.one_hot(y, k).double()
    D, loss, r, (a, others) = rows.dual_rows(Z)
    want_D = torch.softmax(Z, 1) - Y
    torch.testing.assert_close(D, want_D, rtol=1e-14, atol=1e-15)
    assert abs(loss - _loss(Z, y, w)) <= 1e-13 * abs(loss)
    torch.testing.assert_close(r, w @ want_D, rtol=1e-13, atol=1e-15)

    def terms(Dp):
        q = Dp + Y
        xlogx = torch.where(q > 0, q * torch.log(q.clamp_min(1e-300)), torch.zeros_like(q))
        return -(Dp * Y).sum(1), (xlogx * (1 - Y)).sum(1)
    for got, want in zip((a, others), terms(want_D)):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)
    mean_Y = w @ Y
    M = EmptyClassShift.of(D, Y, mean_Y)
    keep, shift, add = (torch.as_tensor(np.random.default_rng(8).random(k)) * 0.1 for _ in range(3))
    keep, add[2] = 1 - keep, 0.0  # nothing is added on an empty class (its dual entry is zero)
    empty = mean_Y <= 0
    got = rows.shifted_conjugate_terms(D, keep, shift, add, empty, M.moved)
    for g, want in zip(got, terms(keep * (D - M.rows(0, len(y), Y)) - shift * Y + add)):
        torch.testing.assert_close(g, want, rtol=1e-13, atol=1e-15)
    for g, want in zip(rows.shifted_conjugate_terms(D, keep, shift, add), terms(keep * D - shift * Y + add)):
        torch.testing.assert_close(g, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("sample_weight", [False, True])
def test_gap_check_is_the_same_with_and_without_the_compiled_passes(monkeypatch, sample_weight):
    from hf_sparse.solver.fit import _PathFitter

    rng = np.random.default_rng(9)
    n, d, k = 300, 6, 8
    X = torch.as_tensor(rng.standard_normal((n, d)))
    y = torch.as_tensor(rng.choice([0, 1, 2, 4, 5, 7], n))  # classes 3 and 6 have no rows
    w = torch.as_tensor(rng.random(n)) if sample_weight else None
    problem = Problem.build(Design.build(X, device="cpu", dtype=torch.float64), y, family="multinomial",
                            n_outputs=k, sample_weight=w)
    fitter = _PathFitter(problem, alpha=0.9, group=False, tol=1e-6, val=None)
    pen = problem.penalty(0.3 * fitter.lam_max(), 0.9, False)
    fitter.state.W = torch.as_tensor(rng.standard_normal((k, d))) * 0.2
    fitter.state.b = torch.as_tensor(rng.standard_normal(k))
    fitter.state.refresh(problem)
    assert problem.softmax_rows(fitter.state.Z) is not None
    compiled = fitter._check(pen, polish=False)
    monkeypatch.setattr(Problem, "softmax_rows", lambda self, Z, step=None: None)
    reference = fitter._check(pen, polish=False)
    assert compiled.gap > 0
    assert compiled.loss == pytest.approx(reference.loss, rel=1e-14)
    assert compiled.gap == pytest.approx(reference.gap, rel=1e-9)  # a small difference of sums of size ~ the loss
    torch.testing.assert_close(compiled.gradient, reference.gradient, rtol=1e-13, atol=1e-15)


def test_bias_gradient_is_the_same_with_and_without_the_compiled_pass(monkeypatch):
    Z, _, _, y, w = _rows(seed=5)
    X = torch.randn(len(y), 4, dtype=torch.float64)
    problem = Problem.build(Design.build(X, device="cpu", dtype=torch.float64), y, family="multinomial",
                            n_outputs=Z.shape[1], sample_weight=w)
    Y = torch.nn.functional.one_hot(y, Z.shape[1]).double()
    want = (w[:, None] * (torch.softmax(Z, 1) - Y)).sum(0)
    torch.testing.assert_close(problem.bias_gradient(Z), want, rtol=1e-13, atol=1e-16)
    monkeypatch.setattr(Problem, "softmax_rows", lambda self, Z, step=None: None)
    torch.testing.assert_close(problem.bias_gradient(Z), want, rtol=1e-13, atol=1e-16)


def test_a_bias_trial_gives_the_loss_and_the_bias_gradient_at_the_shifted_point(monkeypatch):
    """``Problem.bias_trial``, a bias polish's line-search trial: the weighted loss and its gradient in the bias at
    ``Z + t s`` in one pass, against both written out in float64, compiled and in torch's row chunks alike; and for a
    family without class labels (binomial: one sigmoid per output) through the torch code."""
    Z, _, bias, y, w = _rows(seed=9)
    X = torch.randn(len(y), 4, dtype=torch.float64)
    problem = Problem.build(Design.build(X, device="cpu", dtype=torch.float64), y, family="multinomial",
                            n_outputs=Z.shape[1], sample_weight=w)
    Y = torch.nn.functional.one_hot(y, Z.shape[1]).double()
    shifted = Z - 0.4 * bias
    want_loss, want_gradient = _loss(shifted, y, w), (w[:, None] * (torch.softmax(shifted, 1) - Y)).sum(0)
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(Problem, "softmax_rows", lambda self, Z, step=None: None)
        loss, gradient = problem.bias_trial(Z, bias, -0.4)
        assert loss == pytest.approx(want_loss, rel=1e-14), compiled
        torch.testing.assert_close(gradient, want_gradient, rtol=1e-13, atol=1e-16)
    targets = torch.as_tensor(np.random.default_rng(3).integers(0, 2, (len(y), 2)), dtype=torch.float64)
    binomial = Problem.build(Design.build(X, device="cpu", dtype=torch.float64), targets, family="multilabel",
                             n_outputs=2, sample_weight=w)
    logits = Z[:, :2]
    loss, gradient = binomial.bias_trial(logits, bias[:2], 0.25)
    moved = logits + 0.25 * bias[:2]
    want = (w[:, None] * (torch.nn.functional.softplus(moved) - moved * targets)).sum()
    assert loss == pytest.approx(float(want), rel=1e-14)
    want_gradient = (w[:, None] * (torch.sigmoid(moved) - targets)).sum(0)
    torch.testing.assert_close(gradient, want_gradient, rtol=1e-13, atol=1e-16)


def test_the_vectorized_exp_over_the_whole_range():
    # logits spread over [-800, 0] after the shift: the reference rounds too: within a few ulps, and 0 (or 1e-307) below -707
    x = torch.linspace(-800, 0, 100_001, dtype=torch.float64)
    Z = torch.stack([x, torch.zeros_like(x)], 1).contiguous()
    P = SoftmaxRows(torch.zeros(len(x), dtype=torch.long), torch.ones(len(x))).probabilities(Z)
    want = torch.exp(x) / (1 + torch.exp(x))
    normal = x > -700
    assert float(((P[normal, 0] - want[normal]).abs() / want[normal]).max()) < 1e-15
    assert float(P[~normal, 0].max()) < 1e-300


def test_compiled_passes_apply_only_to_contiguous_float64_cpu_predictions():
    Z = torch.zeros(5, 3, dtype=torch.float64)
    assert usable(Z) and usable(Z, torch.zeros(3))
    assert not usable(Z.float())
    assert not usable(torch.zeros(3, 5, dtype=torch.float64).T)
    assert not usable(Z, torch.zeros(3, 5, dtype=torch.float64).T)


def test_problem_loss_is_the_same_with_and_without_the_compiled_pass(monkeypatch):
    Z, step, bias, y, w = _rows(seed=2)
    X = torch.randn(len(y), 4, dtype=torch.float64)
    problem = Problem.build(Design.build(X, device="cpu", dtype=torch.float64), y, family="multinomial",
                            n_outputs=Z.shape[1], sample_weight=w)
    compiled = [problem.loss(Z), problem.loss(Z, step, 0.25), problem.loss(Z, bias, 2.0)]
    compiled_P, compiled_R = problem.probabilities_and_residual(Z)
    assert problem.softmax_rows(Z) is not None
    monkeypatch.setattr(Problem, "softmax_rows", lambda self, Z, step=None: None)
    torch_path = [problem.loss(Z), problem.loss(Z, step, 0.25), problem.loss(Z, bias, 2.0)]
    for a, b in zip(compiled, torch_path):
        assert abs(a - b) <= 1e-13 * abs(b)
    torch_P, torch_R = problem.probabilities_and_residual(Z)
    torch.testing.assert_close(compiled_P, torch_P, rtol=1e-14, atol=1e-16)
    torch.testing.assert_close(compiled_R, torch_R, rtol=1e-14, atol=1e-18)
    torch.testing.assert_close(problem.residual(Z), w[:, None] * (torch.softmax(Z, 1) - torch.nn.functional.one_hot(
        y, Z.shape[1]).double()))


def test_two_classes_and_multilabel_do_not_use_the_softmax_pass():
    X = torch.randn(20, 3, dtype=torch.float64)
    design = Design.build(X, device="cpu", dtype=torch.float64)
    binary = Problem.build(design, torch.arange(20) % 2, family="multinomial", n_outputs=2, sample_weight=None)
    multilabel = Problem.build(design, torch.ones(20, 2), family="multilabel", n_outputs=2, sample_weight=None)
    Z = torch.zeros(20, 1, dtype=torch.float64)
    assert binary.softmax_rows(Z) is None and multilabel.softmax_rows(torch.zeros(20, 2, dtype=torch.float64)) is None


def test_conjugate_profile_is_the_same_with_and_without_the_compiled_pass(monkeypatch):
    """The gap's softmax conjugate (``sum_i w_i sum_c q log q`` at ``q = Y + t D``), with a zero probability in it,
    compiled and in torch, at several scales ``t``, and against the sum written out."""
    import hf_sparse.solver.families as families

    Z, _, _, y, w = _rows(seed=3)
    P = torch.softmax(Z, 1)
    P[0] = 0.0
    P[0, y[0]] = 1.0  # a row with exact zeros (0 log 0 = 0)
    Y = torch.nn.functional.one_hot(y, Z.shape[1]).float()
    D = P - Y.double()
    family = families.get_family("multinomial")
    compiled = family.conjugate_profile(D, Y, w)
    monkeypatch.setattr(families, "conjugate_terms", lambda D, Y: None)
    reference = family.conjugate_profile(D, Y, w)
    for t in (1.0, 0.7, 1e-3):
        q = Y.double() + t * D
        direct = float((w * torch.where(q > 0, q * torch.log(q.clamp_min(1e-300)), 0.0).sum(1)).sum())
        assert abs(float(compiled(t)) - float(reference(t))) <= 1e-14
        assert abs(float(compiled(t)) - direct) <= 1e-12


@pytest.mark.parametrize("compiled", [True, False])
def test_conjugate_of_many_tiny_probabilities_is_not_floored(monkeypatch, compiled):
    """999 classes at probability ~1e-13 (classes without examples, pushed down by their bias): ``q log q`` of each
    counts. A floor of 1e-12 under the log (as there was) is off by 2e-10 here, which made the gap at the first
    point of a 1,000-class, 300-row path -9e-12 of the objective (reported as a failed certificate)."""
    import hf_sparse.solver.families as families

    if not compiled:
        monkeypatch.setattr(families, "conjugate_terms", lambda D, Y: None)
    Z = torch.full((4, 1000), -30.0, dtype=torch.float64)
    Z[:, 0] = 0.0
    y = torch.zeros(4, dtype=torch.long)
    Y = torch.nn.functional.one_hot(y, 1000).float()
    P = torch.softmax(Z, 1)
    w = torch.full((4,), 0.25, dtype=torch.float64)
    profile = families.get_family("multinomial").conjugate_profile(P - Y.double(), Y, w)
    exact = float((P * torch.log(P)).sum(1).mean())  # every q > 0 here
    assert abs(float(profile(1.0)) - exact) <= 1e-12 * abs(exact)  # the floor was 8% off


# --------------------------------------------------------------------------- restricted products

def _pattern_case(n=700, m=40, k=30, density=0.1, seed=0):
    rng = np.random.default_rng(seed)
    X = torch.as_tensor(rng.standard_normal((n, m)), dtype=torch.float32)
    mask = rng.random((k, m)) < density
    mask[3] = False  # a class without free columns
    mask[:, 5] = False  # a column without free classes
    mask[min(7, k - 1), :] = True  # a class with all of them
    return X, mask, rng


def test_restricted_gradient_and_matvec_against_dense_float64():
    X, mask, rng = _pattern_case()
    k = mask.shape[0]
    pattern = ClassPattern.from_mask(mask)
    R = torch.as_tensor(rng.standard_normal((X.shape[0], k)))
    dense = R.T @ X.double()
    got, sums = pattern.gradient(X, R)
    torch.testing.assert_close(got, dense[torch.from_numpy(mask)], rtol=1e-12, atol=1e-11)
    torch.testing.assert_close(sums, R.sum(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pattern.dense(got), dense * torch.from_numpy(mask), rtol=1e-12, atol=1e-11)
    W = torch.as_tensor(rng.standard_normal(mask.shape)) * torch.from_numpy(mask)
    torch.testing.assert_close(pattern.matvec(X, W), X.double() @ W.T, rtol=1e-12, atol=1e-12)
    kept = torch.full((X.shape[0], k), np.nan, dtype=torch.float64)  # a kept array: every entry rewritten
    assert pattern.matvec(X, W, out=kept) is kept
    torch.testing.assert_close(kept, X.double() @ W.T, rtol=1e-12, atol=1e-12)
    assert pattern.density == pytest.approx(mask.mean())
    # the bias added in the same pass, in every column, those of classes without a free pair too
    mask[0] = False
    W = W * torch.from_numpy(mask)
    bias = torch.as_tensor(rng.standard_normal(k))
    kept.fill_(np.nan)
    ClassPattern.from_mask(mask).matvec(X, W, out=kept, bias=bias)
    torch.testing.assert_close(kept, X.double() @ W.T + bias, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kept[:, 0], bias[0].expand(X.shape[0]), rtol=0, atol=0)


def test_row_curvatures_in_one_pass_match_torch():
    rng = np.random.default_rng(5)
    P = torch.softmax(torch.as_tensor(rng.standard_normal((130, 7))), dim=1)
    w = torch.as_tensor(rng.random(130))
    for dtype in (torch.float32, torch.float64):
        out = torch.full(P.shape, np.nan, dtype=dtype)
        assert row_curvatures(P, w, out) is out
        torch.testing.assert_close(out, (w[:, None] * P * (1 - P)).to(dtype), rtol=1e-6 if dtype == torch.float32
                                   else 1e-14, atol=0)
    with pytest.raises(ValueError, match="contiguous"):
        row_curvatures(P.T, w, torch.empty(7, 130))


def test_restricted_gradient_from_probabilities_makes_the_residual_itself():
    # P with labels and row weights: the same numbers as the residual w (P - Y), made in cache (no n x k array)
    X, mask, rng = _pattern_case(seed=2)
    n, k = X.shape[0], mask.shape[0]
    P = torch.softmax(torch.as_tensor(rng.standard_normal((n, k)) * 3), 1)
    y = torch.as_tensor(rng.integers(0, k, n))
    w = torch.as_tensor(rng.random(n), dtype=torch.float32)
    R = w.double()[:, None] * (P - torch.nn.functional.one_hot(y, k).double())
    pattern = ClassPattern.from_mask(mask)
    got, sums = pattern.gradient(X, P, y, w)
    torch.testing.assert_close(got, (R.T @ X.double())[torch.from_numpy(mask)], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sums, R.sum(0), rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="labels and weight go together"):
        pattern.gradient(X, P, y)


# by columns (past BY_ROWS_MAX_CLASSES), and by rows four classes a pass: 10, 9, 7 and 4 leave each remainder of a
# last pass, and 30 is by rows too
@pytest.mark.parametrize("k", [80, 30, 10, 9, 7, 4])
def test_restricted_shared_curvature_against_the_formula(k):
    X, mask, rng = _pattern_case(k=k, seed=1)
    n, k = X.shape[0], mask.shape[0]
    P = torch.softmax(torch.as_tensor(rng.standard_normal((n, k)) * 3), 1)
    w = torch.as_tensor(rng.random(n), dtype=torch.float32)
    q = (P @ torch.from_numpy(mask).double()).clamp(0, 1)
    expected = ((X.double() ** 2) * q * (1 - q) * w.double()[:, None]).sum(0)
    torch.testing.assert_close(ClassPattern.from_mask(mask).shared_terms(X, P, w)[1], expected, rtol=1e-12,
                               atol=1e-12)
    # the slope along the same moves: the gradient w (P - Y)^T X summed over each column's free classes
    y = torch.as_tensor(rng.integers(0, k, n))
    R = w.double()[:, None] * (P - torch.nn.functional.one_hot(y, k).double())
    slope_expected = ((R.T @ X.double()) * torch.from_numpy(mask).double()).sum(0)
    first, curvature = ClassPattern.from_mask(mask).shared_terms(X, P, w)
    label_sums = (w.double()[:, None] * torch.nn.functional.one_hot(y, k).double()).T @ X.double()
    torch.testing.assert_close(first - (label_sums * torch.from_numpy(mask)).sum(0), slope_expected, rtol=1e-12,
                               atol=1e-12)
    torch.testing.assert_close(curvature, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_rows", [None, 97])
def test_torch_shared_terms_against_the_gradient(chunk_rows):
    """The GPU's torch code for the shared moves' terms (:func:`~.shared_moves.shared_terms`): the curvature by the
    formula, and the slope (the first term less the label sums) equal to the gradient summed over each column's
    moving classes, which it replaces (no ``R^T X`` product of every pair), in rows streamed or held."""
    from hf_sparse.solver.shared_moves import shared_terms

    X, mask, rng = _pattern_case(seed=2)
    n, k = X.shape[0], mask.shape[0]
    y = torch.as_tensor(rng.integers(0, k, n))
    design = Design.build(X, device="cpu", dtype=torch.float32, chunk_rows=chunk_rows)
    problem = Problem.build(design, y, family="multinomial", n_outputs=k,
                            sample_weight=torch.as_tensor(rng.random(n), dtype=torch.float32))
    cols = torch.arange(X.shape[1])
    block = design.block(cols)
    P = torch.softmax(torch.as_tensor(rng.standard_normal((n, k)) * 3), 1)
    Xs = torch.cat([chunk for _, _, chunk in block.pieces()]).double()
    w = problem.row_weight.double()
    R = w[:, None] * (P - torch.nn.functional.one_hot(y, k).double())
    moving = torch.from_numpy(mask)
    first, curvature = shared_terms(problem, block, P, moving)
    q = (P @ moving.double()).clamp(0, 1)
    torch.testing.assert_close(curvature, ((Xs ** 2) * q * (1 - q) * w[:, None]).sum(0), rtol=1e-5, atol=1e-9)
    slope = first - (problem.label_sums() * moving).sum(0)
    torch.testing.assert_close(slope, ((R.T @ Xs) * moving).sum(0), rtol=1e-5, atol=1e-7)


def test_restricted_products_are_used_only_where_they_pay():
    X = torch.zeros(10, 100)
    sparse, middle = np.zeros((50, 100), bool), np.zeros((50, 100), bool)
    sparse[:, :2] = True  # 2% free
    middle[:, :16] = True  # 16%: dense BLAS wins the gradient, not the change of predictions
    assert all(ClassPattern.from_mask(sparse).pays(p) for p in ("gradient", "matvec", "curvature"))
    assert not ClassPattern.from_mask(middle).pays("gradient") and ClassPattern.from_mask(middle).pays("matvec")
    assert not ClassPattern.from_mask(np.ones((50, 100), bool)).pays("matvec")
    assert not ClassPattern.from_mask(np.zeros((0, 100), bool)).pays("curvature")
    # up to 32 classes the dense products' compiled kernels win at any share (the gradient's from float32 only)
    few = np.zeros((10, 100), bool)
    few[:, :2] = True
    assert all(ClassPattern.from_mask(few).pays(p) for p in ("gradient", "matvec"))
    assert not any(ClassPattern.from_mask(few).pays(p, X) for p in ("gradient", "matvec"))
    assert ClassPattern.from_mask(few).pays("gradient", X.double()) and not ClassPattern.from_mask(few).pays(
        "matvec", X.double())
    assert ClassPattern.from_mask(few).pays("matvec", X.T)  # not contiguous: no compiled dense product
    assert all(ClassPattern.from_mask(sparse).pays(p, X) for p in ("gradient", "matvec"))  # 50 classes
    assert ClassPattern.applies(X)
    assert not ClassPattern.applies(None)  # streamed columns: the dense products
    assert not ClassPattern.applies(X.T)  # not contiguous


@pytest.mark.parametrize("seed", [0, 1])
def test_block_path_is_the_same_with_restricted_and_dense_products(monkeypatch, seed):
    """The block method at 60 classes, all products restricted against all dense: both solved to a gap of 1e-9,
    the same objectives to 1e-8, every point certified either way."""
    rng = np.random.default_rng(seed)
    n, d, k = 1500, 40, 60
    X = np.maximum(rng.standard_normal((n, 8)) @ rng.standard_normal((8, d)) + 0.5 * rng.standard_normal((n, d)), 0)
    W = 3 * rng.standard_normal((k, d)) * (rng.random((k, d)) < 0.1)
    y = (standardize(X)[0] @ W.T + rng.gumbel(size=(n, k))).argmax(1)
    y[:k] = np.arange(k)
    kw = dict(n_lambdas=6, lambda_min_ratio=0.05, method="block", tol=1e-9)
    monkeypatch.setattr(class_products, "MAX_DENSITY", dict.fromkeys(class_products.MAX_DENSITY, 1.0))
    restricted = fit_path(X.astype(np.float32), y, **kw)
    monkeypatch.setattr(class_products, "MAX_DENSITY", dict.fromkeys(class_products.MAX_DENSITY, -1.0))
    dense = fit_path(X.astype(np.float32), y, **kw)
    for a, b in zip(restricted, dense):
        assert abs(a.metrics["objective"] - b.metrics["objective"]) <= 1e-8 * abs(b.metrics["objective"])
        assert a.metrics["converged"] and b.metrics["converged"]
    assert restricted[-1].metrics["nnz"] > 100


def test_compiled_class_blocks_against_the_batched_blas_ones(monkeypatch):
    """Small class blocks come from the compiled row-tile kernel (1,000 rows: three tiles and a partial one); they
    equal the batched-BLAS blocks and each class's Gram written out in float64."""
    import hf_sparse.solver.class_blocks as class_blocks
    from hf_sparse.solver.class_blocks import ClassBlocks

    rng = np.random.default_rng(4)
    n, m, k = 1000, 15, 25
    design = Design.build(torch.as_tensor(rng.standard_normal((n, 20))), device="cpu", dtype=torch.float64)
    block = design.block(torch.arange(3, 3 + m))
    h = torch.as_tensor(rng.random((n, k)))
    free = rng.random((k, m)) < 0.3
    free[0] = False
    compiled = ClassBlocks.build(block, h, free)
    assert compiled.slots.shape[1] <= class_blocks.COMPILED_MAX_SLOTS
    monkeypatch.setattr(class_blocks, "COMPILED_MAX_SLOTS", 0)
    blas = ClassBlocks.build(block, h, free)
    np.testing.assert_allclose(compiled.H, blas.H, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(class_blocks, "COMPILED_MAX_SLOTS", 5)  # some classes each way
    assert 0 < (compiled.sizes <= 5).sum() < k
    mixed = ClassBlocks.build(block, h, free)
    np.testing.assert_allclose(mixed.H, blas.H, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(class_blocks, "GRAM_ROWS_PER_BATCH", {"cpu": 64})  # a GPU's batches of rows, on the CPU
    batched = ClassBlocks.build(block, h, free)
    np.testing.assert_allclose(batched.H, blas.H, rtol=1e-12, atol=1e-12)
    Xs = block.data.numpy()
    for c in (0, 5, 24):
        A = np.hstack([Xs[:, free[c]], np.ones((n, 1))])
        s = compiled.sizes[c]
        np.testing.assert_allclose(compiled.H[c, :s, :s], A.T @ (A * h[:, c].numpy()[:, None]), rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 10, 33])
def test_thin_products_with_held_columns_against_float64(monkeypatch, dtype, k):
    """``Block.matvec`` with a few outputs runs the compiled row kernel (two outputs a pass: odd and even counts),
    past ``COMPILED_MATVEC_MAX_OUTPUTS`` BLAS: both equal the float64 product to the features' precision, in the
    output precision asked for."""
    import hf_sparse.solver.thin_products as thin_products

    calls = []
    kernel = thin_products._rows_times
    monkeypatch.setattr(thin_products, "_rows_times", lambda *a: calls.append(1) or kernel(*a))
    rng = np.random.default_rng(k)
    X = torch.as_tensor(rng.standard_normal((333, 70)))  # rows past the last four: a remainder
    design = Design.build(X, device="cpu", dtype=dtype)
    block = design.block(torch.arange(0, 70, 2))
    W = torch.as_tensor(rng.standard_normal((k, 35)), dtype=dtype)
    expected = block.data.double() @ W.double().T
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for out_dtype in (None, torch.float64):
        got = block.matvec(W, dtype=out_dtype)
        assert got.dtype == (out_dtype or dtype) and got.shape == (333, k)
        torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * float(expected.abs().max()))
    assert len(calls) == (2 if k <= thin_products.COMPILED_MATVEC_MAX_OUTPUTS else 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gathered_columns_are_the_standardized_columns(dtype):
    """A block's held columns (the compiled gather on the CPU) are the design's columns ``cols`` in their order:
    unsorted, repeated and none; the index past the last column is a column of ones, on either route."""
    rng = np.random.default_rng(3)
    design = Design.build(torch.as_tensor(rng.standard_normal((257, 40))), device="cpu", dtype=dtype)
    for cols in ([3, 0, 39, 17], [5, 5], list(range(40)), []):
        index = torch.tensor(cols, dtype=torch.long)
        data = design.block(index).data
        assert data.is_contiguous() and data.dtype == dtype
        torch.testing.assert_close(data, design.source[:, index], rtol=0, atol=0)
    # index d: a column of ones (the coupled Hessian's bias coordinates), on the compiled route and torch's
    index = torch.tensor([40, 2, 40, 7])
    expected = torch.cat([design.source, torch.ones(257, 1, dtype=dtype)], 1)[:, index]
    torch.testing.assert_close(gather_columns(design.source, index), expected, rtol=0, atol=0)
    torch.testing.assert_close(gather_columns(design.source.t().contiguous().t(), index), expected, rtol=0, atol=0)


@pytest.mark.parametrize("k", [1, 2, 3, 10, 33])
def test_accurate_rmatvec_against_float64(monkeypatch, k):
    """``R.T @ X`` from float32 rows equals the float64 product of the same float32 values to float32 block sums
    (rows not a multiple of four or of a block, an odd class count), on the compiled route up to
    ``COMPILED_RMATVEC_MAX_OUTPUTS`` and the batched GEMM past it; a strided ``X`` takes the GEMM."""
    import hf_sparse.solver.thin_products as thin_products

    calls = []
    kernel = thin_products._blocks_rmatvec
    monkeypatch.setattr(thin_products, "_blocks_rmatvec", lambda *a: calls.append(1) or kernel(*a))
    rng = np.random.default_rng(k)
    X = torch.as_tensor(rng.standard_normal((1031, 37)), dtype=torch.float32)
    R = torch.as_tensor(rng.standard_normal((1031, k)))  # float64: cast to the features' precision first
    expected = R.float().double().T @ X.double()
    magnitude = R.float().double().abs().T @ X.double().abs()
    for features in (X, X.t().contiguous().t()):
        got = thin_products.accurate_rmatvec(R, features)
        assert got.dtype == torch.float64 and got.shape == (k, 37)
        assert float(((got - expected).abs() / magnitude).max()) < 1e-6
    assert len(calls) == (1 if k <= thin_products.COMPILED_RMATVEC_MAX_OUTPUTS else 0)


def test_accurate_rmatvec_sums_blocks_in_float64():
    """Over 200,000 rows whose products nearly cancel, the block sums keep the error at 1e-8 of the sum of
    magnitudes on either route, where one float32 GEMM's is about 5e-8 (its sums run the whole length in float32)."""
    from hf_sparse.solver.thin_products import accurate_rmatvec

    rng = np.random.default_rng(0)
    X = torch.as_tensor(1 + 1e-3 * rng.standard_normal((200_003, 5)), dtype=torch.float32)
    R = torch.as_tensor(rng.standard_normal((200_003, 3)), dtype=torch.float32)
    expected = R.double().T @ X.double()
    magnitude = R.double().abs().T @ X.double().abs()
    for features in (X, X.t().contiguous().t()):
        assert float(((accurate_rmatvec(R, features) - expected).abs() / magnitude).max()) < 1e-8
    assert float((((R.T @ X).double() - expected).abs() / magnitude).max()) > 1e-8  # the test can tell them apart


def test_a_block_of_every_column_in_order_is_the_features_themselves():
    """The dense end's working set (every column, in order) holds the standardized features without a copy; any
    other order or subset is a gathered copy with the same values."""
    rng = np.random.default_rng(5)
    design = Design.build(torch.as_tensor(rng.standard_normal((64, 9))), device="cpu", dtype=torch.float32)
    every = design.block(torch.arange(9))
    assert every.data.data_ptr() == design.source.data_ptr()
    for cols in (torch.tensor([1, 0, 2, 3, 4, 5, 6, 7, 8]), torch.arange(8)):
        block = design.block(cols)
        assert block.data.data_ptr() != design.source.data_ptr()
        torch.testing.assert_close(block.data, design.source[:, cols], rtol=0, atol=0)
