"""Small helpers every layer shares (pure Python; torch and numpy values are handled without importing them).

- `json_safe`: a JSON-safe copy of a value (dict keys strings, tuples lists, NaN/inf None, tensors/arrays lists).
- `file_sha256`: the sha256 of a file, read in 1 MiB blocks.

Example:
    >>> from hf_sparse.utils import json_safe
    >>> json_safe({1: (0.5, float("nan"))})
    {'1': [0.5, None]}
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any


def json_safe(value: Any) -> Any:
    """JSON-safe copy: tuples become lists, dict keys strings, NaN/inf None, numpy/torch values Python numbers.

    Example:
        >>> json_safe({"acc": float("inf"), "w": [1, 2.5]})
        {'acc': None, 'w': [1, 2.5]}
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of the file at `path`.

    Example:
        >>> file_sha256("out/model.safetensors")[:12]
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
