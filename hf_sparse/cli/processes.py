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
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import Accelerator

        state = Accelerator().state
        return cls(rank=state.process_index, world_size=state.num_processes, state=state)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wait(self) -> None:
        """Barrier: every process waits for the others (nothing in one process)."""
        if self.state is not None and self.distributed:
            self.state.wait_for_everyone()
