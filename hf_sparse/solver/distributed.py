"""Sums across processes, so that each process can hold a shard of the rows.

Under ``accelerate launch`` or ``torchrun`` the default process group is already
initialized (``Accelerator()`` does it); every reduction the solver makes
(gradients, Gram matrices, losses, column statistics) goes through
:meth:`Reducer.sum`, which all-reduces there and does nothing in one process.

Example:
    >>> Reducer.auto(None).sum(torch.ones(2))      # one process: unchanged
    tensor([1., 1.])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Reducer:
    enabled: bool = False

    @classmethod
    def auto(cls, distributed: bool | None) -> "Reducer":
        """``None``: reduce when a process group with several processes is running."""
        running = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if distributed and not running:
            raise RuntimeError(
                "distributed=True, but no torch.distributed process group with several processes "
                "is running: start the script with `accelerate launch` or `torchrun`, and create "
                "`accelerate.Accelerator()` before calling fit_path."
            )
        return cls(enabled=running if distributed is None else bool(distributed))

    @property
    def rank(self) -> int:
        return dist.get_rank() if self.enabled else 0

    @property
    def world_size(self) -> int:
        return dist.get_world_size() if self.enabled else 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over all processes (in place where distributed)."""
        if self.enabled:
            if dist.get_backend() == "nccl" and not tensor.is_cuda:
                moved = tensor.cuda()
                dist.all_reduce(moved)
                tensor.copy_(moved.cpu())
            else:
                dist.all_reduce(tensor)
        return tensor

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise maximum of ``tensor`` over all processes (in place where distributed)."""
        if self.enabled:
            if dist.get_backend() == "nccl" and not tensor.is_cuda:
                moved = tensor.cuda()
                dist.all_reduce(moved, op=dist.ReduceOp.MAX)
                tensor.copy_(moved.cpu())
            else:
                dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def scalar(self, value: torch.Tensor) -> float:
        """Sum a 0-d tensor over processes, in float64, and return it as a float."""
        return float(self.sum(value.detach().double().reshape(1))[0])
