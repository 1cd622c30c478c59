"""The benchmark's single objective, in float64, and its lambda path.

Every solver is scored on glm_saga's objective::

    P(W, b) = mean_i CE(softmax(W x_i + b), y_i)
              + lam * (alpha * |W|_1 + (1 - alpha) / 2 * |W|_F^2)

with ``W`` of shape (k, d) (softmax parameterization: k rows also for k=2),
``b`` (k,) unpenalized, and the same pre-standardized ``X`` (mean 0, std 1
per column, ddof=0) for all solvers.

Binary single-vector solvers (binomial logistic ``eta = x.beta + beta0``) are
mapped exactly: for a 2-row softmax model only the difference
``delta = w_1 - w_0`` enters the loss; for fixed ``delta`` the penalty
``alpha |w_0|_1 + alpha |w_1|_1 + (1-alpha)/2 (|w_0|^2 + |w_1|^2)`` is minimized
by the symmetric split ``w_0 = -delta/2, w_1 = delta/2`` (the L1 part is
``>= |delta|_1`` with equality for any sign-consistent split, the L2 part is
minimized by the even split), where it equals
``alpha |delta|_1 + (1-alpha)/4 |delta|^2``.  Hence the softmax problem at
(lam, alpha) is *the same problem* as the binomial elastic net at

    lam' = lam * (1 + alpha) / 2,     alpha' = 2 * alpha / (1 + alpha)

(lam' alpha' = lam alpha and lam' (1 - alpha') = lam (1 - alpha) / 2), and a
binomial solution (beta, beta0) maps back to ``W = [-beta/2, beta/2]``,
``b = [-beta0/2, beta0/2]`` (see :func:`binomial_lambda` and
:func:`binomial_to_softmax`).
"""

from __future__ import annotations

import numpy as np


def _as64(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def cross_entropy(X, y, W, b) -> float:
    """mean_i CE(softmax(W x_i + b), y_i) in float64."""
    X = _as64(X)
    W = _as64(W)
    b = _as64(b)
    y = np.asarray(y, dtype=np.int64)
    z = X @ W.T + b
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def penalty(W, lam: float, alpha: float) -> float:
    W = _as64(W)
    return float(lam * (alpha * np.abs(W).sum() + 0.5 * (1.0 - alpha) * (W * W).sum()))


def objective(X, y, W, b, lam: float, alpha: float) -> float:
    """P(W, b) in float64 (X may be float32; it is converted)."""
    return cross_entropy(X, y, W, b) + penalty(W, lam, alpha)


def path_objectives(X, y, weights, lambdas, alpha: float) -> np.ndarray:
    """``objective`` at each lambda of a path's ``(W, b)`` weights (NaN where the solver gave none)."""
    return np.array([objective(X, y, w[0], w[1], lam, alpha) if w is not None else np.nan
                     for w, lam in zip(weights, lambdas)])


def lam_max(X, y, alpha: float, k: int | None = None) -> float:
    """Smallest lam with W = 0 optimal (bias fit), for standardized X.

    At W = 0 the optimal bias gives class probabilities pi (class frequencies),
    so the gradient in W is (1/n) sum_i (pi - e_{y_i}) x_i^T and
    lam_max = max_{j,c} |(1/n) sum_i x_ij (pi_c - y_ic)| / alpha.
    """
    X = _as64(X)
    y = np.asarray(y, dtype=np.int64)
    if k is None:
        k = int(y.max()) + 1
    n = X.shape[0]
    Y = np.zeros((n, k))
    Y[np.arange(n), y] = 1.0
    pi = Y.mean(axis=0)
    G = X.T @ (pi[None, :] - Y) / n  # (d, k)
    return float(np.abs(G).max() / alpha)


def lambda_path(lmax: float, n_lambdas: int = 25, min_ratio: float = 1e-2) -> np.ndarray:
    """lam_max * logspace(0, log10(min_ratio), n_lambdas) (decreasing)."""
    return lmax * np.logspace(0.0, np.log10(min_ratio), n_lambdas)


def null_bias(y, k: int) -> np.ndarray:
    """Optimal bias at W = 0: log class frequencies (centered)."""
    pi = np.bincount(np.asarray(y), minlength=k) / len(y)
    b = np.log(np.maximum(pi, 1e-300))
    return b - b.mean()


def binomial_lambda(lam: float, alpha: float) -> tuple[float, float]:
    """(lam', alpha') of the binomial elastic net equivalent to the 2-row softmax one."""
    return lam * (1.0 + alpha) / 2.0, 2.0 * alpha / (1.0 + alpha)


def binomial_to_softmax(beta, beta0) -> tuple[np.ndarray, np.ndarray]:
    """Binomial (beta, beta0) for P(y=1) = sigmoid(x.beta + beta0) -> 2-row (W, b)."""
    beta = _as64(beta).reshape(-1)
    beta0 = float(np.asarray(beta0).reshape(-1)[0]) if np.ndim(beta0) else float(beta0)
    W = np.stack([-beta / 2.0, beta / 2.0])
    b = np.array([-beta0 / 2.0, beta0 / 2.0])
    return W, b


def relative_suboptimality(P, P_best) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    P_best = np.asarray(P_best, dtype=np.float64)
    return (P - P_best) / np.abs(P_best)


def kkt_violation(X, y, W, b, lam: float, alpha: float) -> float:
    """Max violation of the optimality conditions of P (a scale-free-ish check).

    For the smooth part f(W) = CE + lam (1-alpha)/2 |W|^2 with gradient G:
    w != 0: |G + lam alpha sign(w)|, w == 0: max(|G| - lam alpha, 0); bias: |grad_b|.
    """
    X = _as64(X)
    W = _as64(W)
    b = _as64(b)
    y = np.asarray(y, dtype=np.int64)
    n, k = X.shape[0], W.shape[0]
    z = X @ W.T + b
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(n), y] -= 1.0
    G = p.T @ X / n + lam * (1 - alpha) * W
    gb = p.mean(axis=0)
    la = lam * alpha
    viol = np.where(W != 0, np.abs(G + la * np.sign(W)), np.maximum(np.abs(G) - la, 0.0))
    return float(max(viol.max(), np.abs(gb).max()))


def objective_torch(X, y, W, b, lam: float, alpha: float, chunk: int = 65536) -> float:
    """``objective`` for torch tensors on any device (GPU runs), float64 accumulation.

    X stays in its dtype (float32 at ImageNet shape: a float64 copy would not
    fit), logits are formed per chunk in float64.
    """
    import torch

    W64 = W.to(device=X.device, dtype=torch.float64)
    b64 = b.to(device=X.device, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    for i in range(0, X.shape[0], chunk):
        z = X[i:i + chunk].double() @ W64.T + b64
        total += (torch.logsumexp(z, dim=1) - z.gather(1, y[i:i + chunk, None].long())[:, 0]).sum()
    ce = total.item() / X.shape[0]
    return ce + lam * (alpha * W64.abs().sum().item() + 0.5 * (1 - alpha) * (W64 * W64).sum().item())


def lam_max_torch(X, y, alpha: float, k: int, chunk: int = 65536) -> float:
    """``lam_max`` for torch tensors (standardized X), float64 accumulation."""
    import torch

    n = X.shape[0]
    counts = torch.bincount(y, minlength=k).double()
    pi = counts / n
    G = torch.zeros(X.shape[1], k, dtype=torch.float64, device=X.device)
    for i in range(0, n, chunk):
        Xi = X[i:i + chunk].double()
        Y = torch.nn.functional.one_hot(y[i:i + chunk], k).double()
        G += Xi.T @ (pi[None, :] - Y)
    return float(G.abs().max().item() / n / alpha)
