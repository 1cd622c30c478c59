"""The solver at extreme feature scales, and an honest duality gap (issue 13, items 2 and 3).

Column statistics are float64 and scale-free (a column is constant when its spread is at most
1e-12 of its own largest magnitude, whatever that is); constant columns are named in a warning;
features that the solve precision cannot hold are refused with an error saying to rescale them.
The duality gap is computed at a dual point that is feasible for the unpenalized bias, so it
bounds the suboptimality (checked against scikit-learn in float64), and a negative gap is never
clipped away silently.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hf_sparse.solver import fit_path
from hf_sparse.solver.design import Design
from hf_sparse.solver.fit import _PathFitter
from hf_sparse.solver.problem import Problem

from solver_helpers import sklearn_logistic
from solver_reference import objective, standardize, targets, to_standardized


def signal_data(n=400, d=6, seed=0):
    """float64 features; the label depends mostly on column 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (2.0 * X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.standard_normal(n) > 0).astype(np.int64)
    return X, y


def fit(X, y, **kw):
    kw = {"n_lambdas": 8, "lambda_min_ratio": 0.01, **kw}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = fit_path(X, y, **kw)
    return path, [str(w.message) for w in caught]


def standardized_weights(path):
    """The last point's weights on standardized features (what scaling a column must not change)."""
    return path[-1].weight.double() * path.std.double()


# --------------------------------------------------------------------------- scales

@pytest.mark.parametrize("scale, where", [
    (1e30, "all"),           # was: std overflowed in float32, an all-zero head reported converged=True
    (1e30, "all-float32"),   # the same with float32 input
    (1e20, "column"),        # was: std inf, the column dropped silently
    (1e-8, "column"),        # was: std below 1e-7 (1 + |mean|), treated as constant and dropped
    (1e-12, "column"),
])
def test_scaled_features_give_the_same_head(scale, where):
    X, y = signal_data()
    base, _ = fit(X, y)
    Xs = X.copy()
    if where == "column":
        Xs[:, 0] *= scale
    else:
        Xs *= scale
    if where == "all-float32":
        Xs = Xs.astype(np.float32)
    scaled, messages = fit(Xs, y)
    assert not messages, messages
    assert scaled[-1].metrics["nnz"] == base[-1].metrics["nnz"] > 0
    assert scaled[-1].metrics["train_accuracy"] == base[-1].metrics["train_accuracy"] > 0.9
    assert all(scaled.metric("converged"))
    expected_std = np.asarray(Xs, dtype=np.float64).std(0)
    np.testing.assert_allclose(scaled.std.double().numpy(), expected_std, rtol=1e-6)
    # the standardized problem is the same one: so is its solution
    torch.testing.assert_close(standardized_weights(scaled), standardized_weights(base), rtol=1e-4, atol=1e-5)
    # raw-space weights predict on the raw (scaled) features
    last = scaled[-1]
    logits = torch.from_numpy(np.asarray(Xs, dtype=np.float64)) @ last.weight.double().T + last.bias.double()
    accuracy = float((logits.argmax(1).numpy() == y).mean())
    assert accuracy == pytest.approx(base[-1].metrics["train_accuracy"], abs=1e-9)


def test_streamed_rows_get_the_same_statistics_at_extreme_scales():
    X, y = signal_data()
    Xs = X * 1e30
    whole, _ = fit(Xs, y, n_lambdas=4)
    streamed, _ = fit(Xs, y, n_lambdas=4, chunk_rows=64)
    torch.testing.assert_close(streamed.std, whole.std)
    torch.testing.assert_close(standardized_weights(streamed), standardized_weights(whole), rtol=1e-4, atol=1e-5)


def test_large_mean_small_spread_column_is_standardized():
    """A column with mean 1e4 and std 1e-3 carrying the signal: was left unstandardized (its
    std at the float32 'constant' threshold) and the head lost most of its accuracy."""
    X, y = signal_data(n=800, seed=1)
    centered, _ = fit(X, y)
    Xm = X.copy()
    Xm[:, 0] = 1e4 + 1e-3 * X[:, 0]
    shifted, messages = fit(Xm, y)  # float32 solve
    assert shifted.std[0].item() == pytest.approx(1e-3 * X[:, 0].std(), rel=1e-6)
    assert shifted[-1].metrics["train_accuracy"] == centered[-1].metrics["train_accuracy"] > 0.95
    torch.testing.assert_close(standardized_weights(shifted), standardized_weights(centered), rtol=1e-4, atol=1e-5)
    # float32 raw-space weights cannot carry a mean 1e7 times the spread: said, with what to do
    assert len(messages) == 1 and "Feature columns [0]" in messages[0] and "Center those features" in messages[0]
    # in float64 the raw-space head predicts as well as the standardized one, and nothing is said
    exact, messages = fit(Xm, y, dtype=torch.float64, X_val=Xm, y_val=y)
    assert not messages, messages
    assert exact[-1].metrics["val_accuracy"] == pytest.approx(exact[-1].metrics["train_accuracy"], abs=1e-9)
    assert exact[-1].metrics["train_accuracy"] == fit(X, y, dtype=torch.float64)[0][-1].metrics["train_accuracy"]


def test_constant_columns_are_named_in_a_warning():
    X, y = signal_data(d=10)
    rng = np.random.default_rng(5)
    X[:, 2] = 7.0
    X[:, 4] = 0.0
    X[:, 6] = 3e30
    X[:, 8] = 1.0 + 1e-14 * rng.standard_normal(len(X))  # float64 rounding-level spread: constant
    X[:, 9] = 1.0 + 1e-6 * rng.standard_normal(len(X))   # a small but real spread: kept
    path, messages = fit(X, y, dtype=torch.float64)
    constant = [m for m in messages if "constant" in m]
    assert len(constant) == 1 and constant[0].endswith("columns [2, 4, 6, 8].")
    assert "4 feature column(s) are constant" in constant[0]
    assert torch.isfinite(path[-1].weight).all()
    assert (path[-1].weight[:, [2, 4, 6, 8]] == 0).all()
    assert path.std[9].item() == pytest.approx(X[:, 9].std(), rel=1e-6)
    assert all(path.metric("converged"))


def test_features_beyond_the_precision_are_refused_with_what_to_do():
    X, y = signal_data()
    with pytest.raises(ValueError, match=r"Feature columns \[0, 1, 2, 3, 4, 5\] hold values up to 3\.\d+e\+40, "
                                         r"too large for float32.*Rescale the features \(e\.g\. divide those columns "
                                         r"by 1e\+40\), or fit with dtype=torch\.float64"):
        fit_path(X * 1e40, y, n_lambdas=3)
    # A column that varies by less than float32 can divide by (real encoders make such columns) gets no weight,
    # with a warning that names it and says how to use it.
    Xt = X.copy()
    Xt[:, 3] *= 1e-35
    with pytest.warns(UserWarning, match=r"1 feature column\(s\) vary by less than 1e-31 \(standard deviation as "
                                         r"small as \d\.\d+e-3[56]\), too little for float32, and get no weight: "
                                         r"columns \[3\]\. To use them, rescale those columns \(e\.g\. multiply "
                                         r"by 1e\+3[56]\) or fit with dtype=torch\.float64"):
        tiny = fit_path(Xt, y, n_lambdas=3)
    assert (tiny[-1].weight[:, 3] == 0).all() and torch.isfinite(tiny[-1].weight).all()
    # what the error suggests works: the same head in float64
    base, _ = fit(X, y)
    wide, messages = fit(X * 1e40, y, dtype=torch.float64)
    assert not messages
    assert wide[-1].metrics["train_accuracy"] == base[-1].metrics["train_accuracy"]
    torch.testing.assert_close(standardized_weights(wide), standardized_weights(base), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- the duality gap

def imbalanced(n=600, d=8, k=3, seed=0):
    """Classes of about 80%, 12% and 8% (binary: about 1 in 5 positive): the optimal biases are far from zero."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-1, 2, d)
    score = standardize(X)[0][:, :3] @ np.array([1.0, -0.7, 0.5]) + 0.5 * rng.standard_normal(n)
    y = np.digitize(score, [1.2, 2.0]) if k == 3 else (score > 1.2).astype(np.int64)
    return X, y


def test_gap_on_imbalanced_classes_is_a_certificate():
    """Was: the dual point was infeasible for the bias, the gap came out negative at every point
    and was clipped to 0. Now it is positive, below tol, and bounds the suboptimality: the dual
    value it implies lies below scikit-learn's float64 objective."""
    X, y = imbalanced()
    assert np.bincount(y).min() < 0.1 * len(y) and np.bincount(y).max() > 0.75 * len(y)
    path, messages = fit(X, y, n_lambdas=10, lambda_min_ratio=0.02, alpha=0.9, dtype=torch.float64, tol=1e-8)
    assert not messages, messages
    gaps = np.array(path.metric("gap"))
    assert (gaps >= 0).all() and (gaps <= 1e-8).all() and all(path.metric("converged"))
    assert (gaps[1:] > 0).sum() >= len(gaps[1:]) // 2, gaps  # computed, not clipped to 0
    Xs, mean, std = standardize(X)
    Y = targets(y, "multinomial", 3)
    for i in (3, 6, 9):
        p = path[i]
        W, b = to_standardized(p.weight.numpy(), p.bias.numpy(), mean, std)
        ours = objective(Xs, Y, W, b, p.lam, 0.9, "multinomial")
        reference = objective(Xs, Y, *sklearn_logistic(Xs, y, p.lam, 0.9), p.lam, 0.9, "multinomial")
        assert ours == pytest.approx(p.metrics["objective"], rel=1e-12)
        assert (ours - reference) / abs(reference) <= 1e-8  # as good as scikit-learn's
        dual = ours - p.metrics["gap"] * abs(ours)
        assert dual <= reference * (1 + 1e-12)  # weak duality: the certificate is valid


def test_gap_on_imbalanced_binary_float32_is_positive():
    """The issue's case: 2 classes, about 1 in 8 positive, float32 features, default tolerance."""
    X, y = imbalanced(n=2000, d=30, k=2)
    X = X.astype(np.float32)
    path, messages = fit(X, y, n_lambdas=24)
    assert not messages, messages
    gaps = np.array(path.metric("gap"))
    assert (gaps >= 0).all() and (gaps <= 1e-6).all() and all(path.metric("converged"))
    assert (gaps[1:] > 0).sum() >= len(gaps[1:]) // 2, gaps


@pytest.mark.parametrize("family", ["multinomial", "multilabel", "gaussian"])
def test_gap_bounds_the_suboptimality_of_any_point(family):
    """At a point away from the optimum (weights shrunk, biases off), the gap must be at least its
    distance to the optimum. With the infeasible dual point the gap came out negative."""
    X, y = imbalanced(k=3)
    if family == "multilabel":
        y = np.stack([y == 1, y == 2, y == 0], 1).astype(np.float64)
    elif family == "gaussian":
        y = np.stack([y + 3.0, 2.0 * y - 1.0], 1)
    best = fit_path(X, y, family=family, n_lambdas=6, lambda_min_ratio=0.05, alpha=0.9, dtype=torch.float64,
                    tol=1e-12)[-1]
    design = Design.build(X, device="cpu", dtype=torch.float64)
    k = 3 if family == "multinomial" else y.shape[1]
    problem = Problem.build(design, torch.as_tensor(y), family=family, n_outputs=k, sample_weight=None)
    fitter = _PathFitter(problem, alpha=0.9, group=False, tol=1e-6, val=None)
    pen = problem.penalty(best.lam, 0.9, False)
    optimum = best.metrics["objective"]
    W_std = best.weight.double() * design.std
    b_std = best.bias.double() + best.weight.double() @ design.mean
    for shrink, shift in ((1.02, 0.3), (0.8, -0.5), (0.95, 1.0)):
        fitter.state.W, fitter.state.b = W_std * shrink, b_std + shift
        fitter.state.refresh(problem)
        check = fitter._check(pen)
        assert check.objective > optimum
        assert check.gap >= (check.objective - optimum) * (1 - 1e-9)


def test_negative_gap_is_reported_not_clipped(monkeypatch):
    """Whatever the cause, a gap below the rounding floor is not accepted: converged=False and a warning."""
    original = _PathFitter._check

    def broken(self, pen, **kwargs):
        check = original(self, pen, **kwargs)
        if bool((self.state.W != 0).any()):  # every point but the all-zero first one
            check.gap = -1e-7 * abs(check.objective)
        return check

    monkeypatch.setattr(_PathFitter, "_check", broken)
    X, y = signal_data()
    with pytest.warns(RuntimeWarning, match=r"duality gap came out negative at 7 of 8 points .*as low as -1e-07 "
                                            r"of the objective.*reported converged=False"):
        path = fit_path(X, y, n_lambdas=8, lambda_min_ratio=0.01)
    assert path[0].metrics["converged"] and path[0].metrics["gap"] >= 0
    for point in path[1:]:
        assert point.metrics["gap"] == pytest.approx(-1e-7) and not point.metrics["converged"]


def test_copy_X_false_standardizes_in_place_and_fits_the_same_path():
    """``copy_X=False`` (scikit-learn's convention): a float32 tensor on the solver's device becomes its standardized
    columns, held as the design itself (no second copy), and the path is the same to the last bit; anything that
    cannot be written as the design (another dtype, a NumPy array, a tensor autograd records, X passed as X_val too)
    is copied and left as it was."""
    X, y = signal_data(n=600, d=8, seed=3)
    X[:, 3] = 2e3 + 0.5 * X[:, 3]  # a large mean against its spread
    X[:, 5] = 4.0  # constant: stays zero after centering
    X32 = torch.from_numpy(X.astype(np.float32))
    yt = torch.from_numpy(y)
    kept = fit_path(X32.clone(), yt, n_lambdas=6, lambda_min_ratio=0.05, tol=1e-8)
    overwritten = X32.clone()
    design = Design.build(overwritten.clone(), device="cpu", dtype=torch.float32, overwrite=True)
    mine = overwritten.clone()
    assert Design.build(mine, device="cpu", dtype=torch.float32, overwrite=True).source.data_ptr() == mine.data_ptr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the constant column's warning
        path = fit_path(overwritten, yt, n_lambdas=6, lambda_min_ratio=0.05, tol=1e-8, copy_X=False)
    for a, b in zip(kept, path):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    raw = X32.double().numpy()
    std = raw.std(0)
    # centered by the float32-rounded mean, the one the design keeps (7e-5 of a spread off the exact mean in column 3)
    np.testing.assert_allclose(design.mean.numpy(), raw.mean(0), rtol=1e-7)
    np.testing.assert_allclose(design.std.numpy(), np.where(std > 0, std, 1.0), rtol=1e-6)
    want = (raw - design.mean.numpy()) / design.std.numpy()
    np.testing.assert_allclose(overwritten.numpy(), want, atol=2e-6)
    assert torch.equal(overwritten, design.source)
    assert not overwritten[:, 5].any()
    # not writable as the design: copied, X untouched
    as64 = torch.from_numpy(X.copy())
    grad = X32.clone().requires_grad_(True)
    same = X32.clone()
    for given, kwargs in ((as64, {}), (X.copy(), {}), (grad, {}), (same, {"X_val": same, "y_val": yt})):
        before = given.detach().clone() if isinstance(given, torch.Tensor) else given.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_path(given, yt, n_lambdas=2, lambda_min_ratio=0.5, copy_X=False, **kwargs)
        after = given.detach() if isinstance(given, torch.Tensor) else given
        assert (after == before).all()
