"""The sparsity target (which point of a path to install) and the feature counts it is measured by.

A target is exactly one of ``features_per_class`` (an int: that many features in every class),
``max_accuracy_drop`` (a fraction of accuracy) or ``lam`` (a regularization strength). It is checked here,
once, with the errors the user sees, and passed down as it is from ``fit_sparse_head`` (or the CLI) to
the solver's selection (:func:`~.select.select_point`).

What a head *has* is named apart from what was asked for (:class:`FeatureCounts`): ``per_class``
(one count per class, the ``features_per_class`` list of a path point's metrics), ``mean_per_class``,
``max_per_class``, ``n_features`` (distinct features used by any class) and ``nnz`` (nonzero weights).

Example:
    >>> target = SparsityTarget(features_per_class=5)
    >>> target.rule, target.value, target.as_kwargs()
    ('features_per_class', 5, {'features_per_class': 5})
    >>> SparsityTarget(lam=0.1, features_per_class=5)
    Traceback (most recent call last):
    ValueError: Pass exactly one of features_per_class= (e.g. 5), max_accuracy_drop= (e.g. 0.01) or lam= ...
    >>> FeatureCounts.from_support(point.support).mean_per_class
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The three rules, in the order they are documented.
RULES = ("features_per_class", "max_accuracy_drop", "lam")


def check_features_per_class(value: Any) -> str | None:
    """Why ``value`` is not a valid ``features_per_class`` (None when it is): a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not (math.isfinite(value) and value == int(value))):
        return f"must be a positive integer (1 or more), got {value!r}"
    if value < 1:
        return f"must be a positive integer (1 or more), got {value!r}"
    return None


def check_max_accuracy_drop(value: Any) -> str | None:
    """Why ``value`` is not a valid ``max_accuracy_drop``: a fraction of accuracy in [0, 1] (0.01 = one point)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:  # `not >=` refuses NaN
        return (f"must be a non-negative number; got {value!r}. It is a fraction of accuracy in [0, 1] "
                "(0.01 = one point)")
    if value > 1:
        return f"must be a fraction of accuracy in [0, 1] (0.01 = one point); got {value!r}"
    return None


def check_lam(value: Any) -> str | None:
    """Why ``value`` is not a valid ``lam``: a finite number above 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        return f"must be a finite number above 0; got {value!r}"
    return None


CHECKS = {"features_per_class": check_features_per_class, "max_accuracy_drop": check_max_accuracy_drop,
          "lam": check_lam}


@dataclass(frozen=True)
class SparsityTarget:
    """Which point of a regularization path to install: exactly one of the three fields.

    - ``features_per_class=k``: exactly ``k`` features in every class (the sparsest point with at least
      ``k`` in every class, cut to each class's ``k`` largest weights and refit on that support);
    - ``max_accuracy_drop=d``: the sparsest point whose validation accuracy (or score) is within ``d`` of the
      best on the path;
    - ``lam=x``: the point whose lambda is nearest to ``x`` (log scale).

    Construction checks the target (a ``ValueError`` says what was wrong); numbers are normalized
    (``features_per_class=5.0`` becomes ``5``).

    Example:
        >>> SparsityTarget(max_accuracy_drop=0.01).as_kwargs()
        {'max_accuracy_drop': 0.01}
    """

    features_per_class: int | None = None
    max_accuracy_drop: float | None = None
    lam: float | None = None

    def __post_init__(self):
        given = [name for name in RULES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "Pass exactly one of features_per_class= (e.g. 5), max_accuracy_drop= (e.g. 0.01) or lam= to choose "
                f"the point of the path to install; got {given or 'none'}."
            )
        name = given[0]
        value = getattr(self, name)
        problem = CHECKS[name](value)
        if problem is not None:
            raise ValueError(f"{name} {problem}.")
        object.__setattr__(self, name, int(value) if name == "features_per_class" else float(value))

    @property
    def rule(self) -> str:
        """``"features_per_class"``, ``"max_accuracy_drop"`` or ``"lam"``."""
        return next(name for name in RULES if getattr(self, name) is not None)

    @property
    def value(self) -> int | float:
        return getattr(self, self.rule)

    def as_kwargs(self) -> dict[str, int | float]:
        """``{rule: value}``: the keyword of ``RegularizationPath.select`` and ``fit_sparse_head``."""
        return {self.rule: self.value}

    @classmethod
    def coerce(cls, target: "SparsityTarget | dict | None" = None, **options) -> "SparsityTarget":
        """A target from an existing one, a ``{rule: value}`` dict, or the keywords themselves (not several).

        Example:
            >>> SparsityTarget.coerce(lam=None, features_per_class=3) == SparsityTarget(features_per_class=3)
            True
        """
        given = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(options) - set(RULES))
        if unknown:
            raise TypeError(f"Unknown sparsity target {unknown}; the rules are {list(RULES)}.")
        if target is None:
            return cls(**given)
        if given:
            raise ValueError(f"Pass the sparsity target once: got target={target!r} and also {sorted(given)}.")
        if isinstance(target, cls):
            return target
        if isinstance(target, dict):
            return cls.coerce(None, **target)
        raise TypeError(f"target must be a SparsityTarget or a {{rule: value}} dict, not {type(target).__name__}.")


@dataclass(frozen=True)
class FeatureCounts:
    """What a head's support has, with one name per quantity.

    ``per_class``: features used by each class (a list, class order); ``n_features``: distinct features
    used by any class; ``nnz``: nonzero weights (the sum of ``per_class``).

    Example:
        >>> counts = FeatureCounts.from_support(torch.tensor([[True, False, True], [True, False, False]]))
        >>> counts.per_class, counts.mean_per_class, counts.max_per_class, counts.n_features, counts.nnz
        ([2, 1], 1.5, 2, 2, 3)
    """

    per_class: list[int]
    n_features: int
    nnz: int

    @classmethod
    def from_support(cls, support) -> "FeatureCounts":
        """From a boolean (k, d) support (a torch tensor: ``point.support``, ``weight != 0``)."""
        per_class = [int(c) for c in support.sum(1).tolist()]
        return cls(per_class, int(support.any(0).sum()), sum(per_class))

    @property
    def mean_per_class(self) -> float:
        return sum(self.per_class) / len(self.per_class) if self.per_class else 0.0

    @property
    def max_per_class(self) -> int:
        return max(self.per_class) if self.per_class else 0

    @property
    def min_per_class(self) -> int:
        return min(self.per_class) if self.per_class else 0


__all__ = ["RULES", "SparsityTarget", "FeatureCounts", "check_features_per_class", "check_max_accuracy_drop",
           "check_lam"]
