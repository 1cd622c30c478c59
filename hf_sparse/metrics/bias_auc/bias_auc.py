"""Bias AUCs of Borkan et al. (2019): subgroup AUC, BPSN AUC, BNSP AUC, their generalized mean and the final score.

An `evaluate` metric script, self-contained (numpy and scikit-learn only), loadable offline by its path:

    >>> import evaluate
    >>> from hf_sparse.metrics import BIAS_AUC
    >>> bias_auc = evaluate.load(BIAS_AUC)
    >>> r = bias_auc.compute(predictions=[0.1, 0.8, 0.3, 0.9], references=[0, 1, 0, 1],
    ...                      subgroups=[["gay"], ["gay"], [], []], min_size=1)
    >>> r["overall_auc"], r["subgroup_auc"]["gay"], r["final_score"]
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import datasets
import evaluate
import numpy as np
from sklearn.metrics import roc_auc_score

METRICS = ("subgroup_auc", "bpsn_auc", "bnsp_auc")
#: Keyword arguments of this module and of its companion `worst_group_accuracy` (both accept all, so that
#: `evaluate.combine` can pass every option to both); anything else is a mistake and raises.
OPTIONS = ("power", "weights", "min_size", "threshold", "by_label")

_CITATION = """\
@inproceedings{borkan2019nuanced,
  title={Nuanced Metrics for Measuring Unintended Bias with Real Data for Text Classification},
  author={Borkan, Daniel and Dixon, Lucas and Sorensen, Jeffrey and Thain, Nithum and Vasserman, Lucy},
  booktitle={Companion Proceedings of The 2019 World Wide Web Conference},
  pages={491--500},
  year={2019}
}
"""

_DESCRIPTION = """\
For each identity subgroup s (the examples that mention it), with references y (1 = the audited label, e.g. toxic)
and scores (the predicted probability of that label):
- subgroup AUC: ROC AUC on the examples in s only;
- BPSN AUC (background positive, subgroup negative): on the negatives in s and the positives outside s;
- BNSP AUC (background negative, subgroup positive): on the positives in s and the negatives outside s.
The generalized mean M_p(m) = (mean_s m_s^p)^(1/p), p = -5, leans towards the worst subgroups; the final score is
w0 * overall AUC + sum over the three metrics of w * M_p, all weights 0.25 (the Jigsaw Unintended Bias in Toxicity
Classification metric). An AUC whose examples hold one class only is undefined (None) and left out of the means.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): the score of the audited label per example.
    references (`list` of `int`): 1 where the example has the audited label, else 0.
    subgroups (`list` of `list` of `str`): the subgroups each example belongs to (an empty list for none).
    power (`float`, defaults to -5): the power of the generalized mean.
    weights (`dict`, optional): {"overall", "subgroup_auc", "bpsn_auc", "bnsp_auc"} weights, 0.25 each by default.
    min_size (`int`, defaults to 1): subgroups with fewer examples are left out (listed in `skipped`).
Returns:
    overall_auc, subgroup_auc / bpsn_auc / bnsp_auc ({subgroup: AUC or None}), subgroup_size ({subgroup: n}),
    generalized_mean ({metric: M_p}), final_score, skipped ({subgroup: n}).
Example:
    >>> bias_auc.compute(predictions=[0.1, 0.8, 0.3, 0.9], references=[0, 1, 0, 1],
    ...                  subgroups=[["gay"], ["gay"], [], []])["bpsn_auc"]
    {'gay': 1.0}
"""


def auc_or_none(y, scores) -> float | None:
    """ROC AUC, or None when `y` holds only one class (the AUC is undefined)."""
    y = np.asarray(y)
    if y.size == 0 or y.min() == y.max():
        return None
    return float(roc_auc_score(y, scores))


def bias_aucs(y, scores, in_subgroup) -> dict[str, float | None]:
    """{subgroup_auc, bpsn_auc, bnsp_auc} for one subgroup (a boolean mask over the examples)."""
    y = np.asarray(y).astype(int)
    scores = np.asarray(scores, dtype=float)
    s = np.asarray(in_subgroup, dtype=bool)
    bpsn = (s & (y == 0)) | (~s & (y == 1))
    bnsp = (s & (y == 1)) | (~s & (y == 0))
    return {"subgroup_auc": auc_or_none(y[s], scores[s]),
            "bpsn_auc": auc_or_none(y[bpsn], scores[bpsn]),
            "bnsp_auc": auc_or_none(y[bnsp], scores[bnsp])}


def generalized_mean(values, power: float = -5.0) -> float | None:
    """`(mean v^p)^(1/p)` over the values that are not None; None if there are none. A zero with p < 0 gives 0."""
    v = np.array([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], dtype=float)
    if v.size == 0:
        return None
    if power == 0:
        return float(np.exp(np.log(v).mean()))
    if power < 0 and (v == 0).any():
        return 0.0
    return float(np.mean(v ** power) ** (1.0 / power))


def default_weights() -> dict[str, float]:
    return {"overall": 0.25, **{m: 0.25 for m in METRICS}}


def final_bias_score(overall_auc: float | None, means: Mapping[str, float | None], weights=None) -> float | None:
    """`w0 * overall_auc + sum_m w_m * means[m]` (all weights 0.25 by default); None if a term is undefined."""
    weights = dict(weights or default_weights())
    missing = [k for k in ("overall", *METRICS) if k not in weights]
    if missing:
        raise ValueError(f"weights lacks {missing}: give a weight for each of 'overall', {', '.join(METRICS)}")
    terms = [(weights["overall"], overall_auc)] + [(weights[m], means.get(m)) for m in METRICS]
    if any(v is None for _, v in terms):
        return None
    return float(sum(w * v for w, v in terms))


def subgroup_masks(subgroups, n: int) -> dict[str, np.ndarray]:
    """{name: boolean mask} from per-example lists of subgroup names, names in order of first appearance."""
    if len(subgroups) != n:
        raise ValueError(f"subgroups has {len(subgroups)} entries but there are {n} predictions: give one list of "
                         "subgroup names per example (an empty list for none)")
    masks: dict[str, np.ndarray] = {}
    for i, names in enumerate(subgroups):
        for name in names or ():
            masks.setdefault(str(name), np.zeros(n, dtype=bool))[i] = True
    return masks


def check_options(kwargs: Mapping, module: str) -> None:
    unknown = sorted(set(kwargs) - set(OPTIONS))
    if unknown:
        raise TypeError(f"{module} got unknown arguments {unknown}; its options are {list(OPTIONS)}")


def bias_auc_results(predictions, references, subgroups, *, power: float = -5.0, weights=None,
                     min_size: int = 1) -> dict:
    """The metric's result (see `_KWARGS_DESCRIPTION`), computed from plain sequences."""
    scores = np.asarray(predictions, dtype=float).reshape(-1)
    y = np.asarray(references).astype(int).reshape(-1)
    if scores.shape != y.shape:
        raise ValueError(f"{scores.size} predictions but {y.size} references")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("references must be 0 or 1 (1 = the audited label)")
    masks = subgroup_masks(subgroups, y.size)
    kept = {k: m for k, m in masks.items() if int(m.sum()) >= min_size}
    per = {name: bias_aucs(y, scores, m) for name, m in kept.items()}
    out = {"overall_auc": auc_or_none(y, scores)}
    for metric in METRICS:
        out[metric] = {name: per[name][metric] for name in kept}
    out["subgroup_size"] = {name: int(m.sum()) for name, m in kept.items()}
    out["generalized_mean"] = {m: generalized_mean(out[m].values(), power) for m in METRICS}
    out["final_score"] = final_bias_score(out["overall_auc"], out["generalized_mean"], weights)
    out["skipped"] = {name: int(m.sum()) for name, m in masks.items() if name not in kept}
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BiasAuc(evaluate.Metric):
    """Subgroup, BPSN and BNSP AUC, their generalized means and the final bias score (Borkan et al. 2019)."""

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
            reference_urls=["https://arxiv.org/abs/1903.04561",
                            "https://www.kaggle.com/c/jigsaw-unintended-bias-in-toxicity-classification/overview/evaluation"],
        )

    def _compute(self, predictions, references, subgroups, power: float = -5.0, weights=None, min_size: int = 1,
                 **options):
        check_options(options, "bias_auc")
        return bias_auc_results(predictions, references, subgroups, power=power, weights=weights, min_size=min_size)
