"""``hf-sparse demo``: say what it will do, run the embedded default end to end, offline, and print its figures (each
labelled with its split, its head and the model-card section that shows the same value) and what the fix did with
the features that carry the shortcut word.

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


def figure_lines(summary: dict) -> list[str]:
    """The demo's figures as an indented table: figure, split, head, value (3 decimals, as the card's tables) and
    the card section that shows the same value.

    Example:
        >>> figure_lines({"figures": [{"figure": "accuracy", "split": "test", "head": "dense", "value": 0.72333,
        ...                            "card": "Fix 1"}]})[2]
        '  accuracy  test   dense  0.723  Fix 1'
    """
    rows = [[f["figure"], f["split"], f["head"], fmt(f["value"]), f["card"]] for f in summary.get("figures", [])]
    return ["  " + line for line in text_table(["figure", "split", "head", "value", "in the card"], rows).splitlines()]


def word_lines(summary: dict) -> list[str]:
    """The features that carry the shortcut word: effect size, flagged or not, what the fix did and why."""
    rows = [[f["feature"], fmt(f["effect"], 2), "yes" if f["flagged"] else "no", f["fate"], f["reason"]]
            for f in summary.get("word_features", [])]
    if not rows:
        return []
    lines = [f"Features of the head (before or after the fix) and the word {summary.get('shortcut_word')!r} (effect: "
             "label-stratified effect size, train + eval texts; the card's \"Fix 1\" section):"]
    lines += ["  " + line for line in text_table(["feature", "effect", "carries it", "fix", "why"], rows).splitlines()]
    if summary.get("word_features_summary"):
        lines.append(summary["word_features_summary"])
    return lines


def report_lines(summary: dict, output) -> list[str]:
    """What `hf-sparse demo` prints when done: where the outputs are, the labelled figures, the word's features, the
    example and the time taken."""
    splits = summary.get("splits") or {}
    seconds = (summary.get("seconds") or {}).get("total", 0)
    lines = [f"Demo done in {seconds:.0f} s; outputs in {output}/ (the model and its card: {summary.get('card')})", ""]
    if splits:
        lines += ["Splits: " + "; ".join(f"{k} = {v}" for k, v in splits.items()) + ". Heads: dense = the fine-tuned "
                  "classifier's own head; sparse before / after fix = the sparse head before and after the "
                  f"{summary.get('fix', 'fix')}.", ""]
    lines += figure_lines(summary) + [""] + word_lines(summary)
    lines += ["", f"example  {summary.get('example')}",
              "seconds  " + _format(summary.get("seconds") or {})]
    return lines


def run_demo(args) -> int:
    from hf_sparse.demo import plan
    from hf_sparse.demo import run_demo as demo

    from .paths import prepare_output_dir

    print("\n".join(plan(quick=args.quick)), flush=True)
    output = prepare_output_dir(args.output, "--output")
    kwargs = {"quick": True} if args.quick else {}
    summary = demo(output, progress=not args.no_progress, log=lambda line: print(line, flush=True), **kwargs)
    if not isinstance(summary, dict) or "figures" not in summary:
        print(f"Demo done; outputs in {output}/")
        print("\n".join(headline(summary if isinstance(summary, dict) else {"result": summary})))
        return 0
    print("\n".join(report_lines(summary, output)))
    return 0
