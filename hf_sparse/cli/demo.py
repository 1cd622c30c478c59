"""``hf-sparse demo``: run the embedded default end to end, offline, and print its summary.

Example:
    $ hf-sparse demo --output hf_sparse_demo
"""

from __future__ import annotations

import argparse

from ..tables import fmt, text_table

HELP = "run the embedded default offline and write its outputs"

EPILOG = """\
example:
  hf-sparse demo --output hf_sparse_demo"""


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("demo", help=HELP, description=HELP[0].upper() + HELP[1:] + ".", epilog=EPILOG)
    p.add_argument("--output", "-o", default="hf_sparse_demo", metavar="DIR",
                   help="folder for the demo's outputs (default: hf_sparse_demo)")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (for a first look or CI)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run_demo)
    return p


def _format(value) -> str:
    """A summary value as one cell: floats to 4 significant digits (the summary mixes accuracies and seconds), dicts
    as ``key value`` pairs, lists of up to 12 items joined, other values as `hf_sparse.tables.fmt` writes them."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_format(v)}" for k, v in value.items()
                         if not isinstance(v, (dict, list)) or len(str(v)) < 60)
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(v) for v in value) if len(value) <= 12 else f"{len(value)} items"
    return fmt(value)


def headline(summary: dict) -> list[str]:
    """The demo's summary as an indented two-column table, one row per top-level item (nested dicts flattened to
    ``key value`` pairs).

    Example:
        >>> headline({"points": 30, "selected": {"val_accuracy": 0.91234}})
        ['  summary   value', '  --------  -------------------', '  points    30', '  selected  val_accuracy 0.9123']
    """
    rows = [[str(key).replace("_", " "), _format(value)] for key, value in summary.items()]
    return ["  " + line for line in text_table(["summary", "value"], rows).splitlines()]


def run_demo(args) -> int:
    from hf_sparse.demo import run_demo as demo

    from .paths import prepare_output_dir

    output = prepare_output_dir(args.output, "--output")
    kwargs = {"quick": True} if args.quick else {}
    summary = demo(output, progress=not args.no_progress, **kwargs)
    print(f"Demo done; outputs in {output}/")
    print("\n".join(headline(summary if isinstance(summary, dict) else {"result": summary})))
    return 0
