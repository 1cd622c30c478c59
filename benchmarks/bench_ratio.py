"""Ours against glm_saga in rounds, alternately in one process: the speed ratio and its spread on a noisy box.

``bench_solver.py`` runs glm_saga once (a path takes about a minute at k=10) and ours best of ``--repeats``. On the
2-core box glm_saga's own time moved 40.6-62.4 s between runs of the same problem, so one ratio says little. Here
each round times ours once and then glm_saga once, on the same data and lambdas (``bench_solver``'s set-up:
standardized features, the exact ``lam_max``, ``--n-lambdas`` to ``--min-ratio``), and the summary gives every
round's ratio, their median, and the ratio of each side's best time. Each round also checks that every point of
ours is certified and how far glm_saga's objective is above ours (float64, at every lambda).

Example::

    python benchmarks/bench_ratio.py --generator lowrank_noisy --k 10 --rounds 3 --seed 0
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_solver import OUT, machine_info, run_ours  # noqa: E402
from objective import lam_max, lambda_path, path_objectives  # noqa: E402
from reference_solvers import RUNNERS  # noqa: E402
from synthetic import GENERATORS  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--generator", default="lowrank_noisy", choices=sorted(GENERATORS))
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.99)
    ap.add_argument("--n-lambdas", type=int, default=25)
    ap.add_argument("--min-ratio", type=float, default=1e-2)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    X, y = GENERATORS[args.generator](args.n, args.d, args.k, seed=args.seed)
    X64 = X.astype(np.float64)
    lambdas = lambda_path(lam_max(X, y, args.alpha, args.k), args.n_lambdas, args.min_ratio)
    print(f"{args.generator}(n={args.n}, d={args.d}, k={args.k}, seed={args.seed}), {args.n_lambdas} lambdas to "
          f"{args.min_ratio:g} lam_max, alpha {args.alpha}, {args.rounds} rounds", flush=True)
    rounds = []
    for r in range(args.rounds):
        ours = run_ours(X, y, lambdas, args.alpha, k=args.k, tol=args.tol)
        certified = sum(bool(m and m.get("converged")) for m in ours.settings["metrics"])
        saga = RUNNERS["glm_saga"](X, y, lambdas, args.alpha, k=args.k)  # the paper's settings, its whole path
        P_ours = path_objectives(X64, y, ours.weights, lambdas, args.alpha)
        P_saga = path_objectives(X64, y, saga.weights, lambdas, args.alpha)
        above = (P_saga - P_ours) / np.abs(P_ours)
        rounds.append(dict(ours_seconds=ours.seconds, glm_saga_seconds=saga.seconds,
                           ratio=saga.seconds / ours.seconds, ours_certified=certified,
                           glm_saga_lambdas=int(np.isfinite(P_saga).sum()),
                           glm_saga_worst_above_ours=float(np.nanmax(above)),
                           glm_saga_median_above_ours=float(np.nanmedian(above))))
        last = rounds[-1]
        print(f"round {r + 1}: ours {last['ours_seconds']:.2f} s ({certified}/{len(lambdas)} certified), glm_saga "
              f"{last['glm_saga_seconds']:.2f} s ({last['glm_saga_lambdas']} lambdas; objective above ours by "
              f"{last['glm_saga_median_above_ours']:.1e} median, {last['glm_saga_worst_above_ours']:.1e} worst): "
              f"{last['ratio']:.1f}x", flush=True)
    ratios = [r["ratio"] for r in rounds]
    summary = dict(median_ratio=statistics.median(ratios), min_ratio=min(ratios), max_ratio=max(ratios),
                   best_over_best=min(r["glm_saga_seconds"] for r in rounds) / min(r["ours_seconds"] for r in rounds))
    print(f"ratio median {summary['median_ratio']:.1f}x (min {summary['min_ratio']:.1f}x, max "
          f"{summary['max_ratio']:.1f}x); each side's best {summary['best_over_best']:.1f}x")
    report = dict(command=" ".join(sys.argv), machine=machine_info(), args={k: str(v) for k, v in vars(args).items()},
                  rounds=rounds, summary=summary)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or OUT / f"bench_ratio_{args.generator}_k{args.k}_s{args.seed}_{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
