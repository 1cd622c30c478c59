"""Independent float64 references for the solver tests: the objective, and a long FISTA run.

Written from the objective's definition only (NumPy, float64), sharing no code with
``hf_sparse.solver``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_softmax, softmax


def standardize(X):
    X = np.asarray(X, dtype=np.float64)
    mean, std = X.mean(0), X.std(0)
    std = np.where(std > 0, std, 1.0)
    return (X - mean) / std, mean, std


def to_standardized(W_raw, b_raw, mean, std):
    """Raw-feature weights (what the solver returns) to weights on standardized features."""
    W_raw, b_raw = np.asarray(W_raw, np.float64), np.asarray(b_raw, np.float64)
    return W_raw * std, b_raw + W_raw @ mean


def targets(y, family, k):
    y = np.asarray(y)
    if family == "multinomial":
        return np.eye(k)[y.astype(int)]
    return y.reshape(len(y), -1).astype(np.float64)


def row_losses(Z, Y, family):
    if family == "multinomial":
        return -(log_softmax(Z, axis=1) * Y).sum(1)
    if family == "multilabel":
        return (np.logaddexp(0, Z) - Z * Y).sum(1)
    return 0.5 * ((Z - Y) ** 2).sum(1)


def objective(Xs, Y, W, b, lam, alpha, family, group=False, weights=None):
    """mean_i w_i loss_i / mean w + lam * (alpha * L1 (or group L1) + (1 - alpha) / 2 * |W|^2)."""
    w = np.ones(len(Xs)) if weights is None else np.asarray(weights, np.float64)
    Z = Xs @ W.T + b
    loss = (w * row_losses(Z, Y, family)).sum() / w.sum()
    l1 = np.linalg.norm(W, axis=0).sum() if group else np.abs(W).sum()
    return loss + lam * (alpha * l1 + (1 - alpha) / 2 * (W ** 2).sum())


def fista(Xs, Y, lam, alpha, family, group=False, weights=None, iterations=20000):
    """Accelerated proximal gradient with restarts, in float64, from zero."""
    n, d = Xs.shape
    k = Y.shape[1]
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    curvature = {"multinomial": 0.5, "multilabel": 0.25, "gaussian": 1.0}[family]
    A = np.hstack([Xs, np.ones((n, 1))])
    L = curvature * np.linalg.eigvalsh((A * w[:, None]).T @ A).max() + lam * (1 - alpha)
    step = 1.0 / L
    l1, l2 = lam * alpha, lam * (1 - alpha)

    def grad(W, b):
        Z = Xs @ W.T + b
        if family == "multinomial":
            R = softmax(Z, axis=1) - Y
        elif family == "multilabel":
            R = expit(Z) - Y
        else:
            R = Z - Y
        R = R * w[:, None]
        return R.T @ Xs, R.sum(0)

    def prox(V):
        V = V / (1 + step * l2)
        t = step * l1 / (1 + step * l2)
        if group:
            norms = np.linalg.norm(V, axis=0)
            return V * np.maximum(0, 1 - t / np.maximum(norms, 1e-300))
        return np.sign(V) * np.maximum(np.abs(V) - t, 0)

    def F(W, b):
        return objective(Xs, Y, W, b, lam, alpha, family, group, weights)

    W, b = np.zeros((k, d)), np.zeros(k)
    VW, Vb, t, last = W.copy(), b.copy(), 1.0, F(W, b)
    for _ in range(iterations):
        gW, gb = grad(VW, Vb)
        W_new, b_new = prox(VW - step * gW), Vb - step * gb
        current = F(W_new, b_new)
        if current > last:  # adaptive restart
            VW, Vb, t = W.copy(), b.copy(), 1.0
            continue
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        VW = W_new + (t - 1) / t_new * (W_new - W)
        Vb = b_new + (t - 1) / t_new * (b_new - b)
        W, b, t, last = W_new, b_new, t_new, current
    return W, b
