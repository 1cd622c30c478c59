"""Errors the command line expects, and how each becomes a one-line message.

A subcommand raises `CLIError` (exit status 1) or `UsageError` (exit status 2) with a message that says what was
wrong and what to do; `hf_sparse.cli.main` prints it as ``hf-sparse <command>: error: <message>``.

Example:
    >>> raise CLIError("reviews.csv: no such file; check the path")
"""

from __future__ import annotations

#: Longest message printed (library messages can embed whole file listings).
MAX_MESSAGE = 600


class CLIError(Exception):
    """A run error with a one-line message (exit status 1)."""

    exit_code = 1


class UsageError(CLIError):
    """The arguments do not make sense together (exit status 2, as argparse's own usage errors)."""

    exit_code = 2


def one_line(text: object, limit: int = MAX_MESSAGE) -> str:
    """`text` with all whitespace runs (newlines included) collapsed to single spaces, cut at `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe(error: BaseException) -> str:
    """A readable one-line reason for an exception (without the ``[Errno 2]`` noise or KeyError's quotes)."""
    if isinstance(error, KeyError) and error.args:
        return one_line(f"unknown key {error.args[0]!r}")
    if isinstance(error, OSError) and error.strerror and error.filename:
        return one_line(f"{error.filename}: {error.strerror}")
    text = str(error)
    if not text and error.__cause__ is not None:
        text = str(error.__cause__)
    return one_line(text or type(error).__name__)
