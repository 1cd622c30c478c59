"""The result of :func:`extract_features`: a small object over a cached ``datasets.Dataset``.

The dataset has columns ``index`` (the row in the source dataset), ``label``
(when a label column was given, with its original feature type, e.g. a
``ClassLabel``) and ``features`` (float32, fixed length). ``features`` and
``numpy()`` are zero-copy views of the memory-mapped Arrow buffer, so they are
read-only: a solver reads them, and ``.clone()`` gives a writable tensor.

Example::

    >>> feats = extract_features(model, dataset, tokenizer)
    >>> X, y = feats.features, feats.labels         # (n, d) float32, (n,) int64
    >>> logits = model.classifier(X)                 # the dense head reproduces the model
    >>> feats.dataset                                # Dataset({features: ['index', 'label', 'features'], ...})
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset

from .cache import FEATURES_COLUMN, INDEX_COLUMN, LABEL_COLUMN, FeatureCache


def _fixed_size_list_to_numpy(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    """(rows, dim) view of a fixed-size-list column; zero-copy when it is one chunk."""
    if column.num_chunks == 1:
        flat = column.chunk(0).flatten()  # respects the chunk's offset, no copy
        return flat.to_numpy(zero_copy_only=True).reshape(-1, dim)
    if column.num_chunks == 0:
        return np.empty((0, dim), dtype=np.float32)
    return np.concatenate([c.flatten().to_numpy(zero_copy_only=True) for c in column.chunks]).reshape(-1, dim)


class FeatureSet:
    """Cached features of one dataset under one model: ``features``, ``labels``, ``dataset``.

    Open a finished cache entry again with :meth:`load`.
    """

    def __init__(self, dataset: Dataset, info: dict[str, Any] | None = None, path: str | Path | None = None):
        if FEATURES_COLUMN not in dataset.column_names:
            raise ValueError(f"a FeatureSet needs a {FEATURES_COLUMN!r} column; got {dataset.column_names}")
        self.dataset = dataset
        self.info = dict(info or {})
        self.path = Path(path) if path is not None else None
        self._array: np.ndarray | None = None

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        """Open a cache entry folder (``<cache_dir>/<key>``) or its ``features.arrow``.

        The entry is checked first (row count, row indices, checksum): a damaged one raises
        ``DamagedCacheError`` naming the folder to delete (``extract_features`` rebuilds it).

        Example::

            >>> feats = FeatureSet.load(cache_dir / key)
        """
        path = Path(path)
        entry = path.parent if path.is_file() else path
        cache = FeatureCache(entry.parent, entry.name)
        return cls(cache.load(), cache.read_meta(), cache.final_path)

    # -- shape ------------------------------------------------------------------
    def __len__(self) -> int:
        return self.dataset.num_rows

    @property
    def dim(self) -> int:
        return self.dataset.features[FEATURES_COLUMN].length

    @property
    def fingerprint(self) -> str | None:
        """The cache key of this extraction."""
        return self.info.get("key")

    # -- arrays -----------------------------------------------------------------
    def _column(self, name: str) -> tuple[pa.ChunkedArray, np.ndarray | None]:
        """The full Arrow column and, for a ``select``/``shuffle`` view, the rows it keeps."""
        ds = self.dataset
        rows = None if ds._indices is None else ds._indices.column(0).to_numpy()
        return ds.data.column(name), rows

    def numpy(self) -> np.ndarray:
        """(n, d) float32 NumPy array over the memory-mapped cache (read-only, no copy)."""
        if self._array is None:
            column, rows = self._column(FEATURES_COLUMN)
            arr = _fixed_size_list_to_numpy(column, self.dim)
            if rows is not None:  # a view of some rows: gathering them copies
                arr = arr[rows]
            arr.flags.writeable = False
            self._array = arr
        return self._array

    @property
    def features(self) -> torch.Tensor:
        """(n, d) float32 tensor sharing memory with :meth:`numpy` (do not write into it)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(self.numpy())

    @property
    def labels(self) -> torch.Tensor | None:
        """Labels as a tensor (int64 for class labels), or ``None`` when no label column was given."""
        if LABEL_COLUMN not in self.dataset.column_names:
            return None
        column, rows = self._column(LABEL_COLUMN)
        if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
            values = np.asarray(column.to_pylist())
        else:
            values = column.to_numpy()
        return torch.as_tensor(np.array(values if rows is None else values[rows]))  # a small writable copy

    @property
    def indices(self) -> torch.Tensor:
        """Row of each feature vector in the source dataset (int64)."""
        column, rows = self._column(INDEX_COLUMN)
        values = column.to_numpy()
        return torch.from_numpy(np.array(values if rows is None else values[rows], dtype=np.int64))

    @property
    def label_names(self) -> list[str] | None:
        """Class names when the label column is a ``ClassLabel``."""
        feature = self.dataset.features.get(LABEL_COLUMN)
        return list(feature.names) if getattr(feature, "names", None) else None

    def __repr__(self) -> str:
        src = self.info.get("source", {}).get("source") if isinstance(self.info.get("source"), dict) else None
        return (
            f"FeatureSet(num_rows={len(self)}, dim={self.dim}, source={src!r}, "
            f"labels={'yes' if LABEL_COLUMN in self.dataset.column_names else 'no'}, path={str(self.path)!r})"
        )
