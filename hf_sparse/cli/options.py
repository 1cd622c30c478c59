"""argparse value types shared by the subcommands: each rejects a bad value with a message saying what is expected.

Example:
    >>> parser.add_argument("--features-per-class", type=positive_int)
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {text!r}")
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
