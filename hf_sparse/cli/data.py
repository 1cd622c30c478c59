"""Datasets from the command line: a Hub id, a folder saved with `save_to_disk`, or a CSV/TSV/JSON/Parquet file.

Also the checks that make a fit fail in seconds rather than after feature extraction: the columns exist (the
error lists the ones there are), label names are labels of the model (and are mapped to its class ids), image
path columns point at files.

Example:
    >>> train = load_source("reviews.csv", split="train", what="DATASET")
    >>> train, evaluation = split_validation(train, 0.1, seed=0)
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from .errors import CLIError, UsageError, describe
from .paths import looks_local

#: File suffix -> (datasets builder, builder options).
FILE_BUILDERS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst")
_SAVED_DATASET_MARKERS = ("dataset_dict.json", "state.json")
_GENERIC_LABEL = re.compile(r"LABEL_\d+")


def file_builder(path: Path) -> tuple[str, dict] | None:
    """The datasets builder for a data file, from its suffix (``.csv.gz`` counts as ``.csv``); None if unknown."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    return FILE_BUILDERS.get(suffixes[-1]) if suffixes else None


def is_file_source(source: str) -> bool:
    """Whether `source` is a single data file (one split only)."""
    return Path(source).expanduser().is_file()


def load_source(source: str, *, split: str, what: str, cache_dir: str | None = None, only_split: bool = True):
    """One `datasets.Dataset` from a data file, a `save_to_disk` folder (split `split` of a DatasetDict, or its
    only split when `only_split`), a folder of data files, or a Hub dataset id (its split `split`)."""
    path = Path(source).expanduser()
    known = tuple(FILE_BUILDERS) + tuple(s + c for s in FILE_BUILDERS for c in _COMPRESSION)
    if path.exists():
        with _quiet_progress():  # reading a local file takes seconds: no "Generating train split" bars
            return _load_local(path, source, split, what, cache_dir, only_split)
    if looks_local(source, known):
        raise CLIError(f"{what} {source}: no such file or folder")
    import datasets

    try:
        return datasets.load_dataset(source, split=split, cache_dir=cache_dir)
    except ValueError as err:  # e.g. an unknown split
        raise CLIError(f"cannot load split {split!r} of the Hub dataset {source!r}: {describe(err)}") from err
    except Exception as err:  # noqa: BLE001 - not found, offline, no connection
        raise CLIError(
            f"{what} {source!r} is not a local file or folder, and cannot be loaded from the Hub: {describe(err)}"
        ) from err


@contextlib.contextmanager
def _quiet_progress():
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _load_local(path: Path, source: str, split: str, what: str, cache_dir, only_split: bool):
    import datasets

    if path.is_file():
        builder = file_builder(path)
        if builder is None:
            raise CLIError(
                f"{what} {source}: unknown file type {path.suffix or '(no suffix)'!r}; use a .csv, .tsv, .json, "
                ".jsonl or .parquet file, a folder saved with save_to_disk, or a Hub dataset id"
            )
        name, options = builder
        try:
            loaded = datasets.load_dataset(name, data_files=str(path), split="train", cache_dir=cache_dir, **options)
        except Exception as err:  # noqa: BLE001 - a malformed file: pandas / pyarrow / datasets errors alike
            if "corresponds to no data" in str(err) or path.stat().st_size == 0:  # datasets' words for zero rows
                raise _no_rows(what, source, path, name) from None
            raise CLIError(f"cannot read {what} {source} as {name.upper()}: {describe(err.__cause__ or err)}") from err
        if len(loaded) == 0:
            raise _no_rows(what, source, path, name)
        return loaded
    if path.is_dir():
        if any((path / marker).is_file() for marker in _SAVED_DATASET_MARKERS):
            try:
                loaded = datasets.load_from_disk(str(path))
            except (OSError, ValueError) as err:
                raise CLIError(f"cannot load {what} {source} (a save_to_disk folder): {describe(err)}") from err
        else:
            try:
                loaded = datasets.load_dataset(str(path), cache_dir=cache_dir)
            except Exception as err:  # noqa: BLE001
                raise CLIError(
                    f"cannot load {what} {source}: {describe(err)} (give a folder saved with save_to_disk, a folder "
                    "of data files, or a data file)"
                ) from err
        return pick_split(loaded, split, what, source, only_split)
    raise CLIError(f"{what} {source} is neither a file nor a folder")


def _no_rows(what: str, source: str, path: Path, builder: str) -> CLIError:
    """The error for a data file without a single data row (empty, or a CSV header alone)."""
    header = ""
    if builder == "csv" and path.suffix.lower() in (".csv", ".tsv"):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                first = f.readline().strip()
        except OSError:
            first = ""
        header = f" (only the header line {first[:80]!r})" if first else ""
    return CLIError(f"{what} {source} has no data rows{header}: add rows (one example per line) or give another file")


def pick_split(loaded, split: str, what: str, source: str, only_split: bool = True):
    """The split `split` of a DatasetDict (or its only split, when `only_split`); a Dataset as it is."""
    if not hasattr(loaded, "keys"):
        return loaded
    splits = list(loaded.keys())
    if split in loaded:
        return loaded[split]
    if only_split and len(splits) == 1:
        return loaded[splits[0]]
    raise CLIError(f"{what} {source} has no split {split!r}; its splits are {splits}. Choose one with --split")


def first_rows(dataset, max_rows: int | None):
    """The first `max_rows` rows (all when None)."""
    if max_rows is None or len(dataset) <= max_rows:
        return dataset
    return dataset.select(range(max_rows))


def split_validation(dataset, size: float | int, seed: int):
    """``(train, validation)``: a seeded random split; `size` is a fraction in (0, 1) or a number of rows."""
    if isinstance(size, int) and size >= len(dataset):
        raise UsageError(f"--validation-size {size} leaves no training rows (the dataset has {len(dataset)})")
    try:
        parts = dataset.train_test_split(test_size=size, seed=seed, shuffle=True)
    except ValueError as err:
        raise UsageError(f"--validation-size {size}: {describe(err)}") from err
    return parts["train"], parts["test"]


def require_columns(dataset, columns, what: str) -> None:
    """Every named column exists; else a `CLIError` naming the option and listing the dataset's columns.
    `columns`: ``{option: column}`` or ``[(option, column), ...]``."""
    for flag, name in (columns.items() if isinstance(columns, dict) else columns):
        if name not in dataset.column_names:
            raise CLIError(
                f"{what} has no column {name!r} ({flag}); its columns are {dataset.column_names}. "
                f"Pass {flag} with one of those"
            )


def _preview(values: list, n: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (", ..." if len(values) > n else "")


def _replace_column(dataset, column: str, values: list, feature=None):
    """`dataset` with `column` holding `values` (memory-mapped columns are not copied)."""
    temporary = f"__hf_sparse_{column}"
    dataset = dataset.add_column(temporary, values, feature=feature).remove_columns(column)
    return dataset.rename_column(temporary, column)


def encode_labels(dataset, column: str, config, what: str):
    """Check a single-label classification column against the model's labels; map label names (strings, or a
    ClassLabel whose names are the model's in another order) to the model's class ids."""
    from datasets import ClassLabel, Value

    if config.problem_type in ("multi_label_classification", "regression") or config.num_labels < 2:
        return dataset  # targets are vectors or numbers: fit_sparse_head checks them
    k = config.num_labels
    label2id = {str(name): int(i) for name, i in (config.label2id or {}).items()}
    model_labels = [name for name, _ in sorted(label2id.items(), key=lambda item: item[1])]
    feature = dataset.features[column]
    if isinstance(feature, ClassLabel) and set(feature.names) <= set(label2id):
        mapping = [label2id[name] for name in feature.names]
        if mapping != list(range(len(mapping))):
            ids = [mapping[v] if v is not None and v >= 0 else v for v in dataset[column]]
            return _replace_column(dataset, column, ids, Value("int64"))
        return dataset
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        values = dataset[column]
        distinct = sorted({v for v in values if v is not None})
        unknown = [v for v in distinct if v not in label2id]
        if None in values:
            raise CLIError(f"the label column {column!r} of {what} has empty values; fill or drop those rows")
        if unknown and all(_GENERIC_LABEL.fullmatch(name) for name in label2id):
            raise CLIError(
                f"the label column {column!r} of {what} holds names ({_preview(distinct)}), but the model's labels "
                f"are unnamed (LABEL_0..LABEL_{k - 1}): write class ids 0..{k - 1} in the data instead, or name the "
                "labels in the model's config.json (id2label and label2id)"
            )
        if unknown:
            raise CLIError(
                f"the label column {column!r} of {what} has values {_preview(unknown)} that are not labels of "
                f"this model (its labels are {model_labels}); rename them in the data"
            )
        return _replace_column(dataset, column, [label2id[v] for v in values], Value("int64"))
    if isinstance(feature, (Value, ClassLabel)) and (isinstance(feature, ClassLabel) or feature.dtype.startswith(("int", "uint"))):
        bad = sorted({v for v in dataset[column] if v is None or not 0 <= v < k}, key=lambda v: (v is None, v or 0))
        if bad:
            raise CLIError(
                f"the label column {column!r} of {what} has values {_preview(bad)} outside this model's class ids "
                f"0..{k - 1} ({model_labels}); map them to the model's labels"
            )
    return dataset


def resolve_image_paths(dataset, column: str, source: str, what: str):
    """A column of image file paths (e.g. in a CSV) becomes an Image column; relative paths are taken from the
    data file's folder."""
    from datasets import Image, Value

    feature = dataset.features[column]
    if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
        return dataset
    source_path = Path(source).expanduser()
    base = source_path.parent if source_path.is_file() else Path.cwd()
    paths = [p if p is None or os.path.isabs(p) else str(base / p) for p in dataset[column]]
    missing = [p for p in paths if p is None or not os.path.isfile(p)]
    if missing:
        raise CLIError(f"the image column {column!r} of {what} names {len(missing)} missing file(s), e.g. {missing[0]}")
    return _replace_column(dataset, column, paths).cast_column(column, Image())
