"""Worker for the 2-process solver test (not collected by pytest).

Each process takes a contiguous shard of the rows, fits the same path and rank 0
saves it. Run: ``ACCELERATE_USE_CPU=1 python -m torch.distributed.run --nproc_per_node 2
--master_port PORT _dist_solver_worker.py DATA.npz OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numba
import numpy as np
import torch
from accelerate import Accelerator

from hf_sparse.solver import fit_path


def main(data_path: str, out_dir: str) -> None:
    accelerator = Accelerator()  # initializes the gloo process group before anything else
    data = np.load(data_path)
    X, y, lambdas = data["X"], data["y"], data["lambdas"]
    rank, world = accelerator.process_index, accelerator.num_processes
    if "torch_route" in data:  # the torch code a GPU runs, on these CPU processes
        sys.path.insert(0, str(Path(__file__).parent))
        from _torch_route import force_torch_route

        force_torch_route()
    if "pair_kernels" in data:  # ... with the GPU's Triton kernels (in Triton's interpreter: TRITON_INTERPRET=1)
        from _torch_route import force_pair_kernels

        force_pair_kernels()
    if "threads" in data:  # each process its own thread count (the class blocks' routing must not depend on it)
        numba.set_num_threads(int(data["threads"][rank]))
    if "torch_threads" in data:  # each process its own BLAS thread count (LAPACK's rounding may follow it)
        torch.set_num_threads(int(data["torch_threads"][rank]))
    if "sign_steps" in data:  # every coupled model through the sign steps (coordinate descent stops after a sweep)
        import hf_sparse.solver.sign_solve as sign_solve

        sign_solve.FIRST_SWEEPS = sign_solve.ROUND_SWEEPS = 1
    rows = np.array_split(np.arange(len(y)), world)[rank]
    method = str(data["method"]) if "method" in data else "auto"
    path = fit_path(torch.from_numpy(X[rows]), torch.from_numpy(y[rows]), lambdas=lambdas,
                    family=str(data["family"]), group=bool(data["group"]), dtype=torch.float64, tol=1e-10,
                    method=method)
    assert path.info["world_size"] == world
    if accelerator.is_main_process:
        path.save(out_dir)
    accelerator.wait_for_everyone()
    # Without this, gloo's threads are torn down at interpreter exit and a process
    # sometimes aborts ("terminate called without an active exception").
    accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
