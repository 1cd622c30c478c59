"""One process or several: under ``accelerate launch`` / ``torchrun`` every process runs the same command, and
only the main one writes files and prints.

The process group is set up here (an `accelerate.Accelerator`, before anything else touches accelerate's
state) so that feature extraction shards the rows over the processes and the path solver all-reduces its sums.

Example:
    >>> procs = Processes.start()
    >>> if procs.is_main:
    ...     print("summary")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass
class Processes:
    rank: int = 0
    world_size: int = 1
    state: Any = None

    @classmethod
    def start(cls) -> "Processes":
        """The current process's place: set up accelerate's state when launched with several processes."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        from accelerate import Accelerator

        state = Accelerator(cpu=not _has_accelerator()).state  # CPU-only machines: gloo
        if state.num_processes != world:
            from .errors import CLIError

            raise CLIError(
                f"launched as {world} processes (WORLD_SIZE={world}), but accelerate set up {state.num_processes}; "
                "run `accelerate config` or launch with `accelerate launch`/`torchrun` on a machine it supports"
            )
        return cls(rank=state.process_index, world_size=state.num_processes, state=state)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

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

    def wait(self) -> None:
        """Barrier: every process waits for the others (nothing in one process)."""
        if self.state is not None and self.distributed:
            self.state.wait_for_everyone()


def _has_accelerator() -> bool:
    """Whether a GPU (CUDA or XPU) is there for accelerate's multi-GPU setup; else the processes use CPUs."""
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return False
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())
