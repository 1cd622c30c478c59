"""How fast this box is at the solver's two kinds of work, recorded beside every benchmark's figures.

The project's 2-core box is not one machine: the same code and the same steps took 8.6-8.9 s at the k=100 proxy in
one session and 15.4-16.9 s in the next (2026-11-27 / 28). Times from different sessions compare only through the
box's own speed, so each benchmark records two figures of it, measured in its own process:

- ``gemm_gflops``: a square float32 product (2,000 x 2,000 x 2,000), bound by arithmetic;
- ``thin_ms``: ``X @ V.T`` then ``U.T @ X`` at 20,000 x 768 with 10 outputs, bound by memory, the shape of the
  solver's passes over the rows (its gradients, steps and line searches).

Example:
    >>> speed = box_speed()
    >>> sorted(speed)
    ['gemm_gflops', 'thin_ms']
"""

from __future__ import annotations

import time


def best_of(work, repeats: int = 5):
    """``(seconds, output)``: the fastest of ``repeats`` runs of ``work`` after one warm-up (which compiles; the
    fastest run is the least disturbed by other work), and the last run's output."""
    work()
    best, output = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        output = work()
        best = min(best, time.perf_counter() - started)
    return best, output


def box_speed(repeats: int = 5) -> dict:
    """``gemm_gflops`` and ``thin_ms`` (see the module's docstring), best of ``repeats``, at torch's thread count."""
    import torch

    generator = torch.Generator().manual_seed(0)
    A = torch.randn(2000, 2000, generator=generator)
    B = torch.randn(2000, 2000, generator=generator)
    X = torch.randn(20_000, 768, generator=generator)
    V = torch.randn(10, 768, generator=generator)
    gemm, _ = best_of(lambda: A @ B, repeats)
    thin, _ = best_of(lambda: (X @ V.T).T @ X, repeats)
    return dict(gemm_gflops=round(2 * 2000 ** 3 / gemm / 1e9, 1), thin_ms=round(thin * 1e3, 2))
