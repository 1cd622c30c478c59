"""The options of `fit_sparse_head`, `refit_sparse_head` and `hf-sparse fit`, each declared and documented once.

`FitConfig` holds them; `fit_sparse_head` and `refit_sparse_head` take them as typed keywords of the same names
and defaults (a test keeps the three in step), build a `FitConfig` and pass it down; the CLI builds its argparse
options from the fields' metadata (`help`, `metavar`, `choices`). A keyword that is not an option is refused
with the list of those that are (`declared_options`).

This module imports only the standard library at module level: the CLI builds its parser from it without torch.

Example:
    >>> config = FitConfig(features_per_class=5, relax=True, text_column="sentence")
    >>> config.target().as_kwargs()
    {'features_per_class': 5}
    >>> model.fit_sparse_head(train_ds, eval_dataset=val_ds, **config.options("fit"))
    >>> print(FitConfig.help("alpha"))
    elastic-net mixing: the L1 share of the penalty, in (0, 1]; 1 is the lasso, 0.99 the paper's setting
"""

from __future__ import annotations

import difflib
import functools
import inspect
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

FIT, REFIT = "fit", "refit"
BOTH = frozenset({FIT, REFIT})
FIT_ONLY = frozenset({FIT})
#: `balance=` values (kept equal to `hf_sparse.solver.balance.BALANCE_MODES` by a test).
BALANCE_CHOICES = ("groups", "group", "labels")
SELECTION_METRICS = ("accuracy", "worst_group_accuracy")
TARGET_OPTIONS = ("features_per_class", "max_accuracy_drop", "lam")


def option(default: Any, help: str, *, scope: frozenset = BOTH, metavar: str | None = None,
           choices: tuple | None = None):
    """A `FitConfig` field: its default, its one description (`help`), where it applies (`scope`: `fit_sparse_head`
    and/or `refit_sparse_head`), and for the CLI its `metavar` and `choices`."""
    return field(default=default, metadata={"help": help, "scope": scope, "metavar": metavar, "choices": choices})


@dataclass
class FitConfig:
    """How `fit_sparse_head` fits and selects the sparse head (see each field's `help`: `FitConfig.help(name)`).

    Construction checks the options that are this layer's own (`balance`, `selection_metric`); the sparsity
    target is checked by `target()` (`hf_sparse.solver.target.SparsityTarget`), the solver's options by the solver.

    Example:
        >>> FitConfig(lam=0.05, alpha=0.9).target().rule
        'lam'
    """

    # ------------------------------------------------------------------ data
    tokenizer: Any = option(None, "the tokenizer of a text model (default: the one saved with the model)",
                            scope=FIT_ONLY)
    image_processor: Any = option(None, "the image processor of an image model (default: the one saved with the "
                                        "model)", scope=FIT_ONLY)
    text_column: str = option("text", "column holding the texts", scope=FIT_ONLY, metavar="NAME")
    image_column: str = option("image", "column holding the images", scope=FIT_ONLY, metavar="NAME")
    label_column: str = option("label", "column holding the labels: class ids or the model's label names",
                               scope=FIT_ONLY, metavar="NAME")
    # ------------------------------------------------------------------ the sparsity target (exactly one)
    features_per_class: int | None = option(
        None, "exactly K features per class (the path point with K, refit on each class's K largest weights), "
              "e.g. 5", metavar="K")
    max_accuracy_drop: float | None = option(
        None, "the sparsest point within D of the path's best validation accuracy (0.01 = one point)", metavar="D")
    lam: float | None = option(None, "the path point at regularization strength L (nearest in log scale)",
                               metavar="L")
    relax: bool = option(False, "refit the selected features with a light ridge penalty (lambda / 100) and keep "
                                "the result if it scores no worse")
    # ------------------------------------------------------------------ shortcuts and biases
    groups: Any = option(None, "which group each training example is in: a column name, one value per example, or "
                               "a function of the text/image such as hf_sparse.audit.contains_word('tuesday')")
    eval_groups: Any = option(None, "the same for the evaluation data (default: groups, when it is a column name or "
                                    "a function and there is evaluation data)")
    balance: str | None = option(None, "what gets equal total weight: (group, label) cells ('groups'), groups "
                                       "('group') or labels ('labels')", choices=BALANCE_CHOICES)
    sample_weight: Any = option(None, "your own row weights, one per training example (multiplied with the "
                                      "balancing weights)")
    augment: Any = option(None, "a function text -> list of counterfactual texts (e.g. "
                                "hf_sparse.audit.identity_swaps()), added to the training features with the "
                                "original example's label and group")
    selection_metric: str | None = option(
        None, "what max_accuracy_drop and relax judge points by: 'accuracy', or 'worst_group_accuracy' (the "
              "default when evaluation groups are known)", choices=SELECTION_METRICS)
    # ------------------------------------------------------------------ solver
    alpha: float = option(0.99, "elastic-net mixing: the L1 share of the penalty, in (0, 1]; 1 is the lasso, 0.99 "
                                "the paper's setting")
    n_lambdas: int = option(100, "number of points on the regularization path", metavar="N")
    lambda_min_ratio: float = option(1e-3, "smallest lambda of the path as a fraction of the largest", metavar="R")
    whole_path: bool = option(True, "compute the path to its end (lambda_min_ratio) even past the features_per_class "
                                    "target, so the card's path plot shows the whole accuracy-sparsity trade-off; "
                                    "False stops at the first point with the target in every class (faster with many "
                                    "classes)")
    solver_kwargs: dict | None = option(None, "more keywords for hf_sparse.solver.fit_path (e.g. "
                                              "{'dtype': torch.float64, 'tol': 1e-7})")
    # ------------------------------------------------------------------ features
    max_length: int | None = option(None, "truncate texts to N tokens (default: what the model allows)",
                                    metavar="N")
    batch_size: int = option(64, "rows per forward pass when caching features", metavar="N")
    cache_dir: str | None = option(None, "feature cache folder (default: $HF_SPARSE_FEATURES_CACHE, else "
                                         "<datasets cache>/hf_sparse_features)", scope=FIT_ONLY, metavar="DIR")
    progress: bool = option(False, "show progress bars")

    def __post_init__(self):
        for name in ("balance", "selection_metric"):
            value, choices = getattr(self, name), _field(name).metadata["choices"]
            if value is not None and value not in choices:
                raise ValueError(f"{name} must be one of {choices} or None; got {value!r}.")

    # ------------------------------------------------------------------ the declared options
    @classmethod
    def names(cls, scope: str | None = None) -> list[str]:
        """The options, in declaration order (`scope="fit"` or `"refit"`: those of that function)."""
        return [f.name for f in fields(cls) if scope is None or scope in f.metadata["scope"]]

    @classmethod
    def help(cls, name: str) -> str:
        """The one description of option `name`."""
        return _field(name).metadata["help"]

    @classmethod
    def metadata(cls, name: str) -> dict:
        """`help`, `scope`, `metavar` and `choices` of option `name`."""
        return dict(_field(name).metadata)

    @classmethod
    def default(cls, name: str) -> Any:
        f = _field(name)
        return f.default if f.default is not MISSING else f.default_factory()

    @classmethod
    def build(cls, config: "FitConfig | None" = None, *, where: str = "FitConfig", **options) -> "FitConfig":
        """`config` (default: all defaults) with `options` replacing its fields; an unknown name is a `TypeError`
        that lists the valid ones."""
        check_names(options, cls.names(), where)
        values = {f.name: getattr(config, f.name) for f in fields(cls)} if config is not None else {}
        return cls(**{**values, **options})

    def options(self, scope: str | None = None) -> dict[str, Any]:
        """`{name: value}` of the options (of `fit_sparse_head` or `refit_sparse_head` with `scope`)."""
        return {name: getattr(self, name) for name in self.names(scope)}

    def target(self):
        """The sparsity target: a `SparsityTarget` (a `ValueError` unless exactly one of features_per_class,
        max_accuracy_drop and lam is set, or if it is out of range)."""
        from hf_sparse.solver.target import SparsityTarget  # not at module level: the CLI's parser needs no torch

        return SparsityTarget(**{name: getattr(self, name) for name in TARGET_OPTIONS})

    @classmethod
    def docs(cls, scope: str | None = None, indent: str = "    ") -> str:
        """The options as a block for a docstring indented by `indent` (`fit_sparse_head.__doc__` ends with it)."""
        lines = [f"{indent}Options (declared in `hf_sparse.modeling.fit_config.FitConfig`):"]
        for name in cls.names(scope):
            lines.append(f"{indent}    {name} (default {cls.default(name)!r}): {cls.help(name)}.")
        return "\n".join(lines) + "\n"


def check_target_option(name: str, value) -> str | None:
    """Why `value` is not valid for target option `name` (None when it is): the solver's one check of it."""
    from hf_sparse.solver.target import CHECKS  # not at module level: the CLI's parser needs no torch

    return CHECKS[name](value)


def check_names(given, valid, where: str) -> None:
    """A `TypeError` naming the keywords of `given` that are not in `valid`, the closest valid names, and all."""
    unknown = [name for name in given if name not in valid]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(f"{where}() got unknown option{'s' if len(unknown) > 1 else ''} {', '.join(hints)}. "
                    f"Its options are: {', '.join(valid)}.")


def declared_options(function: F) -> F:
    """Refuse unknown keywords of `function` with the list of its options (Python's own error names only the bad
    one, and callers that forward `**kwargs` hide it). The signature, seen by help() and IDEs, is unchanged."""
    signature = inspect.signature(function)
    valid = [p.name for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if not accepts_any:
            check_names(kwargs, valid, function.__name__)
        return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _field(name: str):
    for f in fields(FitConfig):
        if f.name == name:
            return f
    raise KeyError(f"{name!r} is not a FitConfig option; the options are: {', '.join(FitConfig.names())}.")
