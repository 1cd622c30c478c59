"""Group-balanced sample weights and per-group accuracy: the arithmetic of last-layer retraining.

Last-layer retraining (Kirichenko, Izmailov & Wilson 2022, "Last Layer Re-Training is Sufficient for Robustness to
Spurious Correlations") refits the head on data where a spurious attribute and the label are decorrelated. With
cached features that is a weighted fit: every (group, label) cell that has examples gets the same total weight,
so a rare cell (negatives that carry the shortcut word) counts as much as a common one.

Example:
    >>> w = group_balanced_weights(groups=[0, 0, 0, 1], labels=[1, 1, 0, 1])
    >>> w.tolist()                      # cells (0,1) x2, (0,0) x1, (1,1) x1: each cell sums to 4/3
    [0.6666666666666666, 0.6666666666666666, 1.3333333333333333, 1.3333333333333333]
    >>> group_accuracy(correct=[True, False, True, True], groups=[0, 0, 1, 1])
    {0: 0.5, 1: 1.0}
"""

from __future__ import annotations

import torch

#: What `balance=` may be: equal weight per (group, label) cell, per group, or per label.
BALANCE_MODES = ("groups", "group", "labels")


def _as_ids(values, n: int | None, what: str) -> torch.Tensor:
    t = torch.as_tensor(values)
    if t.dim() != 1:
        raise ValueError(f"{what} must be one value per example (a 1-D sequence); got shape {tuple(t.shape)}.")
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{what} has {t.shape[0]} entries for {n} examples.")
    if t.is_floating_point():
        if not bool(torch.all(t == t.round())):
            raise ValueError(f"{what} must hold integer ids; got non-integer values.")
    return t.long()


def cell_ids(groups, labels) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """One id per (group, label) cell present, and the cells in id order."""
    g = _as_ids(groups, None, "groups")
    y = _as_ids(labels, g.shape[0], "labels")
    pairs = torch.stack([g, y], 1)
    cells, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    return inverse, [tuple(int(v) for v in c) for c in cells.tolist()]


def group_balanced_weights(groups, labels, *, balance: str = "groups", base_weight=None) -> torch.Tensor:
    """Float64 sample weights with mean 1 that give every cell the same total weight.

    `balance="groups"`: the cells are (group, label) pairs (the DFR recipe); `"group"`: the groups alone;
    `"labels"`: the labels alone (class balancing). Empty cells get nothing: a cell the data lacks cannot be
    upweighted (the fix then needs data where the attribute appears with every label). `base_weight`: existing
    row weights, kept in proportion inside each cell (each cell's total is then the same).

    Example:
        >>> group_balanced_weights([0, 0, 0, 1], [1, 1, 1, 1]).tolist()
        [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]
    """
    if balance not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {BALANCE_MODES}; got {balance!r}.")
    y = _as_ids(labels, None, "labels")
    if balance == "labels":
        ids = y
    else:
        g = _as_ids(groups, y.shape[0], "groups")
        ids = g if balance == "group" else cell_ids(g, y)[0]
    _, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    n, n_cells = ids.shape[0], counts.shape[0]
    if base_weight is None:
        return (n / n_cells) / counts[inverse].double()
    base = torch.as_tensor(base_weight, dtype=torch.float64).flatten()
    if base.shape[0] != n or bool((base < 0).any()):
        raise ValueError(f"base_weight must hold {n} non-negative weights; got shape {tuple(base.shape)}.")
    totals = torch.zeros(n_cells, dtype=torch.float64).index_add_(0, inverse, base)
    return base * (n / n_cells) / totals[inverse].clamp_min(torch.finfo(torch.float64).tiny)


def group_accuracy(correct, groups) -> dict[int, float]:
    """{group id: accuracy of its examples} for a boolean `correct` per example."""
    c = torch.as_tensor(correct).bool()
    g = _as_ids(groups, c.shape[0], "groups")
    return {int(v): float(c[g == v].double().mean()) for v in torch.unique(g).tolist()}


def worst_group_accuracy(correct, groups) -> float:
    """The smallest per-group accuracy."""
    return min(group_accuracy(correct, groups).values())
