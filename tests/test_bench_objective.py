"""The benchmark's float64 objective, lam_max and binomial map (benchmarks/objective.py)."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from objective import (binomial_lambda, binomial_to_softmax, kkt_violation, lam_max,  # noqa: E402
                       lambda_path, null_bias, objective)


def test_objective_by_hand_3x2():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([0, 1, 1])
    W = np.array([[1.0, -1.0], [0.5, 0.0]])  # (k=2, d=2)
    b = np.array([0.0, 0.5])
    lam, alpha = 0.1, 0.5
    # logits: row0 [1, 1], row1 [-1, 0.5], row2 [0, 1]
    ce = ((math.log(math.exp(1) + math.exp(1)) - 1.0)
          + (math.log(math.exp(-1) + math.exp(0.5)) - 0.5)
          + (math.log(math.exp(0) + math.exp(1)) - 1.0)) / 3
    pen = lam * (alpha * 2.5 + (1 - alpha) / 2 * 2.25)
    assert objective(X, y, W, b, lam, alpha) == pytest.approx(ce + pen, rel=1e-14)
    # float32 input and torch-free lists give the same float64 value
    assert objective(X.astype(np.float32), y, W, b, lam, alpha) == pytest.approx(ce + pen, rel=1e-14)


def _standardized(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3
                   + rng.standard_normal((n, d)), 0)
    X = (X - X.mean(0)) / X.std(0)
    w = np.zeros((k, d))
    w[:, :3] = rng.standard_normal((k, 3)) * 2
    z = X @ w.T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=pi) for pi in p])
    return X, y


def _prox_grad(X, y, k, lam, alpha, iters=3000, W0=None):
    """Plain proximal gradient (float64) from W0 (default 0) and the null bias."""
    n, d = X.shape
    Y = np.eye(k)[y]
    W = np.zeros((k, d)) if W0 is None else W0.copy()
    b = null_bias(y, k)
    L = 0.5 * np.linalg.norm(X, 2) ** 2 / n + lam * (1 - alpha) + 1.0  # Lipschitz bound (+ bias)
    t = 1.0 / L
    for _ in range(iters):
        z = X @ W.T + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        G = (p - Y).T @ X / n + lam * (1 - alpha) * W
        b = b - t * (p - Y).mean(0)
        V = W - t * G
        W = np.sign(V) * np.maximum(np.abs(V) - t * lam * alpha, 0)
    return W, b


def test_lam_max_is_the_zero_threshold():
    k, alpha = 3, 0.99
    X, y = _standardized(300, 8, k)
    lm = lam_max(X, y, alpha)
    zero, b0 = np.zeros((k, X.shape[1])), null_bias(y, k)
    # W = 0 with the null bias satisfies the optimality conditions exactly at lam_max ...
    assert kkt_violation(X, y, zero, b0, lm, alpha) < 1e-12
    # ... and not just below it
    assert kkt_violation(X, y, zero, b0, 0.98 * lm, alpha) > 1e-4
    # an actual fit: all zero just above lam_max, not all zero just below
    W_above, _ = _prox_grad(X, y, k, 1.001 * lm, alpha)
    assert np.all(W_above == 0)
    W_below, b_below = _prox_grad(X, y, k, 0.95 * lm, alpha)
    assert np.count_nonzero(W_below) > 0
    assert kkt_violation(X, y, W_below, b_below, 0.95 * lm, alpha) < 1e-6
    path = lambda_path(lm, 25, 1e-2)
    assert path[0] == pytest.approx(lm) and path[-1] == pytest.approx(1e-2 * lm) and len(path) == 25


def test_binomial_map_is_exact():
    rng = np.random.default_rng(1)
    X, y = _standardized(200, 6, 2, seed=2)
    lam, alpha = 0.03, 0.99
    lam_b, alpha_b = binomial_lambda(lam, alpha)
    beta, beta0 = rng.standard_normal(6), 0.3
    eta = X @ beta + beta0
    binom = (np.mean(np.logaddexp(0, eta) - y * eta)
             + lam_b * (alpha_b * np.abs(beta).sum() + (1 - alpha_b) / 2 * (beta ** 2).sum()))
    W, b = binomial_to_softmax(beta, beta0)
    assert objective(X, y, W, b, lam, alpha) == pytest.approx(binom, rel=1e-13)
    # any other split of the same difference (same loss) has a larger penalty, so the
    # 2-row softmax optimum is the symmetric split and the problems are the same
    for t in (0.0, 0.2, 0.7, 1.3, -0.4):
        W_t = np.stack([-t * beta, (1 - t) * beta])
        assert objective(X, y, W_t, b, lam, alpha) >= objective(X, y, W, b, lam, alpha) - 1e-15


def test_gpu_imagenet_benchmark_dry_run_on_the_cpu(tmp_path, capsys):
    """The GPU benchmark's code (data on the device, path, gradient floor, glm_saga if installed) at a tiny shape."""
    import json

    import bench_solver

    out = tmp_path / "gpu.json"
    bench_solver.main(["--gpu-imagenet", "--gpu-device", "cpu", "--gpu-n", "600", "--gpu-d", "12", "--gpu-k", "5",
                       "--gpu-n-lambdas", "5", "--gpu-glm-saga-lambdas", "1", "--glm-saga-epochs", "3",
                       "--out", str(out)])
    report = json.loads(out.read_text())["gpu_imagenet"]
    assert (report["n"], report["d"], report["k"]) == (600, 12, 5)
    assert report["gradient_seconds"]["float32"] > 0 and report["path_seconds"] > 0
    objectives = [point["P"] for point in report["points"]]
    assert len(objectives) == 5 and objectives == sorted(objectives, reverse=True)  # less penalty, lower objective
    assert all(point["metrics"]["converged"] for point in report["points"])
    assert "one full gradient" in capsys.readouterr().out
