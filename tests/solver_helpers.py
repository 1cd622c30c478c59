"""Helpers shared by the solver tests (test_solver.py, test_softmax_hessian.py, test_solver_scales.py): a raw-scale
data generator, the relative suboptimality of a path point against a float64 reference, and scikit-learn's saga on
the same objective. Kept out of the test modules so that no test file imports another (which would collect its
tests twice and tie one file's tests to another's).

Example:
    >>> X, y = make_data("multinomial", k=3)
    >>> suboptimality(path, X, y, "multinomial", 3, i, sklearn_logistic(standardize(X)[0], y, path[i].lam, 0.9))
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from solver_reference import objective, standardize, targets, to_standardized

ALPHA = 0.9  # a strong L2 part keeps the references' convergence quick; 0.99 is tested too
RTOL = 1e-6  # required relative suboptimality


def make_data(family, n=300, d=12, k=3, seed=0):
    """(X float32 (n, d) on a raw, shifted and scaled scale, y): labels (multinomial), 0/1 targets (multilabel) or
    responses (gaussian) from a sparse linear model of the standardized X plus noise."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 4))
    X = np.maximum(latent @ rng.standard_normal((4, d)) + 0.7 * rng.standard_normal((n, d)), 0)
    X = X * rng.uniform(0.5, 3, d) + rng.uniform(-1, 2, d)  # raw scale: the solver standardizes
    Wt = rng.standard_normal((k, d)) * (rng.random((k, d)) < 0.3)
    Z = standardize(X)[0] @ Wt.T + 0.5 * rng.standard_normal((n, k))
    if family == "multinomial":
        y = Z.argmax(1)
    elif family == "multilabel":
        y = (Z > 0.3).astype(np.float64)
    else:
        y = Z
    return X.astype(np.float32), y


def suboptimality(path, X, y, family, k, i, reference, group=False, weights=None):
    """(our objective - the reference's) / |the reference's| at path point i, both in the standardized space;
    `reference` is (W, b) there."""
    Xs, mean, std = standardize(X)
    Y = targets(y, family, k)
    p = path[i]
    W, b = to_standardized(p.weight.numpy(), p.bias.numpy(), mean, std)
    ours = objective(Xs, Y, W, b, p.lam, path.alpha, family, group, weights)
    ref = objective(Xs, Y, *reference, p.lam, path.alpha, family, group, weights)
    return (ours - ref) / abs(ref)


def sklearn_logistic(Xs, y, lam, alpha, weights=None):
    """The same objective through scikit-learn's saga (C = 1 / (lam * sum of weights))."""
    n = len(y)
    total = n if weights is None else float(np.sum(weights))
    model = LogisticRegression(l1_ratio=alpha, C=1 / (lam * total), solver="saga", tol=1e-13,
                               max_iter=200_000)
    model.fit(Xs, y, sample_weight=weights)
    return model.coef_, model.intercept_
