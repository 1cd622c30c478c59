"""Synthetic feature matrices for the solver benchmark.

``deep_features`` mimics the penultimate-layer features of a deep network: a
low-rank latent code plus isotropic noise, shifted and passed through a ReLU
(so a sizeable fraction of every column is exactly zero, as after a ReLU),
then standardized per column (mean 0, std 1 with ddof=0).  Labels come from a
planted *sparse* linear signal through a softmax: every class depends on a few
features, so the elastic-net path has a meaningful sparse region and the
Bayes accuracy is roughly 80-95%.

``planted_sparse`` builds the same kind of data directly on a torch device
(for the ImageNet-shape GPU run: n=1.28M, d=2048, k=1000), in chunks so that
no intermediate is larger than the output.

Both are deterministic for a given seed (and device).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _relu_lowrank_chunk(z: torch.Tensor, loadings: torch.Tensor, shift: torch.Tensor,
                        noise: float, gen: torch.Generator) -> torch.Tensor:
    pre = z @ loadings
    pre += noise * torch.randn(pre.shape, generator=gen, device=pre.device, dtype=pre.dtype)
    pre += shift
    return torch.relu_(pre)


def _sparse_weights(d: int, k: int, nnz_per_class: int, gen: torch.Generator,
                    device, dtype=torch.float32) -> torch.Tensor:
    w = torch.zeros(k, d, device=device, dtype=dtype)
    for c in range(k):
        idx = torch.randperm(d, generator=gen, device=device)[:nnz_per_class]
        vals = torch.randn(nnz_per_class, generator=gen, device=device, dtype=dtype)
        # keep weights away from zero so every planted feature matters
        vals = torch.sign(vals) * (0.5 + vals.abs())
        w[c, idx] = vals
    return w


def _standardize_(x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """In-place column standardization (mean 0, std 1, ddof=0), float64 accumulators."""
    n = x.shape[0]
    s = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    ss = torch.zeros_like(s)
    for i in range(0, n, chunk):
        blk = x[i:i + chunk].double()
        s += blk.sum(0)
        ss += (blk * blk).sum(0)
    mean = s / n
    var = (ss / n - mean * mean).clamp_min(0)
    std = var.sqrt()
    std[std < 1e-12] = 1.0  # a dead column stays all-zero after centering
    mean32, inv32 = mean.to(x.dtype), (1.0 / std).to(x.dtype)
    for i in range(0, n, chunk):
        x[i:i + chunk].sub_(mean32).mul_(inv32)
    return x


def _labels(x: torch.Tensor, w: torch.Tensor, scale: float, gen: torch.Generator,
            chunk: int = 65536) -> torch.Tensor:
    """Sample y ~ softmax(scale * x @ w.T) with the Gumbel-max trick, in chunks."""
    ys = []
    for i in range(0, x.shape[0], chunk):
        logits = scale * (x[i:i + chunk] @ w.T)
        u = torch.rand(logits.shape, generator=gen, device=x.device, dtype=logits.dtype)
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
        ys.append(torch.argmax(logits + gumbel, dim=1))
    return torch.cat(ys)


def _generate(n, d, k, rank, noise, nnz_per_class, snr, seed, device, chunk=65536, label_noise=0.0,
              shared_features=None):
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    loadings = torch.randn(rank, d, generator=gen, device=device) / math.sqrt(rank)
    # per-feature shift: some features fire often, some rarely (like real ReLU units)
    shift = 0.8 * torch.randn(d, generator=gen, device=device) - 0.3
    x = torch.empty(n, d, device=device, dtype=torch.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        z = torch.randn(m, rank, generator=gen, device=device)
        x[i:i + m] = _relu_lowrank_chunk(z, loadings, shift, noise, gen)
    _standardize_(x, chunk)
    if shared_features is None:
        w = _sparse_weights(d, k, nnz_per_class, gen, device)
    else:  # every class draws its features from one pool of ``shared_features`` informative columns
        shared_features = min(shared_features, d)
        pool = torch.randperm(d, generator=gen, device=device)[:shared_features]
        w_pool = _sparse_weights(shared_features, k, min(nnz_per_class, shared_features), gen, device)
        w = torch.zeros(k, d, device=device)
        w[:, pool] = w_pool
    # normalize the signal so that the logit spread is ~snr regardless of d, k, nnz
    scale = snr / math.sqrt(nnz_per_class * 1.6)
    y = _labels(x, w, scale, gen, chunk)
    if label_noise > 0:  # a share of the labels replaced by uniformly random classes
        flip = torch.rand(n, generator=gen, device=device) < label_noise
        y = torch.where(flip, torch.randint(0, k, (n,), generator=gen, device=device), y)
    return x, y, w * scale


def deep_features(n: int = 20_000, d: int = 768, k: int = 2, *, rank: int = 64,
                  noise: float = 0.5, nnz_per_class: int = 20, snr: float | None = None,
                  seed: int = 0, return_weights: bool = False):
    """Post-ReLU, low-rank-plus-noise, standardized features with sparse planted labels.

    Returns ``(X, y)``: ``X`` float32 (n, d), every column mean 0 / std 1
    (ddof=0), ``y`` int64 (n,) in ``[0, k)``.  With ``return_weights`` also the
    planted (k, d) weight matrix (numpy float32).  ``snr`` (logit spread of
    the planted signal) defaults to 4 for k=2 and 6 for k>2, which puts the
    planted model's accuracy at ~0.92 (k=2) and ~0.86 (k=10).
    """
    if snr is None:
        snr = 4.0 if k == 2 else 6.0
    x, y, w = _generate(n, d, k, rank, noise, nnz_per_class, snr, seed, "cpu")
    out = (x.numpy(), y.numpy().astype(np.int64))
    if return_weights:
        out = out + (w.numpy(),)
    return out


def deep_features_variant(n: int = 20_000, d: int = 768, k: int = 10, *, rank: int = 64, noise: float = 0.5,
                          nnz_per_class: int = 20, shared_features: int | None = None, label_noise: float = 0.0,
                          snr: float | None = None, seed: int = 0, return_weights: bool = False):
    """:func:`deep_features` with more knobs: the latent ``rank``, informative columns shared by all
    classes (``shared_features``: the classes' planted weights all lie in one pool of that many
    columns) and ``label_noise`` (that share of labels replaced by uniformly random classes).

    Example:
        >>> X, y = deep_features_variant(2000, 64, 10, rank=256, label_noise=0.2)
    """
    if snr is None:
        snr = 4.0 if k == 2 else 6.0
    x, y, w = _generate(n, d, k, rank, noise, nnz_per_class, snr, seed, "cpu", label_noise=label_noise,
                        shared_features=shared_features)
    out = (x.numpy(), y.numpy().astype(np.int64))
    if return_weights:
        out = out + (w.numpy(),)
    return out


# Deep-feature-like generators for the benchmark (``bench_solver.py --generator NAME``):
# name -> function (n, d, k, seed) -> (X, y)
GENERATORS = {
    # the project's generator: rank 64, 20 planted columns per class
    "deep": lambda n, d, k, seed=0: deep_features(n, d, k, seed=seed),
    # high-rank features: the latent code has 512 dimensions (rank >= d/2 at d=768): weakly correlated columns
    "highrank": lambda n, d, k, seed=0: deep_features_variant(n, d, k, rank=512, seed=seed),
    # 48 informative columns shared by all classes, rank 32, 20% label noise: a dense, noisy end
    "shared48_noisy": lambda n, d, k, seed=0: deep_features_variant(n, d, k, rank=32, nnz_per_class=20,
                                                                    shared_features=48, label_noise=0.2,
                                                                    seed=seed),
    # low rank (16) and strong label noise (40%): nearly collinear columns, little signal
    "lowrank_noisy": lambda n, d, k, seed=0: deep_features_variant(n, d, k, rank=16, label_noise=0.4, seed=seed),
}


def planted_sparse(n: int = 1_281_167, d: int = 2048, k: int = 1000, *, rank: int = 256,
                   noise: float = 0.5, nnz_per_class: int = 10, snr: float = 6.0,
                   seed: int = 0, device=None):
    """ImageNet-shape synthetic data generated directly on ``device`` (torch tensors).

    Same construction as :func:`deep_features` (post-ReLU low-rank features,
    standardized; labels from a sparse planted signal through a softmax) but
    generated in chunks on the target device.  Returns ``(X, y, W_planted)``
    as torch tensors on ``device`` (X float32 (n, d), y int64 (n,)).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return _generate(n, d, k, rank, noise, nnz_per_class, snr, seed, torch.device(device))


if __name__ == "__main__":  # quick look at the data
    import time

    for k in (2, 10):
        t = time.perf_counter()
        X, y, W = deep_features(20_000, 768, k, return_weights=True)
        dt = time.perf_counter() - t
        logits = X @ W.T
        bayes_acc = (logits.argmax(1) == y).mean()
        print(f"k={k}: X {X.shape} {X.dtype} in {dt:.2f}s, zeros before std "
              f"{(X == X.min(0)).mean():.2f}, class freq {np.bincount(y) / len(y)}, "
              f"planted-argmax acc {bayes_acc:.3f}, mean {X.mean():.1e}, std {X.std(0).mean():.4f}")
