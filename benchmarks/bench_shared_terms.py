"""The shared moves' terms (``ClassPattern.shared_terms``) by columns against by rows, same process and data.

Prints, per (classes, share of pairs free), the best of five calls of each route at 20,000 rows and 700 columns,
and their largest difference; ``class_products.BY_ROWS_MAX_CLASSES`` picks the route in the solver.

Run: ``python benchmarks/bench_shared_terms.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from box_speed import best_of  # noqa: E402
from hf_sparse.solver import class_products  # noqa: E402
from hf_sparse.solver.class_products import ClassPattern  # noqa: E402


def main(n: int = 20_000, m: int = 700) -> None:
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.standard_normal((n, m)), dtype=torch.float32)
    w = torch.ones(n, dtype=torch.float64)
    for k, share in ((10, 0.8), (10, 0.3), (10, 0.1), (30, 0.5), (30, 0.1), (50, 0.3), (50, 0.05), (100, 0.3),
                     (100, 0.15), (100, 0.05)):
        P = torch.softmax(torch.as_tensor(rng.standard_normal((n, k))), 1)
        pattern = ClassPattern.from_mask(rng.random((k, m)) < share)
        results = {}
        for route, cut in (("columns", 0), ("rows", 10**9)):
            class_products.BY_ROWS_MAX_CLASSES = cut
            results[route] = best_of(lambda: pattern.shared_terms(X, P, w))
        (t_col, a), (t_row, b) = results["columns"], results["rows"]
        diff = max(float((x - y).abs().max() / y.abs().max()) for x, y in zip(a, b))
        print(f"{k:4d} classes, {share:4.0%} free: by columns {t_col * 1e3:6.1f} ms, by rows {t_row * 1e3:6.1f} ms, "
              f"largest difference {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
