"""A sharded, resumable, process-safe Arrow cache of feature matrices.

Layout of one entry (``<root>/<key>/``)::

    shard-000000000000-000000004096.arrow   rows [0, 4096) of the dataset, while running
    meta.json                               what was extracted (the key's inputs, shape)
    features.arrow                          the finished matrix: one record batch, dataset order
    .locks/                                 one file lock per shard and one for the finished file

Every file is written under a temporary name and renamed into place
(``os.replace`` is atomic), so a reader never sees half a file: a run killed
midway leaves complete shards and at most a stray temporary, and the next run
resumes from the complete shards. A shard is computed by whoever holds its
lock and skipped by everyone else once it exists, so two processes asking for
the same entry share the work instead of corrupting it. ``features.arrow`` is
one record batch, so its feature column is one contiguous, memory-mapped
buffer (zero-copy to NumPy and torch).

Example::

    >>> cache = FeatureCache(default_cache_root(), key)
    >>> cache.is_complete()
    False
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, List, Value
from filelock import FileLock

#: Environment variable that overrides the default cache root.
CACHE_ENV_VAR = "HF_SPARSE_FEATURES_CACHE"
FEATURES_FILE = "features.arrow"
META_FILE = "meta.json"
LOCKS_DIR = ".locks"
FEATURES_COLUMN = "features"
LABEL_COLUMN = "label"
INDEX_COLUMN = "index"


def default_cache_root() -> Path:
    """``$HF_SPARSE_FEATURES_CACHE``, else ``<datasets cache>/hf_sparse_features``.

    The datasets cache follows ``HF_DATASETS_CACHE`` / ``HF_HOME`` as usual.
    """
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    from datasets import config

    return Path(config.HF_DATASETS_CACHE) / "hf_sparse_features"


def feature_schema(dim: int, label_feature: Any | None) -> Features:
    """The ``datasets.Features`` of a cache file: index, optional label, features."""
    cols: dict[str, Any] = {INDEX_COLUMN: Value("int64")}
    if label_feature is not None:
        cols[LABEL_COLUMN] = label_feature
    cols[FEATURES_COLUMN] = List(Value("float32"), length=dim)
    return Features(cols)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_arrow(path: Path, batch: pa.RecordBatch) -> None:
    def write(f):
        with pa.ipc.new_stream(f, batch.schema) as writer:
            writer.write_batch(batch)

    _atomic_write(path, write)


def _read_arrow(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


def make_batch(
    indices: np.ndarray, features: np.ndarray, labels: list | None, schema: Features
) -> pa.RecordBatch:
    """One record batch of ``schema`` from row indices, a (rows, d) float32 array and labels."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    arrays = {INDEX_COLUMN: pa.array(np.asarray(indices, dtype=np.int64))}
    if LABEL_COLUMN in schema:
        arrays[LABEL_COLUMN] = pa.array(labels, type=schema.arrow_schema.field(LABEL_COLUMN).type)
    arrays[FEATURES_COLUMN] = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), features.shape[1])
    arrow_schema = schema.arrow_schema
    return pa.record_batch([arrays[name] for name in arrow_schema.names], schema=arrow_schema)


class FeatureCache:
    """One cache entry: shards while extracting, then one ``features.arrow``."""

    def __init__(self, root: str | os.PathLike, key: str):
        self.root = Path(root)
        self.key = key
        self.dir = self.root / key
        self.final_path = self.dir / FEATURES_FILE
        self.meta_path = self.dir / META_FILE

    # -- state ------------------------------------------------------------------
    def is_complete(self) -> bool:
        """True once ``features.arrow`` exists (it appears only complete)."""
        return self.final_path.is_file()

    def prepare(self) -> None:
        (self.dir / LOCKS_DIR).mkdir(parents=True, exist_ok=True)

    def lock(self, name: str) -> FileLock:
        return FileLock(str(self.dir / LOCKS_DIR / f"{name}.lock"))

    # -- shards -----------------------------------------------------------------
    @staticmethod
    def shard_name(start: int, end: int) -> str:
        return f"shard-{start:012d}-{end:012d}"

    def shard_path(self, start: int, end: int) -> Path:
        return self.dir / f"{self.shard_name(start, end)}.arrow"

    def has_shard(self, start: int, end: int) -> bool:
        return self.shard_path(start, end).is_file()

    def remove_stale_temporaries(self, start: int, end: int) -> None:
        """Delete temporaries of a shard; call only while holding its lock."""
        for tmp in self.dir.glob(f"{self.shard_name(start, end)}.arrow.tmp-*"):
            tmp.unlink(missing_ok=True)

    def write_shard(self, start: int, end: int, batch: pa.RecordBatch) -> None:
        if batch.num_rows != end - start:
            raise ValueError(f"shard [{start}, {end}) got {batch.num_rows} rows")
        _write_arrow(self.shard_path(start, end), batch)

    # -- finishing ----------------------------------------------------------------
    def finalize(self, ranges: Iterable[tuple[int, int]], meta: dict[str, Any]) -> None:
        """Join the shards into one single-batch ``features.arrow`` (idempotent).

        Takes the entry's lock, so concurrent callers finish it once; removes the
        shards afterwards.
        """
        ranges = list(ranges)
        with self.lock("final"):
            for stale in [*self.dir.glob(f"{FEATURES_FILE}.tmp-*"), *self.dir.glob(f"{META_FILE}.tmp-*")]:
                stale.unlink(missing_ok=True)  # left by a process killed while finishing
            if not self.is_complete():
                missing = [self.shard_path(s, e).name for s, e in ranges if not self.has_shard(s, e)]
                if missing:
                    raise RuntimeError(
                        f"{len(missing)} feature shard(s) are missing in {self.dir} (e.g. {missing[:3]}). "
                        "With several processes, cache_dir must be a folder all of them can see."
                    )
                tables = [_read_arrow(self.shard_path(s, e)) for s, e in ranges]
                schema = Features.from_arrow_schema(tables[0].schema)
                n = sum(t.num_rows for t in tables)
                dim = schema[FEATURES_COLUMN].length
                feats = np.empty((n, dim), dtype=np.float32)
                indices = np.empty(n, dtype=np.int64)
                labels = [] if LABEL_COLUMN in schema else None
                row = 0
                for table in tables:
                    col = table.column(FEATURES_COLUMN).combine_chunks()
                    k = table.num_rows
                    feats[row : row + k] = col.flatten().to_numpy(zero_copy_only=False).reshape(k, dim)
                    indices[row : row + k] = table.column(INDEX_COLUMN).to_numpy()
                    if labels is not None:
                        labels.extend(table.column(LABEL_COLUMN).to_pylist())
                    row += k
                del tables
                meta = {**meta, "num_rows": n, "dim": dim}
                _atomic_write(self.meta_path, lambda f: f.write(json.dumps(meta, indent=2, default=str).encode()))
                _write_arrow(self.final_path, make_batch(indices, feats, labels, schema))
            self.remove_shards()

    def remove_shards(self) -> None:
        for path in self.dir.glob("shard-*.arrow"):
            path.unlink(missing_ok=True)

    # -- reading -----------------------------------------------------------------
    def load(self) -> Dataset:
        """The finished entry as a memory-mapped ``datasets.Dataset``."""
        if not self.is_complete():
            raise FileNotFoundError(f"no finished feature cache at {self.final_path}")
        return Dataset.from_file(str(self.final_path))

    def read_meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text()) if self.meta_path.is_file() else {}
