"""The solver's GPU check, as one prepared run for a lent GPU machine (a few minutes of device time).

1. a small smoke test on the GPU (k=600) for each method named, against the same path on the CPU
   (``--no-smoke``: a tiny GPU fit instead, to compile the solver's numba kernels before the timings);
2. ``--build-bench``: the class blocks of the block method at the ImageNet rows, one product per class over a
   piece's rows against products over batches of rows (same process, same data);
3. ``--pairs-bench``: the block solver's products at the ImageNet rows for a late-path working set, dense against
   the Triton kernels over each class's free columns (``solver/pair_kernels.py``), same process and data;
4. the ImageNet shape of issue 16 (planted sparse, 1.28M x 2048, k=1000, 100 lambdas to 1e-3 lam_max)
   with each ``--phase METHOD:SECONDS`` in turn on the same data, until its budget runs out: one line per
   lambda, a cProfile of where the time went, and the peak GPU memory of each phase. Everything printed is
   also written under ``--out`` (the per-lambda log after every lambda).

Run (what the next lent machine should run: the products' bench, then the whole path with ``method="block"``, in
one command of under ten minutes; the last lambdas may be cut):
``PYTHONUNBUFFERED=1 python benchmarks/gpu_check.py --no-smoke --pairs-bench --phase block:500 --out $OUT``
(the tenth session's runs: ``--phase block:270 --phase bound:100``, then ``--no-smoke --build-bench --phase block:215``;
the eleventh's: ``--no-smoke --phase block:480``, then ``--no-smoke --phase block:135``; the fourteenth's:
``--no-smoke --phase block:515 --profile-lambdas 76:78``, then ``--no-smoke --pairs-bench --phase block:150``.
``--profile-lambdas`` costs about two minutes of the budget making its table)
Dry run on a CPU: ``python benchmarks/gpu_check.py --device cpu --n 20000 --d 256 --k 200 --phase block:20``
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
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from box_speed import best_of  # noqa: E402
from hf_sparse.solver import class_blocks, fit_path, path_fitter  # noqa: E402
from objective import lam_max_torch, lambda_path  # noqa: E402
from synthetic import planted_sparse  # noqa: E402


class OutOfBudget(Exception):
    pass


def smoke(method: str) -> None:
    X, y, _ = planted_sparse(20_000, 128, 600, seed=0, device=torch.device("cpu"))
    t = time.perf_counter()
    cpu = fit_path(X, y, n_lambdas=3, lambda_min_ratio=0.3, method=method)
    t_cpu = time.perf_counter() - t
    t = time.perf_counter()
    gpu = fit_path(X.cuda(), y.cuda(), n_lambdas=3, lambda_min_ratio=0.3, device="cuda", method=method)
    torch.cuda.synchronize()
    t_gpu = time.perf_counter() - t
    worst = max(float((a.weight.cpu() - b.weight).abs().max()) for a, b in zip(gpu, cpu))
    print(f"smoke {method} k=600 n=20000 d=128: cpu {t_cpu:.1f}s gpu {t_gpu:.1f}s, max |W_gpu - W_cpu| "
          f"{worst:.2e}, gaps gpu {[p.metrics.get('gap') for p in gpu]} cpu {[p.metrics.get('gap') for p in cpu]}",
          flush=True)


def build_bench(X: torch.Tensor, k: int, m: int = 600, seed: int = 0) -> None:
    """The block method's class blocks at ``X``'s rows, a mid-path working set (``m`` columns, 1-40 free per class):
    one batched product per class against batches of rows; the seconds of each and their largest difference."""
    from hf_sparse.solver.design import Design

    rng = np.random.default_rng(seed)
    design = Design.build(X, device=X.device, dtype=torch.float32)
    block = design.block(torch.as_tensor(np.sort(rng.choice(X.shape[1], m, replace=False)), device=X.device))
    h = torch.rand(X.shape[0], k, device=X.device) / k
    free = np.zeros((k, m), dtype=bool)
    for c in range(k):
        free[c, rng.choice(m, rng.integers(1, 41), replace=False)] = True
    results = {}
    for label, batches in (("one product per class", {}), ("batches of 2048 rows", {"cuda": 2048}),
                           ("batches of 8192 rows", {"cuda": 8192})):
        class_blocks.GRAM_ROWS_PER_BATCH = batches
        for _ in range(2):  # the first of each warms up
            torch.cuda.synchronize()
            t = time.perf_counter()
            results[label] = class_blocks.ClassBlocks.build(block, h, free)
            seconds = time.perf_counter() - t
        print(f"class blocks, {X.shape[0]} rows, {k} classes of up to {results[label].slots.shape[1]} slots, "
              f"{label}: {seconds:.3f}s", flush=True)
    reference = results["one product per class"].H
    for label, blocks in results.items():
        scale = np.abs(reference).max()
        print(f"  {label}: largest difference {np.abs(blocks.H - reference).max() / scale:.1e} of the largest entry")
    class_blocks.GRAM_ROWS_PER_BATCH = {"cuda": 2048}
    del design, block, h


#: the solver's parts whose GPU time the profiled lambdas report (name: (owner, attribute))
_PARTS = {"blocks": ("class_blocks.ClassBlocks", "build"), "loss passes": ("problem.Problem", "loss"),
          "softmax": ("problem.Problem", "probabilities"),
          "working-set gradient": ("problem.Problem", "residual_products"),
          "full gradient": ("design.Design", "gradient"), "step products": ("design.Block", "matvec"),
          "shared terms": ("block_newton", "shared_terms"), "bias polish": ("path_fitter", "polish_bias"),
          "gap check (all)": ("path_fitter._PathFitter", "_check")}


def label_parts() -> None:
    """Wrap the solver's parts in ``torch.profiler.record_function`` (their GPU time, kernels included)."""
    import importlib

    for name, (owner, attribute) in _PARTS.items():
        module, _, cls = owner.partition(".")
        target = importlib.import_module(f"hf_sparse.solver.{module}")
        target = getattr(target, cls) if cls else target
        raw = target.__dict__[attribute] if cls else getattr(target, attribute)
        bound = raw.__func__ if isinstance(raw, classmethod) else raw

        def wrapped(*args, _f=bound, _name=name, **kwargs):
            with torch.profiler.record_function(_name):
                return _f(*args, **kwargs)
        setattr(target, attribute, classmethod(wrapped) if isinstance(raw, classmethod) else wrapped)


def kernel_table(profiler, out: Path, label: str, lambdas: tuple[int, int]) -> None:
    """Write and print the GPU's time by operator over the profiled lambdas (torch.profiler), and by solver part."""
    cuda = torch.cuda.is_available()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    averages = profiler.key_averages()
    table = averages.table(sort_by=key, row_limit=40, max_name_column_width=60)
    parts = []
    for event in averages:
        if event.key in _PARTS:
            device = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
            parts.append(f"  {event.key:22s} calls {event.count:5d}  GPU {device / 1e6:8.3f} s  "
                         f"CPU {event.cpu_time_total / 1e6:8.3f} s")
    text = (f"[{label}] torch.profiler over lambdas {lambdas[0]}-{lambdas[1] - 1}: the solver's parts (nested: the gap "
            f"check holds the full gradient and polish)\n" + "\n".join(parts) + f"\nby {key}\n{table}")
    (out / f"kernels_{label}.txt").write_text(text)
    print(text[:6000], flush=True)


def pairs_bench(X: torch.Tensor, k: int, m: int = 1700, seed: int = 0) -> bool:
    """The block solver's products at ``X``'s rows for a late-path working set (``m`` columns, about 3.6 free a
    class: the ImageNet shape's 77th lambda had 3,564 pairs over 1,693 x 1,000), dense (the GPU's code before) against
    the Triton kernels over the free pairs (``solver/pair_kernels.py``), same process and data: the seconds of each
    (best of three after a warm-up) and their largest difference. Returns whether every kernel ran."""
    from types import SimpleNamespace

    from hf_sparse.solver import pair_kernels
    from hf_sparse.solver.design import Design
    from hf_sparse.solver.problem import Problem
    from hf_sparse.solver.shared_moves import shared_terms

    rng = np.random.default_rng(seed)
    dev = X.device
    n = X.shape[0]
    design = Design.build(X, device=dev, dtype=torch.float32)
    block = design.block(torch.as_tensor(np.sort(rng.choice(X.shape[1], m, replace=False)), device=dev))
    free = np.zeros((k, m), dtype=bool)
    for c in range(k):
        free[c, rng.choice(m, min(m, 1 + rng.poisson(2.6) + (40 if c % 200 == 0 else 0)), replace=False)] = True
    free_t = torch.as_tensor(free, device=dev)
    P = torch.randn(n, k, dtype=torch.float64, device=dev).mul_(3)
    for a in range(0, n, 1 << 16):
        P[a:a + (1 << 16)] = torch.softmax(P[a:a + (1 << 16)], 1)
    labels = torch.as_tensor(rng.integers(0, k, n), device=dev)
    w = torch.ones(n, dtype=torch.float64, device=dev)
    Y = torch.zeros(n, k, dtype=torch.uint8, device=dev).scatter_(1, labels[:, None], 1)
    problem = SimpleNamespace(design=design, row_weight=w, Y=Y)
    dW = torch.randn(k, m, dtype=torch.float64, device=dev) * free_t
    kernels = pair_kernels.PairKernels.from_mask(free_t)
    print(f"pairs bench: {n} rows, {m} columns, {k} classes, {int(free.sum())} free pairs "
          f"({free.mean():.2%}), Triton {pair_kernels.available()}", flush=True)

    def timed(fn):
        return best_of(fn, 3, sync=torch.cuda.synchronize)

    def relative(a, b):
        a, b = (torch.as_tensor(v, dtype=torch.float64).to(dev) for v in (a, b))
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))

    h = (lambda a, b: (1 - P[a:b]).mul_(P[a:b]).mul_(w[a:b, None]).float())

    def gram_kernel():  # the blocks of up to 64 slots from the kernel, whatever the solver's setting
        kept, pair_kernels.MAX_GRAM_SLOTS = pair_kernels.MAX_GRAM_SLOTS, 64
        try:
            return class_blocks.ClassBlocks.build(block, h, free, probabilities=(P, w)).H
        finally:
            pair_kernels.MAX_GRAM_SLOTS = kept
    cases = [
        ("change of predictions", lambda: block.matvec(dW.float(), dtype=torch.float64),
         lambda: kernels.matvec(block.data, dW), lambda d, t: relative(t, d)),
        ("gradient", lambda: Problem.residual_products(problem, P, block)[0],
         lambda: kernels.dense(kernels.gradient(block.data, P, labels, w)[0]),
         lambda d, t: relative(t[free_t], d[free_t])),
        ("shared terms", lambda: torch.stack(shared_terms(problem, block, P, free_t)),
         lambda: torch.stack(kernels.shared_terms(block.data, P, w)), lambda d, t: relative(t, d)),
        ("class blocks", lambda: class_blocks.ClassBlocks.build(block, h, free).H, gram_kernel,
         lambda d, t: relative(t, d)),
    ]
    ok = True
    for label, dense, kernel, compare in cases:
        try:
            t_dense, d = timed(dense)
            t_kernel, r = timed(kernel)
            print(f"  {label}: dense {t_dense * 1e3:.1f} ms, kernel {t_kernel * 1e3:.1f} ms "
                  f"({t_dense / t_kernel:.1f}x), largest difference {compare(d, r):.1e} of the largest entry",
                  flush=True)
            if label != "class blocks":
                pair_kernels._BLOCK_ROWS = 32
                t_32, _ = timed(kernel)
                pair_kernels._BLOCK_ROWS = 64
                print(f"    rows per program 32: {t_32 * 1e3:.1f} ms", flush=True)
        except Exception:  # noqa: BLE001 - the other products still come
            traceback.print_exc()
            ok = False
    return ok  # the arrays go with this frame


def timed_path(X, y, lambdas, budget: float, label: str, log: list, sync, out: Path, copy_X: bool = True,
               profile_lambdas: tuple[int, int] | None = None) -> float:
    """Fit the path until it ends or ``budget`` seconds pass, logging each lambda; returns the seconds.
    ``profile_lambdas``: (first, stop) lambda indices profiled by torch.profiler (the GPU's time by operator)."""
    solve = path_fitter._PathFitter.solve
    started = time.perf_counter()
    window = {"profiler": None}

    def report(stop: int) -> None:
        """Stop the profiler and write what it saw over lambdas ``profile_lambdas[0]`` to ``stop - 1``."""
        try:
            window["profiler"].__exit__(None, None, None)
            kernel_table(window["profiler"], out, label, (profile_lambdas[0], stop))
        except Exception:  # noqa: BLE001 - the path's figures still come
            traceback.print_exc()
        window["profiler"] = None

    def logged(self, lam):
        index = len([r for r in log if r["phase"] == label])
        if profile_lambdas and index == profile_lambdas[0]:
            try:
                activities = [torch.profiler.ProfilerActivity.CPU] + (
                    [torch.profiler.ProfilerActivity.CUDA] if X.is_cuda else [])
                window["profiler"] = torch.profiler.profile(activities=activities)
                window["profiler"].__enter__()
            except Exception:  # noqa: BLE001 - the path's figures still come
                traceback.print_exc()
                window["profiler"] = None
        point = solve(self, lam)
        sync()
        if window["profiler"] is not None and index == profile_lambdas[1] - 1:
            report(profile_lambdas[1])
        m = point.metrics
        row = dict(phase=label, index=index, lam=lam,
                   elapsed=time.perf_counter() - started, seconds=m["seconds"], steps=m["iterations"],
                   n_features=m["n_features"], nnz=m["nnz"], gap=m["gap"], train_accuracy=m["train_accuracy"],
                   converged=m["converged"], peak_gib=torch.cuda.max_memory_allocated() / 2**30
                   if torch.cuda.is_available() else None,
                   reserved_gib=torch.cuda.max_memory_reserved() / 2**30 if torch.cuda.is_available() else None)
        log.append(row)
        (out / "lambdas.json").write_text(json.dumps(log, indent=1))
        print(f"[{label}] {row['index']:3d} lam {lam:.4e} {row['seconds']:6.2f}s (total {row['elapsed']:6.1f}s) "
              f"steps {row['steps']:3d} feats {row['n_features']:4d} nnz {row['nnz']:6d} gap {row['gap']:.1e} "
              f"acc {row['train_accuracy']:.3f}", flush=True)
        if time.perf_counter() - started > budget:
            raise OutOfBudget
        return point

    path_fitter._PathFitter.solve = logged
    try:
        fit_path(X, y, lambdas=torch.as_tensor(lambdas), tol=1e-6, device=X.device, progress=False, method=label,
                 copy_X=copy_X)
        print(f"[{label}] the whole path: {time.perf_counter() - started:.1f}s", flush=True)
    except OutOfBudget:
        print(f"[{label}] stopped after the {budget:.0f}s budget", flush=True)
    finally:
        path_fitter._PathFitter.solve = solve
        if window["profiler"] is not None:  # the budget ran out inside the window: report what it saw
            report(len([r for r in log if r["phase"] == label]))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", action="append", default=None,
                    help="METHOD:SECONDS, one path per phase on the same data (default: block:540)")
    ap.add_argument("--n", type=int, default=1_281_167)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--n-lambdas", type=int, default=100)
    ap.add_argument("--min-ratio", type=float, default=1e-3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=".")
    ap.add_argument("--no-smoke", action="store_true", help="a tiny GPU fit instead of the smoke tests")
    ap.add_argument("--build-bench", action="store_true", help="time the block method's class blocks")
    ap.add_argument("--profile-lambdas", default=None,
                    help="FIRST:STOP, lambdas profiled by torch.profiler (the GPU's time by operator), e.g. 76:78")
    ap.add_argument("--pairs-bench", action="store_true",
                    help="the block solver's products, dense against the Triton kernels over the free pairs")
    ap.add_argument("--in-place", action="store_true",
                    help="copy_X=False: X standardized in place, one copy of the features on the GPU")
    args = ap.parse_args()
    phases = [(p.split(":")[0], float(p.split(":")[1])) for p in (args.phase or ["block:540"])]
    window = tuple(int(v) for v in args.profile_lambdas.split(":")) if args.profile_lambdas else None
    if window:
        label_parts()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(torch.cuda.get_device_name() if cuda else "cpu", torch.__version__, flush=True)
    if cuda and args.no_smoke:
        t = time.perf_counter()
        Xs, ys, _ = planted_sparse(4000, 32, 120, seed=0, device=dev)
        for method, _ in phases:
            fit_path(Xs, ys, n_lambdas=3, lambda_min_ratio=0.3, device=dev, method=method)
        print(f"warm-up fits {time.perf_counter() - t:.1f}s", flush=True)
    elif cuda:
        for method, _ in phases:
            try:
                smoke(method)
            except Exception:  # noqa: BLE001 - one method's failure must not cost the others' device time
                traceback.print_exc()

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

    if args.build_bench and cuda:
        try:
            build_bench(X, args.k)
        except Exception:  # noqa: BLE001 - the path's figures still come
            traceback.print_exc()
    if args.pairs_bench and cuda:
        if not pairs_bench(X, args.k):
            print("a kernel failed: the path runs without them", flush=True)
            from hf_sparse.solver.pair_kernels import PairKernels
            PairKernels.applies = staticmethod(lambda X: False)
        torch.cuda.empty_cache()
    log, summary = [], {}
    for label, budget in phases:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        profiler = cProfile.Profile()
        signal.alarm(int(budget + 30))
        profiler.enable()
        try:
            secs = timed_path(X, y, lambdas, budget, label, log, sync, out, copy_X=not args.in_place,
                              profile_lambdas=window)
        except OutOfBudget:
            secs = float("nan")
            print(f"[{label}] one lambda outlasted the budget by 30 s", flush=True)
        except Exception:  # noqa: BLE001 - report it and go on to the next phase
            secs = float("nan")
            traceback.print_exc()
        finally:
            profiler.disable()
            signal.alarm(0)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        rows = [r for r in log if r["phase"] == label]
        summary[label] = dict(seconds=secs, lambdas=len(rows), peak_gib=peak, steps=sum(r["steps"] for r in rows),
                              certified=sum(r["gap"] <= 1e-6 for r in rows))
        print(f"[{label}] {len(rows)} lambdas in {secs:.1f}s, {summary[label]['certified']} certified, peak GPU "
              f"memory {peak if peak is None else round(peak, 1)} GiB", flush=True)
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        (out / f"profile_{label}.txt").write_text(text.getvalue())
        print(text.getvalue()[:3000], flush=True)
        (out / "gpu_imagenet.json").write_text(json.dumps(dict(shape=[args.n, args.d, args.k], summary=summary,
                                                                lambdas=log), indent=1))
    for label, _ in phases:  # the same number of lambdas, each phase's time
        rows = [r for r in log if r["phase"] == label]
        print(label, "elapsed at lambdas 10/20/30/40/50/75/100:",
              [round(rows[i - 1]["elapsed"], 1) if len(rows) >= i else None for i in (10, 20, 30, 40, 50, 75, 100)])


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
