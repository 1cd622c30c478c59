"""The solver's GPU check, as one prepared run for a lent GPU machine (a few minutes of device time).

1. a small smoke test on the GPU (k=600, so the large-k method runs) against the same path on the CPU;
2. the ImageNet shape of issue 16 (`bench_solver.py --gpu-imagenet`, 100 lambdas to 1e-3 lam_max), stopped
   cleanly after `--budget` seconds; prints the peak GPU memory either way.

Run: ``PYTHONUNBUFFERED=1 python benchmarks/gpu_check.py --budget 420 --out $OUT``
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def smoke() -> None:
    from hf_sparse.solver import fit_path
    from synthetic import planted_sparse

    X, y, _ = planted_sparse(20_000, 128, 600, seed=0, device=torch.device("cpu"))
    t = time.perf_counter()
    cpu = fit_path(X, y, n_lambdas=3, lambda_min_ratio=0.3)
    t_cpu = time.perf_counter() - t
    t = time.perf_counter()
    gpu = fit_path(X.cuda(), y.cuda(), n_lambdas=3, lambda_min_ratio=0.3, device="cuda")
    torch.cuda.synchronize()
    t_gpu = time.perf_counter() - t
    worst = max(float((a.weight.cpu() - b.weight).abs().max()) for a, b in zip(gpu, cpu))
    print(f"smoke k=600 n=20000 d=128: method {gpu.info.get('method')}, cpu {t_cpu:.1f}s gpu {t_gpu:.1f}s, "
          f"max |W_gpu - W_cpu| {worst:.2e}, gaps {[p.metrics.get('gap') for p in gpu]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=420, help="seconds for the ImageNet-shape path")
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    smoke()
    torch.cuda.reset_peak_memory_stats()

    def stop(*_):
        raise TimeoutError(f"stopped after the {args.budget:.0f} s budget")

    signal.signal(signal.SIGALRM, stop)
    signal.alarm(int(args.budget))
    import bench_solver

    started = time.perf_counter()
    try:
        bench_solver.main(["--gpu-imagenet", "--gpu-n-lambdas", "100", "--gpu-min-ratio", "1e-3",
                           "--gpu-glm-saga-lambdas", "0", "--out", str(Path(args.out) / "gpu_imagenet.json")])
    except TimeoutError as err:
        print(f"{err} ({time.perf_counter() - started:.0f} s)")
    finally:
        signal.alarm(0)
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)


if __name__ == "__main__":
    main()
