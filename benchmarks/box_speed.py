"""How fast this box is at three kinds of the solver's work, recorded beside every benchmark's figures.

The project's 2-core box is not one machine: the same code and the same steps took 8.6-8.9 s at the k=100 proxy in
one session and 15.4-16.9 s in the next (2026-11-27 / 28). Times from different sessions compare only through the
box's own speed, so each benchmark records three figures of it, measured in its own process:

- ``gemm_gflops``: a square float32 product (2,000 x 2,000 x 2,000), bound by arithmetic;
- ``thin_ms``: ``X @ V.T`` then ``U.T @ X`` at 20,000 x 768 with 10 outputs, bound by memory, the shape of the
  solver's passes over the rows (its gradients, steps and line searches);
- ``loss_pass_ms``: one line-search trial of the many-class solver (:class:`hf_sparse.solver.softmax_rows.SoftmaxRows`
  ``.loss`` at ``Z + t S``, the probabilities written) at 20,000 x 1,000 float64, bound by its exp: a quarter to a
  third of the k=1000 proxy's time. The ninth session's box took 18.0-18.7 ms (benchmarks/RESULTS.md). It is the
  library's kernel, so it moves with the code too: the twenty-third session's faster row sums read 34-45 ms where
  the former kernel read 48-51 ms on the same box.

Example:
    >>> speed = box_speed()
    >>> sorted(speed)
    ['gemm_gflops', 'loss_pass_ms', 'thin_ms']
"""

from __future__ import annotations

import time

import torch


def best_of(work, repeats: int = 5, sync=None):
    """``(seconds, output)``: the fastest of ``repeats`` runs of ``work`` after one warm-up (which compiles; the
    fastest run is the least disturbed by other work), and the last run's output. ``sync``: called before and after
    each run (``torch.cuda.synchronize``: a GPU's work is timed, not its launch)."""
    work()
    best, output = float("inf"), None
    for _ in range(repeats):
        if sync is not None:
            sync()
        started = time.perf_counter()
        output = work()
        if sync is not None:
            sync()
        best = min(best, time.perf_counter() - started)
    return best, output


def box_speed(repeats: int = 5) -> dict:
    """``gemm_gflops``, ``thin_ms`` and ``loss_pass_ms`` (see the module's docstring), best of ``repeats``, at
    torch's thread count (the loss pass at numba's)."""
    generator = torch.Generator().manual_seed(0)
    gemm, thin = _products(repeats, generator)
    return dict(gemm_gflops=round(2 * 2000 ** 3 / gemm / 1e9, 1), thin_ms=round(thin * 1e3, 2),
                loss_pass_ms=round(_loss_pass(repeats, generator) * 1e3, 2))


def _products(repeats: int, generator) -> tuple[float, float]:
    """Seconds of the square product and of the thin pass."""
    A = torch.randn(2000, 2000, generator=generator)
    B = torch.randn(2000, 2000, generator=generator)
    X = torch.randn(20_000, 768, generator=generator)
    V = torch.randn(10, 768, generator=generator)
    return best_of(lambda: A @ B, repeats)[0], best_of(lambda: (X @ V.T).T @ X, repeats)[0]


def _loss_pass(repeats: int, generator, n: int = 20_000, k: int = 1_000) -> float:
    """Seconds of one line-search trial of the compiled softmax passes (its arrays freed on return: 480 MB)."""
    from hf_sparse.solver.softmax_rows import SoftmaxRows

    Z = torch.randn(n, k, generator=generator, dtype=torch.float64)
    S = 0.01 * torch.randn(n, k, generator=generator, dtype=torch.float64)
    P = torch.empty_like(Z)
    rows = SoftmaxRows(torch.randint(0, k, (n,), generator=generator), torch.full((n,), 1.0 / n, dtype=torch.float64))
    return best_of(lambda: rows.loss(Z, S, 0.5, probabilities=P), repeats)[0]
