"""Groups, counterfactuals and worst-group scores of a fit that fixes a shortcut or a bias (`fit_sparse_head`'s
`groups=`, `eval_groups=`, `augment=`; last-layer retraining, Kirichenko et al. 2022).

- `reusable_groups`: a group spec that also names another dataset's groups (a column name or a function);
- `cell_groups`: the (group, label) cells that worst-group accuracy is taken over;
- `augmented_examples`: counterfactual texts of the training rows, encoded (cached per text on the `FitData`);
- `worst_group_scorer`: a path point -> its worst cell's accuracy on the evaluation features.

Example:
    >>> cells = cell_groups(groups, y_val, {0: "neg", 1: "pos"})
    >>> cells.names                     # ['has_shortcut=False / neg', 'has_shortcut=False / pos', ...]
    >>> worst_group_scorer(X_val, y_val, cells)(path[10])
"""

from __future__ import annotations

import torch

from .encode import FitData
from .groups import Groups


def reusable_groups(groups):
    """`groups` when it also names the groups of another dataset (a column name or a function of the text or
    image), else None (values given row by row belong to one dataset).

    Example:
        >>> reusable_groups("has_shortcut"), reusable_groups([0, 1, 1])
        ('has_shortcut', None)
    """
    return groups if isinstance(groups, str) or callable(groups) else None


def cell_groups(groups: Groups, y: torch.Tensor, label_names: dict) -> Groups:
    """(group, label) cells as groups, named "group / label": what worst-group accuracy is taken over.

    Example:
        >>> cell_groups(Groups(torch.tensor([0, 1, 0]), ["a", "b"]), torch.tensor([1, 1, 0]), {0: "neg", 1: "pos"})
        Groups(ids=tensor([0, 1, 2]), names=['a / pos', 'b / pos', 'a / neg'])
    """
    cells, ids = {}, []
    for g, c in zip(groups.ids.tolist(), y.tolist()):
        ids.append(cells.setdefault((g, int(c)), len(cells)))
    names = [None] * len(cells)
    for (g, c), i in cells.items():
        names[i] = f"{groups.name_of(g)} / {label_names.get(c, c)}"
    return Groups(torch.tensor(ids, dtype=torch.long), names)


def augmented_examples(model, fit: FitData, augment, y, groups, batch_size, max_length):
    """Counterfactual texts of the training examples, encoded, with their labels, groups and source rows:
    `(X_new, y_new, groups_new or None, source)`, or None when `augment` makes no new text.

    The features of each text are cached in `fit.counterfactuals` (per `max_length`): a refit with the same
    `augment` encodes nothing again.

    Example:
        >>> X_new, y_new, g_new, source = augmented_examples(model, model.fit_data, identity_swaps(), y, None, 64, None)
    """
    if model.modality != "text":
        raise TypeError("augment= makes counterfactual texts: it needs a text model.")
    texts = fit.train_dataset[fit.text_column]
    rows = fit.train_features.indices.tolist()
    new_texts, source = [], []
    for i, r in enumerate(rows):
        for t in augment(str(texts[r])) or []:
            if t != texts[r]:
                new_texts.append(t)
                source.append(i)
    if not new_texts:
        return None
    cache = fit.counterfactuals.setdefault(max_length, {})  # text -> features, per max_length
    todo = [t for t in dict.fromkeys(new_texts) if t not in cache]
    if todo:
        cache.update(zip(todo, model.encode(todo, batch_size=batch_size, max_length=max_length)))
    X_new = torch.stack([cache[t] for t in new_texts])
    src = torch.tensor(source)
    return X_new, y[src], None if groups is None else groups[src], src


def worst_group_scorer(X_val, y_val, cells: Groups):
    """point -> the worst (group, label) cell's accuracy of its head on the evaluation features.

    Example:
        >>> score = worst_group_scorer(X_val, y_val, cells); score(path[10])
        0.71
    """
    from hf_sparse.solver.balance import worst_group_accuracy

    def score(point) -> float:
        correct = (X_val @ point.weight.T.float() + point.bias.float()).argmax(1) == y_val
        return worst_group_accuracy(correct, cells.ids)

    return score
