"""Command-line options shared by the subcommands.

- argparse value types (`positive_int`, `fraction`, `mixing`, ...): each rejects a bad value with a message saying
  what is expected;
- the `fit_sparse_head` options of `hf-sparse fit`, built from their one declaration
  (`hf_sparse.modeling.fit_config.FitConfig`: help, default, metavar, choices): `fit_option`, `target_value`,
  `sparsity_target`, `fit_config`.

Example:
    >>> parser.add_argument("--max-rows", type=positive_int)
    >>> fit_option(group, "alpha", type=mixing)          # --alpha, help and default from FitConfig
"""

from __future__ import annotations

import argparse

from hf_sparse.modeling.fit_config import TARGET_OPTIONS, FitConfig, check_target_option

from .errors import UsageError


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1, "a positive integer (1 or more)", "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0, "0 or more", "a whole number (0 or more)")


def _int_at_least(text: str, low: int, too_small: str, not_int: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {not_int}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {too_small}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A float > 0."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A float in [0, 1)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1) (0.01 = one accuracy point), got {text!r}")
    return value


def open_fraction(text: str) -> float:
    """A float in (0, 1)."""
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), got {text!r}")
    return value


def mixing(text: str) -> float:
    """The elastic-net mixing weight: a float in (0, 1]."""
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (1 = lasso), got {text!r}")
    return value


def size_or_fraction(text: str) -> float | int:
    """A fraction in (0, 1) or a number of rows >= 1."""
    if text.strip().isdigit():
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1) or a number of rows >= 1, got {text!r}")
        return value
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1) or a number of rows >= 1, got {text!r}")
    return value


#: Poolings of `hf-sparse fit --from-encoder` (see `hf_sparse.modeling.encoder_head`).
POOLINGS = ("mean", "cls", "pooler")


def pooling(text: str) -> str:
    """How a bare encoder's output is pooled into one feature vector: mean, cls or pooler."""
    value = text.strip().lower()
    if value not in POOLINGS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(POOLINGS)}, got {text!r}")
    return value


def column_list(text: str) -> list[str]:
    """Comma-separated column names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated column names, e.g. 'gender,religion'")
    return names


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


# -- the fit_sparse_head options (declared once, in FitConfig) ----------------------------------------
#: The options of `fit_sparse_head` that `hf-sparse fit` declares (from `FitConfig`: name, help, default, metavar).
CLI_OPTIONS = ("text_column", "image_column", "label_column", *TARGET_OPTIONS, "relax", "alpha", "n_lambdas",
               "lambda_min_ratio", "whole_path", "batch_size", "max_length", "cache_dir")


def fit_option(group, name: str, *, note: str | None = None, **kwargs) -> None:
    """Add `--name` for the `FitConfig` option `name`: its help, default, metavar and choices come from there
    (`kwargs` adds argparse's `type` or `action`, or overrides the default; `note` replaces "default: ...")."""
    default = kwargs.setdefault("default", FitConfig.default(name))
    if note is None and default is not None:
        note = f"default: {default}"
    meta = FitConfig.metadata(name)
    if meta["choices"] is not None:
        kwargs.setdefault("choices", meta["choices"])
    if meta["metavar"] is not None and kwargs.get("action") is None:
        kwargs.setdefault("metavar", meta["metavar"])
    help_text = FitConfig.help(name) + (f" ({note})" if note else "")
    group.add_argument("--" + name.replace("_", "-"), help=help_text.replace("%", "%%"), **kwargs)


def target_value(name: str):
    """The argparse type of a sparsity-target option: a number, checked by the solver's one check of it."""
    number = int if name == "features_per_class" else float

    def parse(text: str):
        try:
            value = number(text)
        except ValueError:
            value = text
        problem = check_target_option(name, value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def sparsity_target(args):
    """The one sparsity target given (a `SparsityTarget`; argparse allows at most one)."""
    config = FitConfig(**{name: getattr(args, name) for name in TARGET_OPTIONS})
    if all(getattr(config, name) is None for name in TARGET_OPTIONS):
        raise UsageError(
            "choose how sparse the head is: pass one of --features-per-class K (e.g. 5), --max-accuracy-drop D "
            "(e.g. 0.01) or --lam L"
        )
    return config.target()


def fit_config(args, data_column: str, modality: str, progress: bool) -> FitConfig:
    """The `fit_sparse_head` options of the command line."""
    values = {name: getattr(args, name) for name in CLI_OPTIONS}
    values.update(text_column=data_column if modality == "text" else FitConfig.default("text_column"),
                  image_column=data_column if modality == "image" else FitConfig.default("image_column"),
                  progress=progress)
    return FitConfig(**values)
