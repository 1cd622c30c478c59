"""Elastic-net path benchmark: hf_sparse.solver against glm_saga, sklearn saga, adelie, glmnet.

In one process, on the same standardized X (mean 0, std 1 per column, ddof=0)
and the same lambda path (``lam_max * logspace(0, log10(min_ratio), L)``, with
the exact multinomial ``lam_max``), every solver fits the whole path of

    P(W, b) = mean_i CE(softmax(W x_i + b), y_i) + lam (alpha |W|_1 + (1-alpha)/2 |W|_F^2)

(glm_saga's objective; W (k, d), bias unpenalized).  Each solver's answer is
mapped to the k-row softmax form (exact parameter maps: see
``reference_solvers.py`` and ``objective.py``) and P is evaluated in float64
with numpy at every lambda; the relative suboptimality is
``(P - P_best) / |P_best|`` with ``P_best`` the lowest P any solver reached at
that lambda.

The table gives, per solver: whole-path seconds, speedup against glm_saga and
against the fastest compiled CPU path solver measured (adelie / glmnet /
skglm), and the worst and median relative suboptimality over the lambdas it
was scored on.  Results go to ``benchmarks/out/*.json``.

glm_saga (the paper's solver, lr 0.1, batch 256, tol 1e-4, lookbehind 3, at
most 2000 epochs per lambda) runs the whole path by default (``--glm-saga-lambdas
0``; about 3 minutes at k=10 on 2 cores).  ``--glm-saga-lambdas N`` runs only its
first N-2 lambdas in sequence plus the last 2 (warm-started from the best solution
at the lambda before) and *estimates* the whole-path time by interpolating the
missing lambdas' times, marked ``~`` in the table.  That estimate is low: the
warm-started tail is far cheaper than glm_saga's own path reaches it (at k=10 it
estimated 65 s for a path that takes 168 s).  ``--glm-saga-head N`` runs only its first N lambdas, no
estimate: the summary then compares ours and glm_saga on those N lambdas alone (each point's own seconds).

Examples::

    python benchmarks/bench_solver.py                       # synthetic, k=2 and k=10
    python benchmarks/bench_solver.py --k 2 --solvers ours adelie glmnet
    python benchmarks/bench_solver.py --data sst2 --sst2-n 5000
    python benchmarks/bench_solver.py --gpu-imagenet        # on a GPU machine: ours, the floor, glm_saga x3
    python benchmarks/bench_solver.py --proxy k1000 --solvers ours glm_saga --glm-saga-head 5
    python benchmarks/bench_solver.py --proxy k1000 --solvers ours glm_saga --glm-saga-budget 1500
    python benchmarks/bench_solver.py --proxy k10 --generator highrank --solvers ours glm_saga

``ours`` is ``fit_path(method="auto")``; ``ours_newton``, ``ours_block`` and ``ours_bound`` force one of its
solvers (proximal Newton; Newton on the class blocks with shared-feature moves; the large-k bound solver), to
compare them in one process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from box_speed import box_speed  # noqa: E402
from objective import (lam_max, lambda_path, path_objectives, relative_suboptimality,  # noqa: E402
                       cross_entropy)
from reference_solvers import COMPILED, RUNNERS, PathResult  # noqa: E402

OUT = HERE / "out"
ALL_SOLVERS = ["ours", "ours_newton", "ours_block", "ours_bound", "adelie", "adelie_binomial", "glmnet", "skglm",
               "sklearn_saga", "glm_saga"]
DEFAULT_SOLVERS = ["ours", "adelie", "adelie_binomial", "glmnet", "sklearn_saga", "glm_saga"]


# --------------------------------------------------------------------------- our solver

def run_ours(X, y, lambdas, alpha, *, k=None, tol=1e-7, device=None, repeats=1,
             threads=None, method="auto", name="ours") -> PathResult:
    import torch
    from hf_sparse.solver import fit_path

    Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    lam_t = torch.as_tensor(np.asarray(lambdas, dtype=np.float64))
    times = []
    path = None
    # untimed, on a tenth of the rows: numba compiles what the path will run (its cache is per source file, so the
    # first run after a change compiled inside the timed fit: 21.7 s against 8.3 s at k=10, 2026-11-27)
    few = max(1, len(yt) // 10)
    fit_path(Xt[:few], yt[:few], family="multinomial", alpha=alpha, lambdas=lam_t, tol=tol, device=device,
             method=method)
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        path = fit_path(Xt, yt, family="multinomial", alpha=alpha, lambdas=lam_t, tol=tol,
                        device=device, method=method)
        times.append(time.perf_counter() - t0)
    plams = np.asarray(path.lambdas, dtype=np.float64)
    weights, metrics = [], []
    for lam in lambdas:
        j = int(np.argmin(np.abs(plams - lam))) if len(plams) else -1
        if j < 0 or abs(plams[j] - lam) > 1e-6 * lam or j >= len(path):
            weights.append(None)
            metrics.append(None)
            continue
        p = path[j]
        weights.append((p.weight.detach().double().cpu().numpy(), p.bias.detach().double().cpu().numpy()))
        metrics.append({kk: (vv if isinstance(vv, (int, float, str, bool)) or vv is None else str(vv))
                        for kk, vv in p.metrics.items()})
    gaps = [g for g in path.metric("gap") if g is not None]
    return PathResult(name, weights, min(times), None,
                      notes=(f"{len(path)} points, method {path.info.get('method')}, "
                             f"{sum(path.metric('converged'))} converged, worst gap {max(gaps):.2e}; "
                             f"repeats {['%.2f' % t for t in times]}"),
                      settings=dict(tol=tol, device=str(device), all_seconds=times,
                                    metrics=metrics))


def _run(name, X, y, lambdas, alpha, k, args, best_so_far):
    if name.startswith("ours"):
        method = {"ours": "auto", "ours_newton": "newton", "ours_block": "block", "ours_bound": "bound"}[name]
        return run_ours(X, y, lambdas, alpha, k=k, tol=args.tol, repeats=args.repeats, method=method, name=name)
    if name.startswith("adelie"):
        kw = dict(n_threads=args.threads, tol=args.adelie_tol, irls_tol=args.adelie_tol)
    elif name == "glmnet":
        kw = dict(tol=args.glmnet_tol)
    else:
        kw = {}
    if name == "glm_saga":
        cap = args.glm_saga_head or args.glm_saga_lambdas or None
        tail = best_so_far if cap is not None and cap < len(lambdas) and not args.glm_saga_head else None
        return RUNNERS[name](X, y, lambdas, alpha, k=k, max_lambdas=cap, tail_warm_starts=tail,
                             nepochs=args.glm_saga_epochs, verbose=args.verbose,
                             budget_seconds=args.glm_saga_budget or None)
    if name == "sklearn_saga":
        return RUNNERS[name](X, y, lambdas, alpha, k=k, tol=args.sklearn_tol,
                             max_iter=args.sklearn_max_iter)
    fn = RUNNERS[name]
    res = None
    times = []
    for _ in range(max(1, args.repeats)):
        res = fn(X, y, lambdas, alpha, k=k, **kw)
        times.append(res.seconds)
    res.seconds = min(times)
    res.settings["all_seconds"] = times
    return res


# --------------------------------------------------------------------------- data

def load_data(args, k):
    if args.data == "synthetic":
        from synthetic import GENERATORS

        X, y = GENERATORS[args.generator](args.n, args.d, k, seed=args.seed)
        desc = f"synthetic {args.generator}(n={args.n}, d={args.d}, k={k}, seed={args.seed})"
    else:
        from sst2_features import load_features, standardize

        Xr, y = load_features(args.sst2_n)
        X = standardize(Xr)
        k = 2
        desc = f"SST-2 train[:{args.sst2_n}] through all-MiniLM-L6-v2 (mean pooled), standardized"
    return X, y, k, desc


def machine_info():
    import torch

    info = dict(loadavg_at_start=_loadavg(), platform=platform.platform(), python=platform.python_version(),
                cpu_count=os.cpu_count(), torch=torch.__version__,
                torch_threads=torch.get_num_threads(), date=datetime.datetime.now().isoformat(),
                box_speed=box_speed())  # the box's own speed: figures of different sessions compare through it
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("glm_saga", "adelie", "sklearn", "glmnet", "skglm"):
        try:
            from importlib.metadata import version

            info[mod] = version({"sklearn": "scikit-learn", "glm_saga": "glm-saga"}.get(mod, mod))
        except Exception:  # noqa: BLE001
            pass
    return info


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


# --------------------------------------------------------------------------- one problem

def bench_one(args, k):
    X, y, k, desc = load_data(args, k)
    n, d = X.shape
    alpha = args.alpha
    lmax = lam_max(X, y, alpha, k)
    lambdas = lambda_path(lmax, args.n_lambdas, args.min_ratio)
    X64 = X.astype(np.float64)
    print(f"\n=== {desc}: n={n} d={d} k={k}, {args.n_lambdas} lambdas from lam_max={lmax:.6g} "
          f"to {args.min_ratio:g} lam_max, alpha={alpha}", flush=True)

    solvers = [s for s in args.solvers if not (s in ("adelie_binomial", "skglm") and k != 2)
               and not (s in ("ours_bound", "ours_block") and k < 3)]
    # glm_saga last: its capped mode warm-starts the tail from the best solution so far
    solvers = sorted(solvers, key=lambda s: s == "glm_saga")
    results: dict[str, PathResult] = {}
    P: dict[str, np.ndarray] = {}
    load = {"start": _loadavg()}
    for name in solvers:
        if name.startswith("ours"):
            try:
                import hf_sparse.solver  # noqa: F401
            except Exception as e:  # noqa: BLE001
                print(f"-- ours: skipped ({type(e).__name__}: {e})", flush=True)
                continue
        best_so_far = None
        if P:
            best_so_far = {}
            for i in range(len(lambdas)):
                cands = [(P[s][i], s) for s in P if not np.isnan(P[s][i])]
                if cands:
                    best_so_far[i] = results[min(cands)[1]].weights[i]
        print(f"-- {name} ...", flush=True)
        la = _loadavg()
        try:
            res = _run(name, X, y, lambdas, alpha, k, args, best_so_far)
        except Exception as e:  # noqa: BLE001
            print(f"   {name} failed: {type(e).__name__}: {e}", flush=True)
            continue
        res.settings["loadavg_before"] = la
        res.settings["loadavg_after"] = _loadavg()
        results[name] = res
        P[name] = path_objectives(X64, y, res.weights, lambdas, alpha)
        print(f"   {res.seconds:.2f}s{' (estimated)' if res.estimated else ''}  {res.notes[:300]}",
              flush=True)
    load["end"] = _loadavg()
    if not P:
        return None

    allP = np.vstack([P[s] for s in P])
    P_best = np.nanmin(allP, axis=0)
    best_solver = [list(P)[int(np.nanargmin(allP[:, i]))] if not np.all(np.isnan(allP[:, i])) else None
                   for i in range(len(lambdas))]
    rel = {s: relative_suboptimality(P[s], P_best) for s in P}

    # sparsity / accuracy of the best solution at each lambda
    per_lambda = []
    for i, lam in enumerate(lambdas):
        bs = best_solver[i]
        if bs is None:  # no solver reached this lambda (e.g. glm_saga alone, on its first lambdas)
            continue
        W, b = results[bs].weights[i]
        acc = float(((X64 @ W.T + b).argmax(1) == y).mean())
        per_lambda.append(dict(
            index=i, lam=float(lam), P_best=float(P_best[i]), best=bs,
            nnz_features=int((np.abs(W) > 0).any(axis=0).sum()), nnz_coefs=int((W != 0).sum()),
            train_accuracy=acc, cross_entropy=cross_entropy(X64, y, W, b),
            rel_subopt={s: (None if np.isnan(rel[s][i]) else float(rel[s][i])) for s in rel}))

    t_saga = results["glm_saga"].seconds if "glm_saga" in results else None
    compiled = {s: results[s].seconds for s in results if s in COMPILED}
    fastest = min(compiled, key=compiled.get) if compiled else None

    print(f"\n{'solver':<16}{'path s':>10}{'x glm_saga':>12}{'x ' + (fastest or 'compiled'):>18}"
          f"{'worst rel':>12}{'median rel':>12}{'scored':>8}")
    rows = []
    for s, res in results.items():
        r = rel[s][~np.isnan(rel[s])]
        worst = float(r.max()) if len(r) else float("nan")
        med = float(np.median(r)) if len(r) else float("nan")
        sp_saga = t_saga / res.seconds if t_saga else float("nan")
        sp_fast = compiled[fastest] / res.seconds if fastest else float("nan")
        # "~": an estimate; ">": measured until a time budget stopped it (a lower bound)
        tstr = ("~" if res.estimated else ">" if res.settings.get("unfinished") else "") + f"{res.seconds:.2f}"
        print(f"{s:<16}{tstr:>10}{sp_saga:>12.2f}{sp_fast:>18.2f}{worst:>12.2e}{med:>12.2e}"
              f"{len(r):>5}/{len(lambdas)}")
        rows.append(dict(solver=s, seconds=res.seconds, estimated=res.estimated,
                         measured_seconds=res.measured_seconds, per_lambda_seconds=res.per_lambda_seconds,
                         speedup_vs_glm_saga=sp_saga, speedup_vs_fastest_compiled=sp_fast,
                         worst_rel_subopt=worst, median_rel_subopt=med, n_scored=int(len(r)),
                         notes=res.notes, settings=res.settings))
    head = _head_comparison(results, args.glm_saga_head)
    budget = _budget_comparison(results)
    print(f"\n{'i':>3}{'lambda':>12}{'nnz feat':>9}{'nnz coef':>9}{'acc':>7}  best           " +
          "".join(f"{s[:12]:>13}" for s in results))
    for row in per_lambda:
        print(f"{row['index']:>3}{row['lam']:>12.4e}{row['nnz_features']:>9}{row['nnz_coefs']:>9}"
              f"{row['train_accuracy']:>7.3f}  {row['best']:<15}" +
              "".join(f"{'-' if row['rel_subopt'][s] is None else format(row['rel_subopt'][s], '.1e'):>13}"
                      for s in results))
    return dict(data=desc, n=n, d=d, k=k, alpha=alpha, lam_max=lmax, lambdas=lambdas.tolist(),
                fastest_compiled=fastest, solvers=rows, per_lambda=per_lambda, loadavg=load, glm_saga_head=head,
                glm_saga_budget=budget)


def _head_comparison(results, n_head: int):
    """With ``--glm-saga-head N``: every solver's seconds on the path's first N lambdas against glm_saga's."""
    saga = results.get("glm_saga")
    if not n_head or saga is None or saga.per_lambda_seconds is None:
        return None
    saga_s = float(sum(t for t in saga.per_lambda_seconds[:n_head] if t is not None))
    out = {"lambdas": n_head, "glm_saga_seconds": saga_s}
    print(f"\non the first {n_head} lambdas (glm_saga's head; each point's own seconds): glm_saga {saga_s:.2f}s")
    for name, res in results.items():
        points = res.settings.get("metrics") if name.startswith("ours") else None
        if points:
            ours_s = float(sum(m["seconds"] for m in points[:n_head] if m is not None))
            out[name] = {"seconds": ours_s, "speedup_vs_glm_saga": saga_s / ours_s}
            print(f"  {name}: {ours_s:.2f}s, {saga_s / ours_s:.1f}x glm_saga")
    return out


def _budget_comparison(results):
    """With ``--glm-saga-budget S`` and glm_saga out of it: its finished lambdas, where it stopped, and how much
    faster each of our solvers' whole path is than glm_saga's measured seconds (a lower bound on its own time)."""
    saga = results.get("glm_saga")
    unfinished = saga.settings.get("unfinished") if saga is not None else None
    if not unfinished:
        return None
    finished = [i for i, t in enumerate(saga.per_lambda_seconds) if t is not None]
    out = {"finished_lambdas": finished, "unfinished": unfinished, "glm_saga_seconds": saga.seconds}
    print(f"\nglm_saga ran out of its budget: {len(finished)} lambdas finished, lambda {unfinished['index']} unfinished "
          f"after {unfinished['seconds']:.1f}s ({unfinished['epochs']} epochs); {saga.seconds:.1f}s in all")
    for name, res in results.items():
        if name.startswith("ours"):
            out[name] = {"path_seconds": res.seconds, "at_least_x_glm_saga": saga.seconds / res.seconds}
            print(f"  {name}: whole path {res.seconds:.2f}s, at least {saga.seconds / res.seconds:.1f}x faster than "
                  f"glm_saga's first {len(finished) + 1} lambdas (the last of them unfinished)")
    return out


# --------------------------------------------------------------------------- GPU ImageNet shape

def bench_gpu_imagenet(args):
    """ImageNet shape on one GPU: data made on the GPU; our path, the gradient floor, glm_saga on a few lambdas."""
    import torch
    from hf_sparse.solver import fit_path
    from objective import lam_max_torch, objective_torch
    from synthetic import planted_sparse

    dev = torch.device(args.gpu_device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--gpu-imagenet needs a CUDA GPU (or --gpu-device cpu with a small --gpu-n for a dry run)")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    n, d, k = args.gpu_n, args.gpu_d, args.gpu_k
    t0 = time.perf_counter()
    X, y, _ = planted_sparse(n, d, k, seed=args.seed, device=dev)
    sync()
    t_data = time.perf_counter() - t0
    lmax = lam_max_torch(X, y, args.alpha, k)
    lambdas = lambda_path(lmax, args.gpu_n_lambdas, args.gpu_min_ratio)
    print(f"{name}: X {tuple(X.shape)} made in {t_data:.1f}s, "
          f"lam_max {lmax:.6g}, {len(lambdas)} lambdas to {args.gpu_min_ratio:g} lam_max", flush=True)
    floor = _gradient_seconds(X, y, k, sync)
    print("one full gradient X^T (softmax(XW) - Y): " + ", ".join(f"{m} {s * 1e3:.1f} ms" for m, s in floor.items()))
    sync()
    t0 = time.perf_counter()
    path = fit_path(X, y, family="multinomial", alpha=args.alpha,
                    lambdas=torch.as_tensor(lambdas), tol=args.tol, device=dev, progress=True)
    sync()
    secs = time.perf_counter() - t0
    pts = []
    for i in range(len(path)):
        p = path[i]
        W = p.weight.to(dev)
        pts.append(dict(lam=float(path.lambdas[i]),
                        P=objective_torch(X, y, W, p.bias.to(dev), float(path.lambdas[i]), args.alpha),
                        nnz_features=int((W != 0).any(0).sum()), nnz_coefs=int((W != 0).sum()),
                        metrics={kk: (vv if isinstance(vv, (int, float, str, bool)) or vv is None else str(vv))
                                 for kk, vv in p.metrics.items()}))
    print(f"our solver: {len(path)} points in {secs:.1f}s (target <= 180 s on one H100) = "
          f"{secs / floor['float32']:.0f} float32 gradients")
    for q in pts[:: max(1, len(pts) // 10)] + pts[-1:]:
        print(f"  lam {q['lam']:.4e}  P {q['P']:.6f}  nnz feat {q['nnz_features']}  "
              f"gap {q['metrics'].get('gap')}")
    saga = _glm_saga_on_device(X, y, lambdas[:args.gpu_glm_saga_lambdas], args, k, pts, objective_torch)
    return dict(mode="gpu-imagenet", device=name, n=n, d=d, k=k, data_seconds=t_data, path_seconds=secs,
                gradient_seconds=floor, lam_max=lmax, points=pts, glm_saga=saga)


def _gradient_seconds(X, y, k, sync, repeats=3):
    """Seconds for one full softmax gradient at W = 0, in float32 and (on a GPU) TF32: the floor."""
    import torch

    W = torch.zeros(k, X.shape[1], device=X.device)
    Y = torch.nn.functional.one_hot(y, k).to(X.dtype)
    out = {}
    modes = ["float32", "tf32"] if X.device.type == "cuda" else ["float32"]
    for mode in modes:
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        try:
            best = float("inf")
            for _ in range(repeats + 1):
                sync()
                t = time.perf_counter()
                (torch.softmax(X @ W.T, 1) - Y).T @ X
                sync()
                best = min(best, time.perf_counter() - t)
            out[mode] = best
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
    return out


def _glm_saga_on_device(X, y, lambdas, args, k, ours, objective_torch):
    """glm_saga (paper settings) on the same device for the path's first lambdas, next to ours."""
    if len(lambdas) == 0:
        return None
    try:
        result = RUNNERS["glm_saga"](X, y, lambdas, args.alpha, k=k, nepochs=args.glm_saga_epochs)
    except ImportError as err:
        print(f"glm_saga not run: {err}")
        return None
    rows = []
    for i, (lam, (W, b), secs) in enumerate(zip(lambdas, result.weights, result.per_lambda_seconds)):
        import torch

        P = objective_torch(X, y, torch.as_tensor(W), torch.as_tensor(b), float(lam), args.alpha)
        rows.append(dict(lam=float(lam), seconds=secs, P=P, ours_seconds=ours[i]["metrics"]["seconds"],
                         ours_P=ours[i]["P"], rel_gap=(P - ours[i]["P"]) / abs(ours[i]["P"])))
        print(f"  glm_saga lam {lam:.4e}: {secs:.1f}s, P {P:.6f} (ours {rows[-1]['ours_seconds']:.2f}s, "
              f"P {ours[i]['P']:.6f})")
    return rows


# --------------------------------------------------------------------------- main

# The CPU proxies of issue 16 (each: 25 lambdas to 1e-2 lam_max, alpha 0.99, --generator picks the features):
#   python benchmarks/bench_solver.py --proxy k100 --solvers ours glm_saga --glm-saga-lambdas 6
#   python benchmarks/bench_solver.py --proxy k1000 --solvers ours glm_saga --glm-saga-lambdas 4
#   python benchmarks/bench_solver.py --proxy k2k10 --solvers ours_newton ours_bound glm_saga
#   python benchmarks/bench_solver.py --proxy k10 --generator shared48_noisy --solvers ours glm_saga
#   python benchmarks/bench_solver.py --proxy crossover --solvers ours_newton ours_bound   (where "auto" switches)
PROXIES = {
    "k100": dict(k=[100], n=20_000, d=768),
    "k1000": dict(k=[1000], n=20_000, d=512),
    "k2k10": dict(k=[2, 10], n=20_000, d=768),
    "k10": dict(k=[10], n=20_000, d=768),
    "crossover": dict(k=[100, 300, 1000], n=20_000, d=512),
}

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, nargs="+", default=[2, 10], help="numbers of classes (synthetic)")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--data", choices=["synthetic", "sst2"], default="synthetic")
    ap.add_argument("--generator", default="deep",
                    choices=["deep", "highrank", "shared48_noisy", "lowrank_noisy"],
                    help="synthetic features (benchmarks/synthetic.py GENERATORS)")
    ap.add_argument("--proxy", choices=sorted(PROXIES),
                    help="a CPU proxy of issue 16 (sets --k --n --d; 25 lambdas to 1e-2 lam_max, alpha 0.99)")
    ap.add_argument("--sst2-n", type=int, default=5000, help="SST-2 sentences to embed (cached)")
    ap.add_argument("--solvers", nargs="+", default=DEFAULT_SOLVERS, choices=ALL_SOLVERS)
    ap.add_argument("--alpha", type=float, default=0.99)
    ap.add_argument("--n-lambdas", type=int, default=25)
    ap.add_argument("--min-ratio", type=float, default=1e-2)
    ap.add_argument("--tol", type=float, default=1e-6, help="our solver's relative duality-gap tolerance")
    ap.add_argument("--repeats", type=int, default=1,
                    help="repeat ours and the compiled solvers, keep the fastest time")
    ap.add_argument("--glm-saga-lambdas", type=int, default=0,
                    help="0 = the whole path (default); N = first N-2 + last 2, the rest estimated (low)")
    ap.add_argument("--glm-saga-head", type=int, default=0,
                    help="N = glm_saga's first N lambdas only, compared with ours on those lambdas (no estimate)")
    ap.add_argument("--glm-saga-epochs", type=int, default=2000, help="glm_saga max epochs per lambda")
    ap.add_argument("--glm-saga-budget", type=float, default=0,
                    help="stop glm_saga at the first epoch past this many seconds (0: no limit); its seconds are "
                         "then a lower bound and the summary says how many lambdas it finished")
    ap.add_argument("--sklearn-tol", type=float, default=1e-6)
    ap.add_argument("--sklearn-max-iter", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (ours, glm_saga) and adelie threads (default 2 = the box's cores)")
    ap.add_argument("--adelie-tol", type=float, default=1e-12, help="adelie tol and irls_tol")
    ap.add_argument("--glmnet-tol", type=float, default=1e-10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gpu-imagenet", action="store_true",
                    help="ImageNet shape (n=1.28M, d=2048, k=1000, planted sparse) on one GPU, ours only")
    ap.add_argument("--gpu-n", type=int, default=1_281_167)
    ap.add_argument("--gpu-d", type=int, default=2048)
    ap.add_argument("--gpu-k", type=int, default=1000)
    ap.add_argument("--gpu-n-lambdas", type=int, default=100)
    ap.add_argument("--gpu-min-ratio", type=float, default=1e-2)
    ap.add_argument("--gpu-glm-saga-lambdas", type=int, default=3, help="glm_saga's first lambdas on the GPU")
    ap.add_argument("--gpu-device", default="cuda", help="cpu: a dry run at a small --gpu-n/--gpu-d/--gpu-k")
    ap.add_argument("--out", type=Path, default=None, help="JSON results file (default benchmarks/out/)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.proxy:
        for key, value in PROXIES[args.proxy].items():
            setattr(args, key, value)
        args.n_lambdas, args.min_ratio, args.alpha = 25, 1e-2, 0.99

    import torch

    torch.set_num_threads(args.threads)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    info = machine_info()
    report = dict(command=" ".join(sys.argv), machine=info, args={k: str(v) for k, v in vars(args).items()})
    if args.gpu_imagenet:
        report["gpu_imagenet"] = bench_gpu_imagenet(args)
        name = f"bench_gpu_imagenet_{stamp}.json"
    else:
        ks = [2] if args.data == "sst2" else args.k
        name = f"bench_{args.data}_{'-'.join(map(str, ks))}_{stamp}.json"
        out = args.out or OUT / name
        out.parent.mkdir(parents=True, exist_ok=True)
        report["problems"] = []
        for k in ks:  # written after every problem, so a killed run keeps what it finished
            r = bench_one(args, k)
            if r is not None:
                report["problems"].append(r)
                out.write_text(json.dumps(report, indent=1, default=str))
    out = args.out or OUT / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
