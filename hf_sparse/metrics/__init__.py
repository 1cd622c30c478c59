"""Bias metrics as local `evaluate` modules, loadable offline by their paths and usable with `evaluate.combine`.

- `BIAS_AUC`: subgroup, BPSN and BNSP AUC per subgroup, their generalized mean and the final score (Borkan et al.
  2019, the Jigsaw Unintended Bias metric);
- `WORST_GROUP_ACCURACY`: each group's accuracy and the lowest.

Both take `predictions`, `references` and `subgroups` (a list of group names per example), so they combine.
This layer sits beside `audit` (which computes through it) and imports no other part of hf_sparse.

Example:
    >>> import evaluate
    >>> from hf_sparse.metrics import BIAS_AUC, WORST_GROUP_ACCURACY
    >>> both = evaluate.combine([evaluate.load(BIAS_AUC), evaluate.load(WORST_GROUP_ACCURACY)])
    >>> both.compute(predictions=[0.1, 0.8, 0.3, 0.9], references=[0, 1, 0, 1],
    ...              subgroups=[["gay"], ["gay"], [], []], threshold=0.5)["worst_group_accuracy"]
    1.0
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

_HERE = Path(__file__).resolve().parent
#: The folder of each module: pass it to `evaluate.load` (no network needed).
BIAS_AUC = str(_HERE / "bias_auc")
WORST_GROUP_ACCURACY = str(_HERE / "worst_group_accuracy")
PATHS = {"bias_auc": BIAS_AUC, "worst_group_accuracy": WORST_GROUP_ACCURACY}


@functools.lru_cache(maxsize=None)
def load(name: str):
    """`evaluate.load` of one of this package's metrics by name ("bias_auc", "worst_group_accuracy"), kept in memory
    and cached per process.

    Example:
        >>> load("bias_auc").compute(predictions=[0.1, 0.8, 0.3, 0.9], references=[0, 1, 0, 1],
        ...                          subgroups=[["a"], ["a"], [], []])["final_score"]
        1.0
    """
    if name not in PATHS:
        raise ValueError(f"unknown hf_sparse metric {name!r}; the metrics are {sorted(PATHS)}")
    import evaluate

    return evaluate.load(PATHS[name], keep_in_memory=True)


_LOCK = threading.Lock()


def compute(name: str, **inputs) -> dict:
    """`load(name).compute(**inputs)`, one call at a time (an evaluate module holds its inputs while it computes).

    Example:
        >>> compute("worst_group_accuracy", predictions=[1, 0], references=[1, 1], subgroups=[["a"], ["b"]])["worst_group"]
        'b'
    """
    module = load(name)
    with _LOCK:
        return module.compute(**inputs)


__all__ = ["BIAS_AUC", "PATHS", "WORST_GROUP_ACCURACY", "compute", "load"]
