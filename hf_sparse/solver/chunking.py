"""How many rows one chunk of ``n x k`` work takes: a few MB on a CPU, hundreds of MB on a GPU.

Row-chunked loops (losses, residuals, curvatures, the dual's profile) bound the memory of their
temporaries. On a CPU a small chunk costs nothing; on a GPU every chunk is a handful of kernel
launches, and at the ImageNet shape (1.28M rows x 1,000 classes) chunks of 4M entries meant
~300 chunks per pass, each too small to keep the GPU busy, so launches and Python overhead
set the pace. Chunks of 64M entries (512 MB of float64) take twenty per pass there.

Example:
    >>> rows = chunk_rows(1000, torch.device("cuda"))   # 67,108 rows per chunk
    >>> rows = chunk_rows(1000, torch.device("cpu"))    # 4,194 rows per chunk
"""

from __future__ import annotations

import torch

CPU_ENTRIES = 1 << 22  # rows x width per chunk on a CPU (32 MB of float64)
GPU_ENTRIES = 1 << 26  # ... on a GPU (512 MB of float64; a few such temporaries live at once)


def chunk_rows(width: int, device: torch.device | str, cpu_entries: int | None = None) -> int:
    """Rows per chunk for temporaries ``width`` entries wide on ``device`` (at least 1); ``cpu_entries``: a
    caller's own budget on a CPU instead of :data:`CPU_ENTRIES` (on a GPU every caller takes :data:`GPU_ENTRIES`)."""
    if torch.device(device).type == "cuda":
        entries = GPU_ENTRIES
    else:
        entries = CPU_ENTRIES if cpu_entries is None else cpu_entries
    return max(1, entries // max(int(width), 1))
