"""Where the project's shared, read-only data sets live.

The data is never copied into the repository: code finds it through the
``HF_SPARSE_DATA`` environment variable, else at ``<repo>/../shared/data``.

Example::

    >>> from hf_sparse.data_paths import shared_data_dir
    >>> root = shared_data_dir()          # None where the folder is absent
    >>> sst2 = root / "sst2" / "validation.tsv" if root else None
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that points at the shared data folder.
DATA_ENV_VAR = "HF_SPARSE_DATA"


def shared_data_dir() -> Path | None:
    """Return the shared data folder, or ``None`` where it does not exist.

    ``$HF_SPARSE_DATA`` wins when set (and ``None`` is returned if it names a
    folder that does not exist); otherwise ``../shared/data`` relative to the
    repository root (the folder that holds the ``hf_sparse`` package).
    """
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        path = Path(env).expanduser()
    else:
        path = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return path if path.is_dir() else None
