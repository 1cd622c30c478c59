"""Worst-group accuracy: the lowest accuracy over groups of examples (Sagawa et al. 2020), and each group's accuracy.

An `evaluate` metric script, self-contained (numpy only), loadable offline by its path:

    >>> import evaluate
    >>> from hf_sparse.metrics import WORST_GROUP_ACCURACY
    >>> wga = evaluate.load(WORST_GROUP_ACCURACY)
    >>> r = wga.compute(predictions=[1, 0, 1, 1], references=[1, 0, 0, 1], subgroups=[["a"], ["a"], ["b"], ["b"]])
    >>> r["worst_group_accuracy"], r["worst_group"]
    (0.5, 'b')
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

#: Options of this module and of its companion `bias_auc` (both accept all, so that `evaluate.combine` can pass
#: every option to both); anything else is a mistake and raises.
OPTIONS = ("power", "weights", "min_size", "threshold", "by_label")

_CITATION = """\
@inproceedings{sagawa2020distributionally,
  title={Distributionally Robust Neural Networks for Group Shifts: On the Importance of Regularization for
         Worst-Case Generalization},
  author={Sagawa, Shiori and Koh, Pang Wei and Hashimoto, Tatsunori B. and Liang, Percy},
  booktitle={International Conference on Learning Representations},
  year={2020}
}
"""

_DESCRIPTION = """\
The accuracy of the predictions within each group (an example may be in several groups, or in none), and the lowest
of them. With by_label=True each group is split by the reference label into "group / label" cells, as in the
Waterbirds / CelebA worst-group evaluations.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted labels (whole numbers), or scores of label 1 with `threshold=`.
    references (`list` of `int`): the true labels.
    subgroups (`list` of `list` of `str`): the groups each example belongs to (an empty list for none).
    threshold (`float`, optional): predict label 1 where the score is >= threshold (binary tasks; needed when the
        predictions are scores, e.g. when combined with `bias_auc`).
    by_label (`bool`, defaults to False): split each group by the reference label ("group / label").
    min_size (`int`, defaults to 1): groups with fewer examples are left out (listed in `skipped`).
Returns:
    accuracy (all examples), worst_group_accuracy, worst_group, group_accuracy ({group: accuracy}),
    group_size ({group: n}), skipped ({group: n}).
Example:
    >>> wga.compute(predictions=[0.9, 0.2, 0.7], references=[1, 0, 0], subgroups=[["a"], ["a"], ["b"]],
    ...             threshold=0.5)["group_accuracy"]
    {'a': 1.0, 'b': 0.0}
"""


def predicted_labels(predictions, threshold=None) -> np.ndarray:
    """Labels from `predictions`: as they are (whole numbers), or `score >= threshold`."""
    p = np.asarray(predictions, dtype=float).reshape(-1)
    if threshold is not None:
        return (p >= float(threshold)).astype(int)
    if p.size and not np.all(p == np.round(p)):
        raise ValueError(f"predictions hold scores (e.g. {p[p != np.round(p)][0]:.3g}), not labels: pass "
                         "threshold= (e.g. 0.5) to predict label 1 where the score reaches it")
    return p.astype(int)


def worst_group_results(predictions, references, subgroups, *, threshold=None, by_label: bool = False,
                        min_size: int = 1) -> dict:
    """The metric's result (see `_KWARGS_DESCRIPTION`), computed from plain sequences."""
    pred = predicted_labels(predictions, threshold)
    y = np.asarray(references).astype(int).reshape(-1)
    if pred.shape != y.shape:
        raise ValueError(f"{pred.size} predictions but {y.size} references")
    if len(subgroups) != y.size:
        raise ValueError(f"subgroups has {len(subgroups)} entries but there are {y.size} predictions: give one list "
                         "of group names per example (an empty list for none)")
    members: dict[str, list[int]] = {}
    for i, names in enumerate(subgroups):
        for name in names or ():
            key = f"{name} / {y[i]}" if by_label else str(name)
            members.setdefault(key, []).append(i)
    correct = pred == y
    kept = {k: np.asarray(v) for k, v in members.items() if len(v) >= min_size}
    accuracy = {k: float(correct[idx].mean()) for k, idx in kept.items()}
    worst = min(accuracy, key=accuracy.get) if accuracy else None
    return {"accuracy": float(correct.mean()) if y.size else None,
            "worst_group_accuracy": accuracy[worst] if worst is not None else None,
            "worst_group": worst,
            "group_accuracy": accuracy,
            "group_size": {k: int(idx.size) for k, idx in kept.items()},
            "skipped": {k: len(v) for k, v in members.items() if k not in kept}}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WorstGroupAccuracy(evaluate.Metric):
    """The lowest accuracy over groups of examples, and each group's accuracy."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("float64"),
                "references": datasets.Value("int32"),
                "subgroups": datasets.Sequence(datasets.Value("string")),
            }),
            reference_urls=["https://arxiv.org/abs/1911.08731"],
        )

    def _compute(self, predictions, references, subgroups, threshold=None, by_label: bool = False, min_size: int = 1,
                 **options):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TypeError(f"worst_group_accuracy got unknown arguments {unknown}; its options are {list(OPTIONS)}")
        return worst_group_results(predictions, references, subgroups, threshold=threshold, by_label=by_label,
                                   min_size=min_size)
