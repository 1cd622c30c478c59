"""The coupled Newton model solved on its signs (hf_sparse.solver.sign_solve) against independent references: scikit-
learn's elastic net in float64, and the model's optimality conditions checked by hand."""

import numpy as np
import pytest

from hf_sparse.solver import sign_solve as sign_module
from hf_sparse.solver.coordinate_descent import coupled_cd
from hf_sparse.solver.sign_solve import model_value, sign_solve


def _correlated_features(n: int, d: int, seed: int) -> np.ndarray:
    """Columns of a smooth random signal (neighbours correlated near 0.99, as pixels are): coordinate descent needs
    thousands of sweeps on their Gram."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.standard_normal((n, d)), axis=1) + 0.1 * rng.standard_normal((n, d))
    return (walk - walk.mean(0)) / walk.std(0)


def _optimality_violation(H, g, w0, v, l1, l2, penalized) -> float:
    """How far ``v`` is from the model's optimality conditions (zero at its minimizer)."""
    grad = g + H @ (v - w0) + l2 * v * penalized
    nonzero = penalized & (v != 0)
    return max(np.abs(grad[nonzero] + l1 * np.sign(v[nonzero])).max(initial=0.0),
               np.maximum(np.abs(grad[penalized & (v == 0)]) - l1, 0.0).max(initial=0.0),
               np.abs(grad[~penalized]).max(initial=0.0))


def test_least_squares_model_matches_sklearn_elastic_net_on_correlated_features():
    linear_model = pytest.importorskip("sklearn.linear_model")
    n, d = 400, 60
    X = _correlated_features(n, d, seed=0)
    rng = np.random.default_rng(1)
    y = X[:, [5, 20, 21, 40]] @ np.array([1.0, -2.0, 1.5, 0.7]) + 3.0 + 0.5 * rng.standard_normal(n)
    alpha, l1_ratio = 0.01, 0.9
    reference = linear_model.ElasticNet(alpha=alpha, l1_ratio=l1_ratio, tol=1e-14, max_iter=1_000_000).fit(X, y)
    # sklearn's objective 1/(2n) |y - X w - b|^2 + penalty is the model at w0 = 0 with H = [X, 1]'[X, 1] / n
    design = np.hstack([X, np.ones((n, 1))])
    H, g = design.T @ design / n, -design.T @ y / n
    penalized = np.append(np.ones(d, dtype=bool), False)
    l1, l2 = alpha * l1_ratio, alpha * (1 - l1_ratio)
    v = sign_solve(H, g, np.zeros(d + 1), l1, l2, penalized, max_sweeps=30, tol=1e-24)
    np.testing.assert_allclose(v[:d], reference.coef_, atol=1e-8)
    assert v[d] == pytest.approx(reference.intercept_, abs=1e-8)
    assert np.array_equal(v[:d] != 0, reference.coef_ != 0)
    # coordinate descent alone, with the same sweeps, is far from it: the sign solves did the work
    starts = np.arange(d + 1, dtype=np.int64)
    cd, converged = coupled_cd(H, g, np.zeros(d + 1), l1, l2, starts, np.ones(d + 1, dtype=np.int64), penalized,
                               np.zeros(d + 1), 30, 1e-24)
    assert not converged and np.abs(cd[:d] - reference.coef_).max() > 1e-4


def _softmax_model(n: int, d: int, k: int, seed: int):
    """A coupled multinomial Newton model: the Hessian of the mean softmax loss in (class, feature) weights and the
    k biases (flat along one constant added to every bias), and a gradient along which it is consistent."""
    rng = np.random.default_rng(seed)
    X = _correlated_features(n, d, seed)
    logits = X[:, :k] * 2.0 + rng.standard_normal((n, k))
    P = np.exp(logits - logits.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    Y = np.eye(k)[rng.integers(0, k, n)]
    design = np.hstack([X, np.ones((n, 1))])  # class c's coordinates: its d weights, then its bias (reordered below)
    H = np.zeros((k * (d + 1), k * (d + 1)))
    for a in range(k):
        for b in range(k):
            curvature = P[:, a] * ((a == b) - P[:, b])
            rows, cols = slice(a * (d + 1), (a + 1) * (d + 1)), slice(b * (d + 1), (b + 1) * (d + 1))
            H[rows, cols] = design.T @ (design * curvature[:, None]) / n
    g = (design.T @ (P - Y) / n).T.ravel()
    order = np.concatenate([np.arange(k * (d + 1)).reshape(k, d + 1)[:, :d].ravel(), np.arange(k) * (d + 1) + d])
    penalized = np.append(np.ones(k * d, dtype=bool), np.zeros(k, dtype=bool))  # weights first, the biases last
    return H[np.ix_(order, order)], g[order], penalized


@pytest.mark.parametrize("l2", [1e-4, 0.0])
def test_softmax_model_meets_its_optimality_conditions(l2):
    H, g, penalized = _softmax_model(n=300, d=25, k=4, seed=2)
    rng = np.random.default_rng(3)
    w0 = np.where(rng.random(len(g)) < 0.3, rng.standard_normal(len(g)), 0.0)
    l1 = 2e-3
    v = sign_solve(H, g, w0, l1, l2, penalized, max_sweeps=20_000, tol=1e-26)
    assert _optimality_violation(H, g, w0, v, l1, l2, penalized) < 1e-9
    assert 0 < int((v[penalized] != 0).sum()) < int(penalized.sum())  # some weights at zero, some not
    # no worse than coordinate descent's own answer
    sizes = np.ones(len(g), dtype=np.int64)
    cd, _ = coupled_cd(H, g, w0, l1, l2, np.arange(len(g), dtype=np.int64), sizes, penalized, np.zeros(len(g)),
                       20_000, 1e-26)
    assert model_value(H, g, w0, v, l1, l2, penalized) <= model_value(H, g, w0, cd, l1, l2, penalized) + 1e-13


def test_a_singular_system_falls_back_on_coordinate_descent(monkeypatch):
    """l2 = 0 and two equal columns both free: no Cholesky factor; coordinate descent's answer is returned."""
    X = _correlated_features(200, 6, seed=4)
    X[:, 3] = X[:, 2]
    y = X[:, 2] + X[:, 0]
    design = np.hstack([X, np.ones((200, 1))])
    H, g = design.T @ design / 200, -design.T @ y / 200
    penalized = np.append(np.ones(6, dtype=bool), False)
    w0 = np.array([0.5, 0.0, 0.4, 0.4, 0.0, 0.0, 0.0])  # both copies nonzero: the sign solve's system is singular
    monkeypatch.setattr(sign_module, "FIRST_SWEEPS", 1)
    steps = []
    original = sign_module._sign_step
    monkeypatch.setattr(sign_module, "_sign_step", lambda *a: steps.append(original(*a)) or steps[-1])
    v = sign_solve(H, g, w0, 1e-3, 0.0, penalized, max_sweeps=100_000, tol=1e-28)
    assert steps == [None]  # no factor: coordinate descent alone from there
    assert np.isfinite(v).all()
    assert _optimality_violation(H, g, w0, v, 1e-3, 0.0, penalized) < 1e-8


def test_a_path_on_correlated_features_takes_sign_steps_and_certifies_every_point(monkeypatch):
    """Softmax over 4 classes on random-walk features (the coupled Hessian's regime, and coordinate descent's slow
    one): the sign steps run, every point is certified, and the densest point's objective is no worse than a long
    float64 FISTA run's (to 1e-7 of it) and within its own certificate of it."""
    import torch

    from hf_sparse.solver import fit_path
    from solver_reference import fista, objective, standardize, targets, to_standardized

    X = _correlated_features(600, 40, seed=5)
    rng = np.random.default_rng(6)
    y = np.argmax(X[:, [3, 10, 20, 30]] * 3 + rng.gumbel(size=(600, 4)), axis=1)
    taken = []
    original = sign_module._sign_step
    monkeypatch.setattr(sign_module, "_sign_step", lambda *a: taken.append(1) or original(*a))
    path = fit_path(torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y), n_lambdas=10,
                    lambda_min_ratio=1e-3, tol=1e-8)
    assert taken and all(p.metrics["converged"] for p in path)
    last = path[-1]
    Xs, mean, std = standardize(X)
    Y = targets(y, "multinomial", 4)
    W, b = to_standardized(last.weight.numpy(), last.bias.numpy(), mean, std)
    ours = objective(Xs, Y, W, b, last.lam, 0.99, "multinomial")
    reference = objective(Xs, Y, *fista(Xs, Y, last.lam, 0.99, "multinomial"), last.lam, 0.99, "multinomial")
    assert ours <= reference * (1 + 1e-7)
    assert reference >= ours - last.metrics["gap"] * ours * 1.01
