"""Has the encoder folded its features into (nearly) one direction? A check on the cached head inputs.

A strong fine-tune can pull every feature of the classifier's input onto one direction (sentiment and a shortcut
become the same thing); no sparse head can then pull them apart, and editing one feature out changes nothing
useful. `check_feature_collapse` measures, on the standardized features (each column z-scored, constant columns
left out), the share of the variance in the top principal direction and the participation ratio
(sum(eigenvalues)^2 / sum(eigenvalues^2): the effective number of directions), and names the features used by the
head that are near duplicates. It warns, saying what to do, when the features have collapsed or the head uses
duplicates.

Example:
    >>> report = check_feature_collapse(model.fit_data.train_features.features,
    ...                                 selected_features=model.sparse_head.active_features.tolist())
    >>> report.collapsed, round(report.top_share, 3), report.duplicates
    (False, 0.417, [])
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

#: Collapsed when the top principal direction of the standardized features holds at least this share of their
#: variance. Measured on MiniLM features (384) of the planted-shortcut data, train split: the pretrained encoder
#: 0.08; the demo's light fine-tune (one epoch at 3e-5, whose features stay apart) 0.42-0.45; two epochs at 3e-5
#: 0.87, one epoch at 1e-4 0.96, two epochs at 1e-4 1.00 -- and in each of these three the head's five features
#: were near duplicates of one another (|corr| > 0.95): one direction in five copies. Independent noise: about
#: 1/d. 0.8 sits below every folded encoder and far above the working ones.
COLLAPSE_TOP_SHARE = 0.8
#: Two features used by the head whose |correlation| exceeds this are near duplicates: they carry one direction,
#: so their weights split it and neither can be described or removed alone. (Folded encoders above: every pair of
#: the head's features above 0.95; light fine-tune: at most 0.90; pretrained encoder: at most 0.50.)
DUPLICATE_CORRELATION = 0.95
#: The eigenvalues come from the (d, d) correlation matrix of at most this many rows (evenly spaced), so the check
#: costs a fraction of a second even on a large cache; the top share is stable to well under 0.01 at this size.
MAX_ROWS = 20_000

ADVICE = ("fit the sparse head on the pretrained encoder (SparseHeadForSequenceClassification.from_encoder), "
          "use another layer, or a lighter fine-tune")


@dataclass
class CollapseReport:
    """`top_share`: share of the standardized variance in the top principal direction; `participation_ratio`:
    effective number of directions (1 = rank one, `n_features` = all equal); `duplicates`:
    [(feature a, feature b, correlation)] among the selected features with |corr| > `DUPLICATE_CORRELATION`;
    `constant_features`: columns with no spread (left out); `collapsed`: top_share >= `COLLAPSE_TOP_SHARE`."""

    n_rows: int
    n_features: int
    top_share: float
    participation_ratio: float
    collapsed: bool
    duplicates: list = field(default_factory=list)
    constant_features: list = field(default_factory=list)

    @property
    def duplicate_groups(self) -> list[list[int]]:
        """The selected features joined by near-duplicate pairs, as groups (sorted)."""
        parent: dict[int, int] = {}

        def root(a):
            while parent.setdefault(a, a) != a:
                a = parent[a]
            return a

        for a, b, _ in self.duplicates:
            parent[root(a)] = root(b)
        groups: dict[int, list[int]] = {}
        for a in sorted(parent):
            groups.setdefault(root(a), []).append(a)
        return sorted(groups.values())

    @property
    def message(self) -> str:
        """What was found and what to do; empty when all is well."""
        parts = []
        if self.collapsed:
            parts.append(
                f"the encoder's features have collapsed: one direction holds {100 * self.top_share:.1f}% of the "
                f"variance of the {self.n_features} standardized features (effective number of directions "
                f"{self.participation_ratio:.2f}), so the sparse head cannot separate what the classifier relies on")
        if self.duplicates:
            groups = "; ".join(", ".join(map(str, g)) for g in self.duplicate_groups)
            smallest = min(abs(c) for _, _, c in self.duplicates)
            parts.append(f"the head uses near-duplicate features (|corr| >= {smallest:.3f}): {groups}; each group "
                         "carries one direction between its features")
        if not parts:
            return ""
        return "; ".join(parts) + f". To get features a sparse head can tell apart: {ADVICE}."


def check_feature_collapse(X, selected_features=None, *, warn: bool = True) -> CollapseReport:
    """Effective rank of the standardized features `X` (n, d) and near duplicates among `selected_features`.

    Warns (`UserWarning`, with what to do) when collapsed or when duplicates are found, unless `warn=False`.

    Example:
        >>> r = check_feature_collapse(X, selected_features=[7, 46, 209])
        >>> if r.collapsed: print(r.message)
    """
    X = torch.as_tensor(X).detach()
    if X.dim() != 2:
        raise ValueError(f"X must be a (rows, features) matrix; got shape {tuple(X.shape)}")
    n, d = X.shape
    if n < 3:
        raise ValueError(f"check_feature_collapse needs at least 3 rows to measure spread; got {n}")
    selected = [] if selected_features is None else torch.as_tensor(selected_features).reshape(-1).long().tolist()
    bad = [j for j in selected if not 0 <= j < d]
    if bad:
        raise ValueError(f"selected feature indices {bad} are outside 0..{d - 1}")
    if n > MAX_ROWS:
        X = X[torch.linspace(0, n - 1, MAX_ROWS).round().long()]
    X = X.double().cpu()
    std = X.std(0)
    keep = std > 1e-12 * X.abs().amax(0).clamp_min(1.0)
    constant = (~keep).nonzero().flatten().tolist()
    if int(keep.sum()) == 0:
        raise ValueError("every feature is constant over the rows: there is nothing to measure")
    Z = (X[:, keep] - X[:, keep].mean(0)) / std[keep]
    corr = Z.T @ Z / (len(Z) - 1)
    eig = torch.linalg.eigvalsh(corr).clamp_min(0.0)
    total = float(eig.sum())
    top_share = float(eig.max()) / total
    participation = total**2 / float((eig**2).sum())

    duplicates = []
    position = {int(j): p for p, j in enumerate(keep.nonzero().flatten().tolist())}
    chosen = sorted({j for j in selected if j in position})
    for a_i, a in enumerate(chosen):
        for b in chosen[a_i + 1 :]:
            c = float(corr[position[a], position[b]])
            if math.isfinite(c) and abs(c) > DUPLICATE_CORRELATION:
                duplicates.append((a, b, round(c, 4)))
    report = CollapseReport(n_rows=n, n_features=int(keep.sum()), top_share=top_share,
                            participation_ratio=participation, collapsed=top_share >= COLLAPSE_TOP_SHARE,
                            duplicates=duplicates, constant_features=constant)
    if warn and report.message:
        warnings.warn(report.message, UserWarning, stacklevel=2)
    return report
