"""The one definition of a feature's top examples, shared by `describe_features` and `audit.features_with_word`.

A feature j of the sparse head pushes towards a class through the sign of its weight there: where the weight is
positive, high values of j push towards that class; where it is negative, low values do. Its top examples *in a
direction* d (+1 or -1) are the cached rows with the largest d * x_j (ties: the earlier row first), and the
directions a feature is read in are the signs its nonzero weights take (+1 for a feature the head does not use).
`describe_features` shows direction +1 as a feature's top examples and direction -1 as its bottom examples.

The rows come from the cached features of the last `fit_sparse_head` (`model.fit_data`): `split="eval"`, `"train"`
or `"both"` (train rows, then eval rows); `None` is the evaluation data when the fit had some, else the training
data (what descriptions read).

Example:
    >>> [t.rows for t in top_examples(model, 46, n=3)]     # after fit_sparse_head; one list per direction
    [[12, 401, 87]]
    >>> head_directions(model, 46)
    [1]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

SPLITS = ("eval", "train", "both")


@dataclass
class CachedRows:
    """The cached head inputs of one split of the last fit, or of both stacked (train first).

    `X[i]` is the feature vector of row `rows[i]` of the dataset of split `splits[i]` (`datasets[splits[i]]`);
    `labels[i]` its label (None when the cache has no labels).
    """

    X: torch.Tensor
    rows: list[int]
    splits: list[str]
    labels: torch.Tensor | None
    datasets: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list:
        """Column `name` of the source datasets, one value per cached row (read once per split)."""
        values = {}
        for split, dataset in self.datasets.items():
            if name not in dataset.column_names:
                raise ValueError(f"the fit's {split} dataset has no column {name!r} (columns: {dataset.column_names})")
            values[split] = dataset[name]
        return [values[s][r] for s, r in zip(self.splits, self.rows)]

    def value(self, i: int, name: str):
        """Column `name` of cached row `i` in its source dataset."""
        return self.datasets[self.splits[i]][int(self.rows[i])][name]

    def count(self, split: str) -> int:
        return sum(s == split for s in self.splits)


def cached_rows(model, split: str | None = None, *, caller: str = "top_examples") -> CachedRows:
    """The cached features of the last fit for `split` ("eval", "train", "both", or None: eval when there is an
    eval set, else train); clear errors when there was no fit or no such split."""
    fit = model.fit_data
    if fit is None:
        raise ValueError(f"{caller} reads the cached features of the last fit: call model.fit_sparse_head first.")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} (or None for the evaluation data); got {split!r}")
    has_eval = fit.eval_features is not None
    if split == "eval" and not has_eval:
        raise ValueError(f"{caller}(split='eval'): the last fit had no eval_dataset; use split='train' or 'both'.")
    if split is None:
        split = "eval" if has_eval else "train"
    names = {"eval": ["eval"], "train": ["train"], "both": ["train", "eval"] if has_eval else ["train"]}[split]
    parts = {"train": (fit.train_features, fit.train_dataset), "eval": (fit.eval_features, fit.eval_dataset)}
    X, rows, splits, labels = [], [], [], []
    for name in names:
        cached, _ = parts[name]
        X.append(cached.features.float())
        index = cached.indices.tolist()
        rows += index
        splits += [name] * len(index)
        labels.append(cached.labels)
    if any(lab is None for lab in labels) or len({tuple(lab.shape[1:]) for lab in labels}) > 1:
        merged = None
    else:
        merged = torch.cat([torch.as_tensor(lab) for lab in labels])
    return CachedRows(X=torch.cat(X), rows=rows, splits=splits, labels=merged,
                      datasets={name: parts[name][1] for name in names})


def head_directions(model, feature: int) -> list[int]:
    """The signs (+1 first) of the head's nonzero weights on `feature`; [1] for a feature the head does not use."""
    column = model.sparse_head.weight[:, int(feature)].float()
    signs = sorted({1 if w > 0 else -1 for w in column.tolist() if w != 0}, reverse=True)
    return signs or [1]


def top_positions(values: torch.Tensor, direction: int, n: int) -> list[int]:
    """Positions of the `n` largest `direction * values` (ties: the earlier position first)."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    order = torch.argsort(direction * values.float(), descending=True, stable=True)
    return order[: max(int(n), 0)].tolist()


@dataclass
class TopExamples:
    """A feature's top examples in one direction: positions in the `CachedRows`, rows in their source datasets,
    the split each comes from, and the feature's value on each."""

    feature: int
    direction: int
    positions: list[int]
    rows: list[int]
    splits: list[str]
    activations: list[float]


def top_examples(
    model,
    feature: int,
    *,
    n: int = 20,
    directions: list[int] | None = None,
    split: str | None = None,
    data: CachedRows | None = None,
) -> list[TopExamples]:
    """A feature's top `n` examples in each direction the head reads it (`head_directions`), or in `directions`.

    `data` (from `cached_rows`) saves re-reading the cache when called for many features.

    Example:
        >>> up, down = top_examples(model, 7, n=5, directions=[1, -1], split="eval")
        >>> up.rows, down.activations
    """
    data = cached_rows(model, split) if data is None else data
    j = int(feature)
    if not 0 <= j < data.X.shape[1]:
        raise ValueError(f"feature index {j} is outside 0..{data.X.shape[1] - 1}")
    out = []
    for d in directions if directions is not None else head_directions(model, j):
        positions = top_positions(data.X[:, j], d, n)
        out.append(TopExamples(feature=j, direction=int(d), positions=positions,
                               rows=[int(data.rows[i]) for i in positions], splits=[data.splits[i] for i in positions],
                               activations=[float(data.X[i, j]) for i in positions]))
    return out
