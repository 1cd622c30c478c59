"""Fit a sparse head's regularization path across several GPUs (or CPU processes) with `accelerate launch`.

Each process holds one shard of the rows of the feature matrix; every gradient, objective value and lambda_max is
all-reduced, so the path equals the one a single process would fit on all rows. The features here are synthetic
with ImageNet's shape by default (n=1.28M, d=2048, k=1000, a planted sparse signal, generated shard by shard on
each GPU, so no process ever holds all rows); pass `--features file.npy --labels file.npy` to use cached features
of your own (each process memory-maps the file and keeps its rows).

Usage:
    accelerate launch --num_processes 8 examples/multi_gpu_accelerate.py --out runs/imagenet-path
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 examples/multi_gpu_accelerate.py --rows 20000 --dim 256 --classes 10 --n-lambdas 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from accelerate import Accelerator


def synthetic_shard(rank: int, world: int, n: int, d: int, k: int, per_class: int, device, seed: int = 0,
                    block: int = 8192):
    """This process's contiguous block of rows of a planted problem (class c is decided by `per_class` features).

    Rows are generated in fixed blocks seeded by their block number, so the data are the same whatever the number
    of processes: a 1-process run and an 8-process run fit the same problem."""
    g = torch.Generator().manual_seed(seed)
    planted = torch.stack([torch.randperm(d, generator=g)[:per_class] for _ in range(k)]).to(device)
    rows = np.array_split(np.arange(n), world)[rank]
    start, stop = int(rows[0]), int(rows[-1]) + 1
    parts = []
    for b in range(start // block, (stop - 1) // block + 1):
        gen = torch.Generator(device=device).manual_seed(seed + 1 + b)
        size = min(block, n - b * block)
        Xb = torch.relu(torch.randn(size, d, generator=gen, device=device))
        noise = 0.5 * torch.randn(size, k, generator=gen, device=device)
        lo, hi = max(start - b * block, 0), min(stop - b * block, size)
        parts.append((Xb[lo:hi], noise[lo:hi]))
    X = torch.cat([p[0] for p in parts])
    scores = X[:, planted].sum(-1) + torch.cat([p[1] for p in parts])
    return X, scores.argmax(1), planted


def file_shard(features: str, labels: str, rank: int, world: int):
    X = np.load(features, mmap_mode="r")
    y = np.load(labels, mmap_mode="r")
    rows = np.array_split(np.arange(len(y)), world)[rank]
    return torch.from_numpy(np.ascontiguousarray(X[rows], dtype=np.float32)), torch.from_numpy(np.asarray(y[rows]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_281_167)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=5, help="planted features per class (synthetic data)")
    parser.add_argument("--features", default=None, help="a .npy (n, d) float32 feature file instead")
    parser.add_argument("--labels", default=None, help="the matching .npy (n,) class ids")
    parser.add_argument("--n-lambdas", type=int, default=100)
    parser.add_argument("--lambda-min-ratio", type=float, default=1e-2)
    parser.add_argument("--out", default=None, help="folder to save the path in (main process only)")
    args = parser.parse_args(argv)

    from hf_sparse.solver import fit_path

    state = Accelerator()  # starts the process group under accelerate launch / torchrun
    device = state.device
    if args.features:
        X, y = file_shard(args.features, args.labels, state.process_index, state.num_processes)
        X, y = X.to(device), y.to(device)
    else:
        X, y, _ = synthetic_shard(state.process_index, state.num_processes, args.rows, args.dim, args.classes, args.per_class, device)
    n_classes = int(y.max()) + 1 if args.features else args.classes
    if state.is_main_process:
        print(f"{state.num_processes} processes on {device.type}; {len(y)} rows here, d={X.shape[1]}, k={n_classes}")
    started = time.perf_counter()
    path = fit_path(X, y, n_lambdas=args.n_lambdas, lambda_min_ratio=args.lambda_min_ratio, n_classes=n_classes,
                    device=device, progress=state.is_main_process)
    seconds = time.perf_counter() - started
    if state.is_main_process:
        last = path[-1].metrics
        print(f"path of {len(path)} lambdas in {seconds:.1f} s; world size {path.info['world_size']}; "
              f"densest point: {sum(last['features_per_class']) / n_classes:.1f} features per class, "
              f"train accuracy {last['train_accuracy']:.4f}")
        if args.out:
            path.save(args.out)
            print(f"saved to {args.out}")
    state.wait_for_everyone()
    state.end_training()  # destroys the process group: exiting with it alive can abort a process


if __name__ == "__main__":
    main()
