"""The ``hf-sparse`` command line.

Example:
    $ hf-sparse demo --output hf_sparse_demo
"""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    from .demo import run_demo

    summary = run_demo(args.output, progress=not args.quiet)
    sel, dense = summary["selected"], summary["densest"]
    print(f"Fit a path of {summary['points']} points in {summary['seconds']} s.")
    print(f"Selected: {sel['features_per_class']} features per class, validation accuracy "
          f"{sel['val_accuracy']:.3f} (densest point: {dense['val_accuracy']:.3f} with "
          f"{dense['features_per_class']} features per class).")
    print(f"Planted features recovered: {summary['planted_features_recovered']} of "
          f"{summary['planted_features_total']}.")
    print(f"Output: {args.output}/ (path/, path.png, summary.json)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-sparse", description="Debuggable classifiers with sparse heads.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the embedded default offline and write its outputs")
    demo.add_argument("--output", default="hf_sparse_demo", help="output folder (default: hf_sparse_demo)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as error:
        print(f"hf-sparse {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
