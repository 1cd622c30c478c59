"""One process or several: rank, world size, barriers, with accelerate's state when distributed.

Under ``accelerate launch`` / ``torchrun`` every process runs the same code; only the main one writes files and
prints. `Processes.start()` sets accelerate's state up (an `accelerate.Accelerator`, before anything else touches
it: the command line does this first); `Processes.current()` joins whatever is set up (feature extraction does
this, so that it shards the rows over the processes). In one process both are a no-op: rank 0 of 1.

Example:
    >>> procs = Processes.start()
    >>> if procs.is_main:
    ...     print("summary")
    >>> procs.my_shards([(0, 100), (100, 200)])      # the row ranges this process computes
"""

from __future__ import annotations

import os
from typing import Any


class ProcessSetupError(RuntimeError):
    """The processes were launched in a way accelerate could not set up (e.g. a world size it did not reach)."""


class Processes:
    """Rank, world size and barriers: accelerate's state when distributed, else one process (`state` None)."""

    def __init__(self, state: Any = None):
        self.state = state
        self.rank = state.process_index if state is not None else 0
        self.world_size = state.num_processes if state is not None else 1
        self.is_local_main = state.local_process_index == 0 if state is not None else True

    @classmethod
    def start(cls) -> "Processes":
        """Set up accelerate's state when launched with several processes (`WORLD_SIZE` > 1); GPUs when there are
        some, else CPU processes (gloo). Raises `ProcessSetupError` when accelerate sets up another world size."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        from accelerate import Accelerator

        state = Accelerator(cpu=not _has_accelerator()).state
        if state.num_processes != world:
            raise ProcessSetupError(
                f"launched as {world} processes (WORLD_SIZE={world}), but accelerate set up {state.num_processes}; "
                "run `accelerate config` or launch with `accelerate launch`/`torchrun` on a machine it supports"
            )
        return cls(state)

    @classmethod
    def current(cls, accelerator: Any = None) -> "Processes":
        """The processes as they are set up: `accelerator`'s state, else accelerate's shared state, else (launched
        by torchrun/accelerate with nothing set up yet) a new `Accelerator`, which must come before any bare
        `PartialState`; one process otherwise."""
        if accelerator is not None:
            return cls(accelerator.state)
        from accelerate.state import PartialState

        if PartialState._shared_state:
            return cls(PartialState())
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import Accelerator

            return cls(Accelerator().state)
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Every process waits for the others (nothing in one process)."""
        if self.distributed:
            self.state.wait_for_everyone()

    wait = barrier

    def main_says(self, flag: bool) -> bool:
        """Every process gets the main process's `flag`."""
        if not self.distributed:
            return flag
        import torch
        from accelerate.utils import broadcast

        t = torch.tensor([1 if flag else 0], device=self.state.device)
        return bool(broadcast(t, from_process=0).item())

    def my_shards(self, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """This process's contiguous share of `ranges`."""
        m = len(ranges)
        return ranges[self.rank * m // self.world_size : (self.rank + 1) * m // self.world_size]

    def quiet_others(self) -> None:
        """No progress bars on processes other than the main one."""
        if self.is_main:
            return
        import datasets
        import huggingface_hub
        import transformers

        datasets.disable_progress_bars()
        huggingface_hub.utils.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def _has_accelerator() -> bool:
    """Whether a GPU (CUDA or XPU) is there for accelerate's multi-GPU setup; else the processes use CPUs."""
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return False
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())
