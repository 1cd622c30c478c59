"""The vectorizable row helpers of the softmax kernels (solver/row_kernels.py) against numpy and libm (float64)."""

import math

import numba
import numpy as np
import pytest

from hf_sparse.solver.row_kernels import exp_row, xlogx_row_sum


@numba.njit(fastmath={"contract"}, error_model="numpy")  # as the kernels that inline them are compiled
def _exp_rows(X):
    out, scratch = np.empty_like(X), np.empty(X.shape[1])
    tops, totals = np.empty(X.shape[0]), np.empty(X.shape[0])
    for i in range(X.shape[0]):
        tops[i], totals[i] = exp_row(X[i], out[i], scratch)
    return out, tops, totals


@numba.njit(fastmath={"contract"}, error_model="numpy")
def _xlogx_sums(Q, skip):
    row, exponents, mantissas = np.empty(Q.shape[1]), np.empty(Q.shape[1]), np.empty(Q.shape[1])
    out = np.empty(Q.shape[0])
    for i in range(Q.shape[0]):
        row[:] = Q[i]  # overwritten by the helper
        out[i] = xlogx_row_sum(row, skip[i], exponents, mantissas)
    return out


@pytest.mark.parametrize("k", [1, 3, 4, 7, 1000])  # whole lanes of four and the rest
def test_exp_row_against_numpy(k):
    X = np.random.default_rng(k).normal(scale=30.0, size=(50, k))
    X[0, 0] = -1e4  # below exp's range: taken as -707, exp of it beside the row's largest entry is nothing
    out, tops, totals = _exp_rows(X)
    want = np.exp(X - X.max(1, keepdims=True))
    assert np.array_equal(tops, X.max(1))
    np.testing.assert_allclose(out, want, rtol=4e-16, atol=1e-300)
    np.testing.assert_allclose(totals, want.sum(1), rtol=1e-15)


def test_exp_row_keeps_nan():
    X = np.zeros((2, 9))
    X[0, 5] = np.nan
    X[1, 8] = np.nan  # in the lanes' remainder
    out, _, totals = _exp_rows(X)
    assert np.isnan(totals).all() and np.isnan(out[0, 5]) and np.isnan(out[1, 8])


@pytest.mark.parametrize("k", [1, 5, 64])
def test_xlogx_row_sum_against_libm(k):
    rng = np.random.default_rng(k)
    Q = np.concatenate([10.0 ** rng.uniform(-320, 5, size=(300, k)), rng.uniform(-1, 2, size=(300, k))])
    Q[0, 0], Q[1, 0] = 0.0, 1e-300  # 0 log 0 = 0; 1e-300 and below are taken as 0
    Q[2, 0], Q[3, 0] = math.sqrt(2), np.nextafter(math.sqrt(2), 2)  # either side of the mantissa's fold
    skip = np.full(len(Q), -1)
    skip[::3] = 0
    want = np.array([sum(q * math.log(q) for c, q in enumerate(row) if q > 1e-300 and c != s)
                     for row, s in zip(Q, skip)])
    got = _xlogx_sums(Q, skip)
    scale = np.array([sum(abs(q * math.log(q)) for q in row if q > 1e-300) for row in Q])
    assert np.all(np.abs(got - want) <= 4 * np.finfo(float).eps * np.maximum(scale, 1e-290))
    assert _xlogx_sums(np.zeros((1, k)), np.array([-1]))[0] == 0.0  # a row of zeros sums to exactly 0


def test_xlogx_row_sum_each_entry_within_three_ulp():
    x = np.concatenate([10.0 ** np.random.default_rng(0).uniform(-299, 300, 100_000), np.linspace(0.5, 2.0, 10_001)])
    got = _xlogx_sums(x[:, None], np.full(len(x), -1))
    want = np.array([v * math.log(v) for v in x])
    nonzero = want != 0.0
    assert np.max(np.abs(got - want)[nonzero] / np.spacing(np.abs(want[nonzero]))) <= 3
    assert np.all(got[~nonzero] == 0.0)  # x = 1 exactly


def test_xlogx_row_sum_keeps_nan():
    got = _xlogx_sums(np.array([[0.5, np.nan, 0.25]]), np.array([-1]))
    assert np.isnan(got[0])
