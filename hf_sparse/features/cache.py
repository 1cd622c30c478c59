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

Every file carries its row count and an xxh3 checksum of its rows in its Arrow
schema metadata, and is checked when read: the row count, the row indices
(``start..end`` for a shard, ``0..n`` for the finished file, ``n`` the
dataset's length), the checksum. A damaged shard (truncated, empty, edited) is
computed again; a damaged ``features.arrow`` is deleted and extracted again by
:func:`extract_features`, while :meth:`FeatureCache.load` (and
``FeatureSet.load``) raise :class:`DamagedCacheError` naming the folder to
delete.

Example::

    >>> cache = FeatureCache(default_cache_root(), key)
    >>> cache.is_complete()
    False
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import xxhash
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
#: Key of the Arrow schema metadata holding a file's row count and checksum.
INTEGRITY_KEY = b"hf_sparse"


class DamagedCacheError(RuntimeError):
    """A feature cache file is truncated, holds the wrong rows, or does not match its checksum."""


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


def rows_checksum(table: pa.Table | pa.RecordBatch) -> str:
    """xxh3-128 of the rows of a cache file: its index, label and feature values (chunking does not matter).

    Example::

        >>> rows_checksum(make_batch(np.arange(2), np.zeros((2, 3)), None, feature_schema(3, None)))
        '...'
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    h = xxhash.xxh3_128()
    h.update(f"{table.num_rows}|".encode())
    for name in (INDEX_COLUMN, LABEL_COLUMN, FEATURES_COLUMN):
        if name not in table.column_names:
            continue
        column = table.column(name)
        h.update(f"{name}|{column.type}|{column.null_count}|".encode())
        if name == FEATURES_COLUMN:
            parts = [c.flatten().to_numpy(zero_copy_only=False) for c in column.chunks]
        elif (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)) and column.null_count == 0:
            parts = [c.to_numpy(zero_copy_only=False) for c in column.chunks]
        else:  # e.g. a multi-label list column: its values as JSON
            parts = [np.frombuffer(json.dumps(column.to_pylist(), default=str).encode(), dtype=np.uint8)]
        for part in parts:
            if part.size:
                h.update(np.ascontiguousarray(part).data)
    return h.hexdigest()


def _write_arrow(path: Path, batch: pa.RecordBatch) -> None:
    integrity = json.dumps({"num_rows": batch.num_rows, "checksum": rows_checksum(batch)}).encode()
    batch = batch.replace_schema_metadata({**(batch.schema.metadata or {}), INTEGRITY_KEY: integrity})

    def write(f):
        with pa.ipc.new_stream(f, batch.schema) as writer:
            writer.write_batch(batch)

    _atomic_write(path, write)
    first = int(batch.column(INDEX_COLUMN)[0].as_py()) if batch.num_rows else 0
    _remember_verified(path, first, batch.num_rows)  # written from rows in memory: no need to read it back


def _read_arrow(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


#: path -> ((inode, size, mtime), first row, rows) of files checked (or written) by this process: a file is checked
#: once, not at every read, unless it changed since.
_VERIFIED: dict[str, tuple[tuple[int, int, int], int, int]] = {}


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _remember_verified(path: Path, start: int, num_rows: int) -> None:
    key = _stat_key(path)
    if key is not None:
        _VERIFIED[str(path)] = (key, start, num_rows)


def check_arrow_file(path: Path, start: int, num_rows: int | None) -> str | None:
    """What is wrong with the cache file ``path`` (rows ``start..start+num_rows``), or None if it is sound.

    Checks that it reads as an Arrow stream, its row count (``num_rows``, when known, and the one it records),
    its row indices and the checksum of its rows. A file already checked by this process and not changed since
    is not read again.

    Example::

        >>> check_arrow_file(cache.shard_path(0, 4096), 0, 4096)   # None, or e.g. '0 rows instead of 4096'
    """
    key = _stat_key(path)
    if key is None:
        return "the file is missing"
    known = _VERIFIED.get(str(path))
    if known is not None and known[0] == key and known[1] == start and num_rows in (None, known[2]):
        return None
    try:
        table = _read_arrow(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        return f"it is not a readable Arrow file, e.g. truncated ({type(err).__name__}: {str(err)[:200]})"
    rows = table.num_rows
    try:
        if FEATURES_COLUMN not in table.column_names or INDEX_COLUMN not in table.column_names:
            return f"it has columns {table.column_names}, not {INDEX_COLUMN!r} and {FEATURES_COLUMN!r}"
        integrity = (table.schema.metadata or {}).get(INTEGRITY_KEY)
        recorded = json.loads(integrity) if integrity else None
        if num_rows is not None and table.num_rows != num_rows:
            return f"it holds {table.num_rows} rows instead of {num_rows}"
        if recorded is not None and table.num_rows != recorded.get("num_rows"):
            return f"it holds {table.num_rows} rows but was written with {recorded.get('num_rows')}"
        indices = table.column(INDEX_COLUMN).to_numpy()
        if not np.array_equal(indices, np.arange(start, start + table.num_rows)):
            return f"its rows are not dataset rows {start}..{start + table.num_rows - 1} in order"
        if table.column(FEATURES_COLUMN).null_count:
            return "some feature rows are null"
        if recorded is not None and rows_checksum(table) != recorded.get("checksum"):
            return "its rows do not match the checksum it was written with (the file was modified or corrupted)"
    except (pa.ArrowException, ValueError, TypeError, AttributeError) as err:
        return f"it could not be checked ({type(err).__name__}: {str(err)[:200]})"
    finally:
        del table
    _VERIFIED[str(path)] = (key, start, rows)
    return None


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
        """True once a sound ``features.arrow`` exists (it appears only complete).

        A damaged one (see :meth:`check_final`) is deleted with a warning, so the caller extracts it again.
        """
        if not self.final_path.is_file():
            return False
        problem = self.check_final()
        if problem is None:
            return True
        self._discard_final(problem)
        return False

    def check_final(self) -> str | None:
        """What is wrong with ``features.arrow`` and ``meta.json``, or None when they are sound."""
        try:
            meta = self.read_meta()
        except DamagedCacheError as err:
            return str(err)
        fingerprint = meta.get("fingerprint") if isinstance(meta.get("fingerprint"), dict) else {}
        expected = fingerprint.get("num_rows", meta.get("num_rows"))  # the dataset's length, when recorded
        problem = check_arrow_file(self.final_path, 0, expected if isinstance(expected, int) else None)
        return None if problem is None else f"{FEATURES_FILE}: {problem}"

    def _discard_final(self, problem: str) -> None:
        warnings.warn(
            f"The feature cache {self.dir} is damaged ({problem}); deleting its {FEATURES_FILE} and extracting "
            "the features again.", UserWarning, stacklevel=3,
        )
        self.prepare()
        with self.lock("final"):
            if self.final_path.is_file() and self.check_final() is not None:  # not replaced by a sound one meanwhile
                self.final_path.unlink(missing_ok=True)
                self.meta_path.unlink(missing_ok=True)

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
        """True when a sound shard of rows ``[start, end)`` exists; a damaged one counts as absent (with a warning)
        and is computed again (``write_shard`` replaces it)."""
        path = self.shard_path(start, end)
        if not path.is_file():
            return False
        problem = check_arrow_file(path, start, end - start)
        if problem is None:
            return True
        warnings.warn(f"The feature shard {path.name} in {self.dir} is damaged ({problem}); computing it again.",
                      UserWarning, stacklevel=2)
        return False

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
            if not (self.final_path.is_file() and self.check_final() is None):
                missing = [self.shard_path(s, e).name for s, e in ranges if not self.shard_path(s, e).is_file()]
                if missing:
                    raise RuntimeError(
                        f"{len(missing)} feature shard(s) are missing in {self.dir} (e.g. {missing[:3]}). "
                        "With several processes, cache_dir must be a folder all of them can see."
                    )
                damaged = {}
                for s, e in ranges:
                    problem = check_arrow_file(self.shard_path(s, e), s, e - s)
                    if problem is not None:
                        damaged[self.shard_path(s, e).name] = problem
                if damaged:
                    for name in damaged:
                        (self.dir / name).unlink(missing_ok=True)
                    first = next(iter(damaged.items()))
                    raise DamagedCacheError(
                        f"{len(damaged)} feature shard(s) in {self.dir} are damaged (e.g. {first[0]}: {first[1]}) "
                        "and were deleted; run the extraction again: it computes only those shards."
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
        """The finished entry as a memory-mapped ``datasets.Dataset``, checked first (see :meth:`check_final`).

        Raises ``FileNotFoundError`` when it is not finished and :class:`DamagedCacheError` (naming the folder to
        delete) when it is damaged.
        """
        if not self.final_path.is_file():
            raise FileNotFoundError(f"no finished feature cache at {self.final_path}")
        problem = self.check_final()
        if problem is None:
            try:
                return Dataset.from_file(str(self.final_path))
            except (pa.ArrowException, OSError, ValueError) as err:
                problem = f"{FEATURES_FILE}: {type(err).__name__}: {str(err)[:200]}"
        raise DamagedCacheError(
            f"The feature cache {self.dir} is damaged ({problem}). Delete the folder {self.dir} and extract the "
            "features again (extract_features or fit_sparse_head rebuilds it)."
        )

    def read_meta(self) -> dict[str, Any]:
        """``meta.json`` as a dict (``{}`` when there is none); :class:`DamagedCacheError` when it is not JSON."""
        if not self.meta_path.is_file():
            return {}
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError) as err:
            raise DamagedCacheError(f"{META_FILE} is not readable JSON ({err})") from err
        if not isinstance(meta, dict):
            raise DamagedCacheError(f"{META_FILE} holds a {type(meta).__name__}, not a JSON object")
        return meta
