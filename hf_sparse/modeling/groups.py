"""Groups of examples (a shortcut word, an error slice, an identity term) aligned to cached feature rows.

A *group spec* says which group each example of a dataset is in:

- a column name of the dataset (e.g. ``"has_shortcut"``, ``"identity"``);
- a sequence with one value per example of the dataset (list, NumPy array, tensor);
- a callable applied to each example's text (text models) or image (image models), e.g.
  ``hf_sparse.audit.contains_word("tuesday")`` or an ``ErrorSliceReport``'s ``assign``-based maker.

Values can be anything hashable (bools, strings, ints); they become ids 0..G-1 in sorted order of their text, and
``Groups.names`` keeps a readable name for each.

Example:
    >>> groups = resolve_groups("has_shortcut", dataset, rows=feats.indices, modality="text", text_column="text")
    >>> groups.ids[:5], groups.names
    (tensor([0, 1, 0, 0, 1]), ['has_shortcut=False', 'has_shortcut=True'])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Groups:
    """One group id per cached row, and the groups' names (`names[id]`)."""

    ids: torch.Tensor
    names: list[str]

    def name_of(self, group_id: int) -> str:
        return self.names[int(group_id)]


def _spec_name(spec) -> str:
    if isinstance(spec, str):
        return spec
    return str(getattr(spec, "name", None) or getattr(spec, "__name__", None) or "group")


def _values(spec, dataset, rows: list[int], modality: str, text_column: str, image_column: str, where: str) -> list:
    n = len(dataset)
    if isinstance(spec, str):
        columns = list(getattr(dataset, "column_names", None) or [])
        if spec not in columns:
            raise ValueError(f"{where}: groups={spec!r} is not a column of the dataset (its columns: {columns}). "
                             "Pass a column name, one group value per example, or a function of the text/image.")
        column = dataset[spec]
        return [column[r] for r in rows]
    if callable(spec):
        column = dataset[text_column if modality == "text" else image_column]
        return [spec(column[r]) for r in rows]
    values = spec.tolist() if hasattr(spec, "tolist") else list(spec)
    if len(values) != n:
        raise ValueError(f"{where}: groups has {len(values)} entries for a dataset of {n} examples; give one "
                         "group value per example (in dataset order).")
    return [values[r] for r in rows]


def resolve_groups(spec: str | Callable | object, dataset, rows, *, modality: str, text_column: str = "text",
                   image_column: str = "image", where: str = "dataset") -> Groups:
    """Group ids for the dataset rows `rows` (the cached features' `indices`), from a group spec (see module doc)."""
    if dataset is None:
        raise ValueError(f"{where}: groups need the dataset the features came from.")
    rows = [int(r) for r in (rows.tolist() if hasattr(rows, "tolist") else rows)]
    values = _values(spec, dataset, rows, modality, text_column, image_column, where)
    for v in values:
        try:
            hash(v)
        except TypeError:
            raise TypeError(f"{where}: group values must be hashable (bool, str, int); got {type(v).__name__}.") from None
    distinct = sorted(set(values), key=lambda v: (str(type(v)), str(v)))
    if len(distinct) < 2:
        raise ValueError(f"{where}: every example is in the same group ({distinct[0]!r}): balancing needs at least "
                         "two groups. Check the column, word or slice that defines them.")
    ids = {v: i for i, v in enumerate(distinct)}
    label = _spec_name(spec)
    names = [f"{label}={v}" for v in distinct]
    return Groups(torch.tensor([ids[v] for v in values], dtype=torch.long), names)
