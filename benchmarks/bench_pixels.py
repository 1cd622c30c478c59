"""The solver on real pixels, strongly correlated features: MNIST's and CIFAR-10's test sets, 10 classes.

Neighbouring pixels correlate near 0.9, so the working set's Hessian near the dense end is ill-conditioned: the
regime where coordinate descent on the coupled Newton model needs thousands of sweeps. Each round fits the path
(pixels scaled to [0, 1], constant pixels dropped, ``--n-lambdas`` to ``--min-ratio`` lam_max, alpha 0.99, tol 1e-6)
with the library as it is and, with ``--compare``, with the coupled model solved by coordinate descent alone (the
solver before ``solver/sign_solve.py``), alternately in one process, and prints time, Newton steps, certified points
and the largest relative gap of each. Reads the data from the shared folder (``HF_SPARSE_DATA``).

Example::

    python benchmarks/bench_pixels.py --data cifar10-grey --compare --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_solver import OUT, machine_info  # noqa: E402


def pixels(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X float32 in [0, 1] without constant pixels, y) for ``mnist`` or ``cifar10-grey`` (the channels' mean)."""
    from hf_sparse.synthetic.planted_patch import load_cifar10, load_mnist

    if name == "mnist":
        images, y, _ = load_mnist()
        X = images.reshape(len(images), -1).astype(np.float32) / 255
    else:
        images, y, _ = load_cifar10()
        X = images.astype(np.float32).mean(3).reshape(len(images), -1) / 255
    return np.ascontiguousarray(X[:, X.std(0) > 0]), y


@contextlib.contextmanager
def coordinate_descent_only():
    """The coupled Newton model solved by coordinate descent alone, as before the sign solve."""
    from hf_sparse.solver import newton
    from hf_sparse.solver.coordinate_descent import coupled_cd

    def solve(H, g, w0, l1, l2, penalized, *, max_sweeps, tol):
        M = len(g)
        return coupled_cd(H, g, w0, l1, l2, np.arange(M, dtype=np.int64), np.ones(M, dtype=np.int64), penalized,
                          np.zeros(M), max_sweeps, tol)[0]
    kept, newton.sign_solve = newton.sign_solve, solve
    try:
        yield
    finally:
        newton.sign_solve = kept


def run(X, y, variant: str, args) -> dict:
    import torch

    from hf_sparse.solver import fit_path

    context = coordinate_descent_only() if variant == "coordinate descent only" else contextlib.nullcontext()
    with context, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        path = fit_path(torch.from_numpy(X), torch.from_numpy(y), n_lambdas=args.n_lambdas,
                        lambda_min_ratio=args.min_ratio, alpha=0.99, tol=1e-6)
        seconds = time.perf_counter() - started
    gaps = [p.metrics["gap"] for p in path]
    return dict(variant=variant, seconds=seconds, steps=sum(int(p.metrics["iterations"]) for p in path),
                certified=sum(bool(p.metrics["converged"]) for p in path), points=len(path), max_gap=max(gaps),
                uncertified=[(p.lam, p.metrics["gap"]) for p in path if not p.metrics["converged"]],
                warnings=[str(w.message)[:200] for w in caught if "tolerance" in str(w.message)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", choices=["mnist", "cifar10-grey"], default="cifar10-grey")
    ap.add_argument("--n-lambdas", type=int, default=25)
    ap.add_argument("--min-ratio", type=float, default=1e-2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--compare", action="store_true", help="also fit with coordinate descent alone on the model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    X, y = pixels(args.data)
    print(f"{args.data}: {X.shape[0]:,} x {X.shape[1]:,}, 10 classes, {args.n_lambdas} lambdas to "
          f"{args.min_ratio:g} lam_max", flush=True)
    run(X[::20], y[::20], "library", argparse.Namespace(n_lambdas=3, min_ratio=args.min_ratio))  # compile, warm up
    variants = ["library", "coordinate descent only"] if args.compare else ["library"]
    results = []
    for r in range(args.rounds):
        for variant in variants:
            result = run(X, y, variant, args)
            results.append(dict(result, round=r))
            print(f"round {r} {variant:>24}: {result['seconds']:7.2f} s, {result['steps']} steps, "
                  f"{result['certified']}/{result['points']} certified, max gap {result['max_gap']:.2e}", flush=True)
    out = args.out or OUT / f"bench_pixels_{args.data}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(args={k: str(v) for k, v in vars(args).items()}, machine=machine_info(),
                                   results=results), indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
