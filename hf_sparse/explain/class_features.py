"""Which features each class rests on: the nonzero weights of the sparse head, with the share of the logit they carry.

The share of feature j in class c is the mean over the evaluation examples of |w_cj x_ij|, divided by the sum of
that over the class's features: how much of the class's feature-driven logit (the bias aside) passes through j.

A reloaded checkpoint keeps no evaluation features (only the per-feature mean and standard deviation of the training
features, the buffers `feature_mean` / `feature_std`): its shares use the root mean square sqrt(mean_j^2 + std_j^2)
of each feature in place of the mean of |x_ij| (an upper bound of it, the same for every class), and
`ClassFeatures.share_source` says so. A head installed by hand with no statistics has no shares (None).

Example:
    >>> tables = class_features(model)                 # evaluation features from the last fit
    >>> tables[1].label, [(f.feature, round(f.weight, 3), round(f.share, 2)) for f in tables[1].features]
    ('positive', [(17, 0.912, 0.41), (230, 0.533, 0.22), ...])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch


@dataclass
class ClassFeature:
    """One nonzero weight of the head: `feature` (column of the head's input), its `weight`, its `share` of the class
    logit on the evaluation data (None without data) and its mean activation there."""

    feature: int
    weight: float
    share: float | None = None
    mean_activation: float | None = None


@dataclass
class ClassFeatures:
    """The features of one class, sorted by weight (largest first), and the class's bias."""

    label_id: int
    label: str
    bias: float
    features: list[ClassFeature] = field(default_factory=list)
    #: What the shares were computed from: `EVALUATION`, `SAVED_STATISTICS` or None (no shares).
    share_source: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClassFeatures":
        return cls(data["label_id"], data["label"], data["bias"], [ClassFeature(**f) for f in data["features"]],
                   data.get("share_source"))


#: `ClassFeatures.share_source` when the shares come from features (passed in, or kept from the last fit).
EVALUATION = "evaluation features"
#: `ClassFeatures.share_source` of a reloaded checkpoint: the training features' mean and std saved with the head.
SAVED_STATISTICS = "saved feature mean and std (root mean square of each feature; the evaluation features are not saved)"


def label_name(config, label_id: int) -> str:
    """The model's name for a class id (`id2label`), else the id as a string."""
    names = config.id2label or {}
    return str(names.get(label_id, names.get(str(label_id), label_id)))


def _evaluation_features(model) -> torch.Tensor | None:
    fit = getattr(model, "fit_data", None)
    return None if fit is None else fit.features.features


def _saved_scale(model, n_features: int) -> torch.Tensor | None:
    """sqrt(mean^2 + std^2) per feature from the buffers saved with the head, or None when they hold nothing (the
    defaults 0 and 1 of a head installed by hand)."""
    mean, std = getattr(model, "feature_mean", None), getattr(model, "feature_std", None)
    if mean is None or std is None or mean.numel() != n_features or std.numel() != n_features:
        return None
    mean, std = mean.detach().float().cpu(), std.detach().float().cpu()
    if not bool(mean.any()) and bool((std == 1).all()):
        return None
    return torch.sqrt(mean**2 + std**2)


@torch.no_grad()
def class_features(model, features: torch.Tensor | None = None) -> list[ClassFeatures]:
    """Per class: the features with nonzero weight, sorted by weight, with their share of the class's logit on
    `features` (default: the evaluation features of the last `fit_sparse_head`; after reloading a checkpoint, the
    saved feature mean and std, see the module's docstring and `ClassFeatures.share_source`; None without any).

    Example:
        >>> class_features(AutoModelForSequenceClassification.from_pretrained("out"))[1].share_source
        'saved feature mean and std (root mean square of each feature; the evaluation features are not saved)'
    """
    head = model.sparse_head
    weight = head.weight.detach().float().cpu()
    bias = head.bias.detach().float().cpu()
    X = features if features is not None else _evaluation_features(model)
    if X is not None:
        X = torch.as_tensor(X).float()
        if X.dim() != 2 or X.shape[1] != head.in_features:
            raise ValueError(f"features must be (n, {head.in_features}); got {tuple(X.shape)}")
    scale = _saved_scale(model, head.in_features) if X is None else None
    source = EVALUATION if X is not None and len(X) else SAVED_STATISTICS if scale is not None else None
    tables = []
    for c in range(head.out_features):
        cols = torch.nonzero(weight[c]).flatten()
        cols = cols[torch.argsort(weight[c, cols], descending=True)]
        shares = means = None
        if X is not None and len(X) and cols.numel():
            mass = (X[:, cols] * weight[c, cols]).abs().mean(0)
            shares = (mass / mass.sum().clamp_min(1e-30)).tolist()
            means = X[:, cols].mean(0).tolist()
        elif scale is not None and cols.numel():
            mass = (scale[cols] * weight[c, cols]).abs()
            shares = (mass / mass.sum().clamp_min(1e-30)).tolist()
            means = model.feature_mean.detach().float().cpu()[cols].tolist()
        rows = [
            ClassFeature(int(j), float(weight[c, j]), None if shares is None else float(shares[i]),
                         None if means is None else float(means[i]))
            for i, j in enumerate(cols.tolist())
        ]
        tables.append(ClassFeatures(c, label_name(model.config, c), float(bias[c]), rows,
                                    source if shares is not None else None))
    return tables
