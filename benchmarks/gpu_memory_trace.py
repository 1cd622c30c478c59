"""Where a fit's GPU memory peaks: at each new high (every ``--step`` GiB) the call it happened in and the live tensors.

A diagnostic for a lent GPU machine (seconds of device time): the ImageNet shape's first lambdas with a profile
hook that reads ``torch.cuda.memory_allocated()`` at every call and return inside ``hf_sparse``. The eleventh
session's run found the softmax's two out-of-place intermediates this way (benchmarks/RESULTS.md, "GPU").

Run: ``python benchmarks/gpu_memory_trace.py --n-lambdas 3``
CPU dry run (resident size instead of the GPU's allocations): ``python benchmarks/gpu_memory_trace.py --device cpu
--n 32000 --step 0.05``
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hf_sparse.solver import fit_path  # noqa: E402
from objective import lam_max_torch, lambda_path  # noqa: E402
from synthetic import planted_sparse  # noqa: E402

GIB = 2**30


def live_tensors(device_type: str, smallest: int) -> list[tuple[float, tuple, str]]:
    """(GiB, shape, dtype) of each distinct storage on ``device_type`` of at least ``smallest`` bytes, largest first."""
    seen = {}
    for obj in gc.get_objects():
        try:
            if isinstance(obj, torch.Tensor) and obj.device.type == device_type:
                storage = obj.untyped_storage()
                if storage.nbytes() >= smallest:
                    seen[storage.data_ptr()] = (round(storage.nbytes() / GIB, 2), tuple(obj.shape), str(obj.dtype))
        except RuntimeError:  # tensors without storage (meta, sparse)
            continue
    return sorted(seen.values(), reverse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_281_167)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--n-lambdas", type=int, default=3, help="the first lambdas of the 100 to 1e-3 lam_max")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--step", type=float, default=0.5, help="GiB above the last high that counts as a new one")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        allocated = torch.cuda.memory_allocated
    else:
        statm = open("/proc/self/statm")

        def allocated() -> int:
            statm.seek(0)
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    X, y, _ = planted_sparse(args.n, args.d, args.k, seed=0, device=device)
    lambdas = lambda_path(lam_max_torch(X, y, 0.99, args.k), 100, 1e-3)[:args.n_lambdas]
    gc.collect()
    high = [allocated()]
    print(f"before the fit: {high[0] / GIB:.2f} GiB (X {X.numel() * 4 / GIB:.2f} GiB, an n x k float64 array "
          f"{args.n * args.k * 8 / GIB:.2f} GiB)", flush=True)

    def hook(frame, event, arg):
        if event not in ("call", "return") or "hf_sparse" not in frame.f_code.co_filename:
            return
        now = allocated()
        if now < high[0] + args.step * GIB:
            return
        high[0] = now
        sys.setprofile(None)  # the listing itself is not traced
        stack, f = [], frame
        while f is not None and len(stack) < 6:
            stack.append(f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}:{f.f_code.co_name}")
            f = f.f_back
        print(f"{now / GIB:.2f} GiB at the {event} of {' < '.join(stack)}\n"
              f"   live: {live_tensors(device.type, int(args.step * GIB / 2))}", flush=True)
        sys.setprofile(hook)

    started = time.perf_counter()
    sys.setprofile(hook)
    try:
        fit_path(X, y, lambdas=torch.as_tensor(lambdas), method="block", device=device, progress=False)
    finally:
        sys.setprofile(None)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else high[0]
    print(f"{args.n_lambdas} lambdas in {time.perf_counter() - started:.1f}s, peak {peak / GIB:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
