"""The gap check's shift for classes without examples, kept as an n x e block, against the dense n x k formula."""

import numpy as np
import pytest
import torch

from hf_sparse.solver.design import Design
from hf_sparse.solver.empty_classes import EmptyClassShift


def _dense_shift(D, Y, empty):
    """The formula written out over all ``k`` columns (the former dense code)."""
    P_empty = (D + Y)[:, empty]
    M = torch.zeros_like(D)
    M[:, empty] = P_empty
    return M - Y * P_empty.sum(1, keepdim=True)


@pytest.mark.parametrize("chunk_rows", [None, 7])
def test_shift_matches_the_dense_formula(chunk_rows):
    rng = np.random.default_rng(0)
    n, d, k = 40, 6, 9
    labels = torch.as_tensor(rng.choice([0, 1, 3, 4, 6, 8], size=n))  # classes 2, 5 and 7 have no rows
    Y = torch.nn.functional.one_hot(labels, k).double()
    P = torch.softmax(torch.as_tensor(rng.standard_normal((n, k))), 1)
    D = P - Y
    weight = torch.as_tensor(rng.random(n))
    weight /= weight.sum()
    mean_Y = weight @ Y
    X = torch.as_tensor(rng.standard_normal((n, d)))
    design = Design.build(X, device="cpu", dtype=torch.float64, chunk_rows=chunk_rows)

    shift = EmptyClassShift.of(D, Y, mean_Y)
    M = _dense_shift(D, Y, mean_Y <= 0)
    assert shift.classes.tolist() == [2, 5, 7]
    torch.testing.assert_close(torch.cat([shift.rows(a, min(n, a + 16), Y) for a in range(0, n, 16)]), M)
    torch.testing.assert_close(shift.column_sums(weight, labels, k), weight @ M)
    Xs = (X - X.mean(0)) / X.std(0, unbiased=False)  # the design's standardized columns
    torch.testing.assert_close(shift.gradient(design, labels, weight, k), (weight[:, None] * M).T @ Xs)
    # the shifted dual point has no mass on the empty classes
    assert torch.allclose((D - M + Y)[:, mean_Y <= 0], torch.zeros(n, 3, dtype=torch.float64))


def test_no_shift_without_empty_classes():
    Y = torch.eye(3, dtype=torch.float64)
    assert EmptyClassShift.of(torch.zeros(3, 3, dtype=torch.float64), Y, Y.mean(0)) is None


@pytest.mark.parametrize("chunk_rows", [None, 7])
def test_label_sums_are_the_dense_product_in_float64(chunk_rows):
    """``Problem.label_sums`` (``(w Y)^T X`` by a scatter over labels) against the product written out."""
    from hf_sparse.solver.problem import Problem

    rng = np.random.default_rng(1)
    n, d, k = 50, 5, 7
    X = torch.as_tensor(rng.standard_normal((n, d)), dtype=torch.float32)
    y = torch.as_tensor(rng.integers(0, k - 1, n))  # the last class has no rows
    w = torch.as_tensor(rng.random(n))
    problem = Problem.build(Design.build(X, device="cpu", dtype=torch.float32, chunk_rows=chunk_rows), y,
                            family="multinomial", n_outputs=k, sample_weight=w)
    Xs = problem.design.block(torch.arange(d)).data.double() if chunk_rows is None else \
        torch.cat(list(problem.design.chunks())).double()
    want = (problem.row_weight.double()[:, None] * torch.nn.functional.one_hot(y, k).double()).T @ Xs
    torch.testing.assert_close(problem.label_sums(), want, rtol=1e-13, atol=1e-15)
    assert problem.label_sums()[k - 1].abs().max() == 0


def test_class_labels_exist_only_for_a_softmax_head_over_three_or_more_classes():
    from hf_sparse.solver.problem import Problem

    design = Design.build(torch.randn(6, 2, dtype=torch.float64), device="cpu", dtype=torch.float64)
    three = Problem.build(design, torch.tensor([0, 1, 2, 0, 1, 2]), family="multinomial", n_outputs=3,
                          sample_weight=None)
    assert three.class_labels().tolist() == [0, 1, 2, 0, 1, 2]
    two = Problem.build(design, torch.tensor([0, 1, 0, 1, 0, 1]), family="multinomial", n_outputs=2,
                        sample_weight=None)
    with pytest.raises(ValueError, match="softmax head over 3\\+ classes"):
        two.class_labels()
