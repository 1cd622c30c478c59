"""The solver's GPU check, as one prepared run for a lent GPU machine (a few minutes of device time).

1. a small smoke test on the GPU (k=600, the large-k `bound` method) against the same path on the CPU;
2. the ImageNet shape of issue 16 (planted sparse, 1.28M x 2048, k=1000, 100 lambdas to 1e-3 lam_max):
   the first lambdas with float32 predictions (as before 2026-11-26) for a same-process comparison, then
   today's path until ``--budget`` runs out, one line per lambda, a cProfile of where the time went, and
   the peak GPU memory of each phase. Everything printed is also written under ``--out``.

Run: ``PYTHONUNBUFFERED=1 python benchmarks/gpu_check.py --budget 220 --old-budget 30 --out $OUT``
Dry run on a CPU: ``python benchmarks/gpu_check.py --device cpu --n 20000 --d 256 --k 200 --budget 30``
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hf_sparse.solver import bound_cd, fit_path, newton, path_fitter  # noqa: E402
from objective import lam_max_torch, lambda_path  # noqa: E402
from synthetic import planted_sparse  # noqa: E402


class OutOfBudget(Exception):
    pass


def smoke() -> None:
    X, y, _ = planted_sparse(20_000, 128, 600, seed=0, device=torch.device("cpu"))
    t = time.perf_counter()
    cpu = fit_path(X, y, n_lambdas=3, lambda_min_ratio=0.3, method="bound")
    t_cpu = time.perf_counter() - t
    t = time.perf_counter()
    gpu = fit_path(X.cuda(), y.cuda(), n_lambdas=3, lambda_min_ratio=0.3, device="cuda", method="bound")
    torch.cuda.synchronize()
    t_gpu = time.perf_counter() - t
    worst = max(float((a.weight.cpu() - b.weight).abs().max()) for a, b in zip(gpu, cpu))
    print(f"smoke k=600 n=20000 d=128: method {gpu.info.get('method')}, cpu {t_cpu:.1f}s gpu {t_gpu:.1f}s, "
          f"max |W_gpu - W_cpu| {worst:.2e}, gaps {[p.metrics.get('gap') for p in gpu]}", flush=True)


def timed_path(X, y, lambdas, budget: float, label: str, log: list, sync) -> float:
    """Fit the path until it ends or ``budget`` seconds pass, logging each lambda; returns the seconds."""
    solve = path_fitter._PathFitter.solve
    started = time.perf_counter()

    def logged(self, lam):
        point = solve(self, lam)
        sync()
        m = point.metrics
        row = dict(phase=label, index=len([r for r in log if r["phase"] == label]), lam=lam,
                   elapsed=time.perf_counter() - started, seconds=m["seconds"], steps=m["iterations"],
                   n_features=m["n_features"], nnz=m["nnz"], gap=m["gap"], train_accuracy=m["train_accuracy"],
                   converged=m["converged"], peak_gib=torch.cuda.max_memory_allocated() / 2**30
                   if torch.cuda.is_available() else None)
        log.append(row)
        print(f"[{label}] {row['index']:3d} lam {lam:.4e} {row['seconds']:6.2f}s (total {row['elapsed']:6.1f}s) "
              f"steps {row['steps']:3d} feats {row['n_features']:4d} nnz {row['nnz']:6d} gap {row['gap']:.1e} "
              f"acc {row['train_accuracy']:.3f}", flush=True)
        if time.perf_counter() - started > budget:
            raise OutOfBudget
        return point

    path_fitter._PathFitter.solve = logged
    try:
        fit_path(X, y, lambdas=torch.as_tensor(lambdas), tol=1e-6, device=X.device, progress=False)
        print(f"[{label}] the whole path: {time.perf_counter() - started:.1f}s", flush=True)
    except OutOfBudget:
        print(f"[{label}] stopped after the {budget:.0f}s budget", flush=True)
    finally:
        path_fitter._PathFitter.solve = solve
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=330, help="seconds for the path with today's chunks")
    ap.add_argument("--old-budget", type=float, default=30, help="seconds for the path with float32 predictions")
    ap.add_argument("--n", type=int, default=1_281_167)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--n-lambdas", type=int, default=100)
    ap.add_argument("--min-ratio", type=float, default=1e-3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(torch.cuda.get_device_name() if cuda else "cpu", torch.__version__, flush=True)
    if cuda:
        smoke()

    def stop(*_):
        raise OutOfBudget  # a single lambda that outlasts the budget

    signal.signal(signal.SIGALRM, stop)
    t = time.perf_counter()
    X, y, _ = planted_sparse(args.n, args.d, args.k, seed=0, device=dev)
    sync()
    lmax = lam_max_torch(X, y, 0.99, args.k)
    lambdas = lambda_path(lmax, args.n_lambdas, args.min_ratio)
    print(f"X {tuple(X.shape)} made in {time.perf_counter() - t:.1f}s, {len(lambdas)} lambdas to "
          f"{args.min_ratio:g} lam_max", flush=True)

    block_cd = bound_cd.block_cd
    cd_seconds = [0.0]

    def timed_cd(*a):
        t = time.perf_counter()
        try:
            return block_cd(*a)
        finally:
            cd_seconds[0] += time.perf_counter() - t
    bound_cd.block_cd = timed_cd

    log, summary = [], {}
    float64 = newton.prediction_dtype
    phases = (("float32 predictions", lambda design: design.dtype, args.old_budget),
              ("today", float64, args.budget))
    for label, prediction_dtype, budget in phases:
        if budget <= 0:
            continue
        newton.prediction_dtype = prediction_dtype
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        cd_seconds[0] = 0.0
        profiler = cProfile.Profile()
        signal.alarm(int(budget + 120))
        profiler.enable()
        try:
            secs = timed_path(X, y, lambdas, budget, label, log, sync)
        except OutOfBudget:
            secs = float("nan")
            print(f"[{label}] one lambda outlasted the budget by two minutes", flush=True)
        finally:
            profiler.disable()
            signal.alarm(0)
            newton.prediction_dtype = float64
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        rows = [r for r in log if r["phase"] == label]
        summary[label] = dict(seconds=secs, lambdas=len(rows), peak_gib=peak, block_cd_seconds=cd_seconds[0],
                              steps=sum(r["steps"] for r in rows))
        print(f"[{label}] {len(rows)} lambdas in {secs:.1f}s, block_cd {cd_seconds[0]:.1f}s, "
              f"peak GPU memory {peak if peak is None else round(peak, 1)} GiB", flush=True)
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(30)
        (out / f"profile_{label.replace(' ', '_')}.txt").write_text(text.getvalue())
        if label == "today":
            print(text.getvalue()[:6000], flush=True)
    (out / "gpu_imagenet.json").write_text(json.dumps(dict(shape=[args.n, args.d, args.k], summary=summary,
                                                            lambdas=log), indent=1))
    same = min(summary.get("float32 predictions", {}).get("lambdas", 0), summary.get("today", {}).get("lambdas", 0))
    if same:
        before = [r for r in log if r["phase"] == "float32 predictions"][same - 1]["elapsed"]
        after = [r for r in log if r["phase"] == "today"][same - 1]["elapsed"]
        print(f"first {same} lambdas: float32 predictions {before:.1f}s, today {after:.1f}s ({before / after:.2f}x)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
