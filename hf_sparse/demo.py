"""The embedded default: a sparse head fit on features made up here, offline, in seconds.

For now a solver demo (the full pipeline joins it as the other layers land): deep-
feature-like data (a low-rank code through a ReLU) whose classes each rest on a few
planted features; the path is fit, 5 features per class are selected, and the path,
its plot and a summary are written to the output folder.

Example:
    >>> summary = run_demo("hf_sparse_demo")
    >>> summary["selected"]["features_per_class"]
    [5, 5, 5, 5]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .solver import fit_path


def planted_features(n: int = 6000, d: int = 256, k: int = 4, per_class: int = 5, seed: int = 0):
    """Post-ReLU low-rank features; class ``c`` is decided by ``per_class`` planted features."""
    rng = np.random.default_rng(seed)
    code = rng.standard_normal((n, 16))
    X = np.maximum(code @ rng.standard_normal((16, d)) / 4 + rng.standard_normal((n, d)), 0)
    planted = rng.choice(d, size=(k, per_class), replace=False)
    scores = np.stack([X[:, planted[c]].sum(1) for c in range(k)], axis=1)
    y = (scores + 0.5 * rng.standard_normal(scores.shape)).argmax(1)
    return X.astype(np.float32), y, planted


def run_demo(output_dir: str | Path = "hf_sparse_demo", *, progress: bool = True) -> dict:
    """Fit, select and save; returns the summary that is also written as ``summary.json``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    X, y, planted = planted_features()
    split = int(0.8 * len(y))
    started = time.perf_counter()
    path = fit_path(torch.from_numpy(X[:split]), torch.from_numpy(y[:split]), n_lambdas=30,
                    lambda_min_ratio=5e-2, X_val=X[split:], y_val=y[split:], progress=progress)
    seconds = time.perf_counter() - started
    index = path.select(features_per_class=5, relax=True)
    selected = path.selected
    dense = path[-1]
    found = [sorted(torch.nonzero(selected.weight[c]).flatten().tolist()) for c in range(len(planted))]
    summary = {
        "points": len(path), "seconds": round(seconds, 2), "selected_index": index,
        "selected": {"features_per_class": selected.metrics["features_per_class"],
                     "val_accuracy": selected.metrics["val_accuracy"]},
        "densest": {"features_per_class": dense.metrics["features_per_class"],
                    "val_accuracy": dense.metrics["val_accuracy"]},
        "planted_features_recovered": sum(len(set(f) & set(p.tolist())) for f, p in zip(found, planted)),
        "planted_features_total": int(planted.size),
    }
    path.save(out / "path")
    path.plot().savefig(out / "path.png", dpi=120)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
