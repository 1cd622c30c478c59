"""The ``hf-sparse`` command line: ``finetune``, ``fit``, ``explain``, ``audit``, ``card``, ``push`` and ``demo``.

Every subcommand has ``--help``. Errors print one line, ``hf-sparse <command>: error: <what and what to do>``,
and exit with status 2 (the arguments are wrong) or 1 (the run failed); ``--debug`` shows the traceback instead.

Example:
    $ hf-sparse fit my-classifier train.csv --features-per-class 5 --output sparse-model
    $ hf-sparse explain sparse-model --text "a gorgeous, witty film"
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from . import audit, card, demo, explain, finetune, fit, push
from .errors import CLIError, describe, one_line

#: The subcommand modules, in the order `--help` lists them; each has `add_parser(commands)`.
COMMANDS = (finetune, fit, explain, audit, card, push, demo)

DESCRIPTION = """\
Debuggable transformers classifiers: replace a fine-tuned classifier's final layer by a sparse linear layer,
then explain, audit, document and share it."""

EPILOG = """\
typical session:
  hf-sparse fit my-classifier train.csv --text-column text --features-per-class 5 --output sparse-model
  hf-sparse explain sparse-model --text "a gorgeous, witty film"
  hf-sparse audit sparse-model --suite identity
  hf-sparse card sparse-model
  hf-sparse push sparse-model me/sparse-model

Run `hf-sparse <command> --help` for a command's options."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``hf-sparse fit: error: ...``, exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def _debug_option(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show full tracebacks and library warnings on errors")


def build_parser() -> argparse.ArgumentParser:
    """The ``hf-sparse`` parser with one subparser per command."""
    from hf_sparse import __version__

    parser = _Parser(prog="hf-sparse", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"hf_sparse {__version__}")
    _debug_option(parser, False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for module in COMMANDS:
        sub = module.add_parser(commands)
        sub.formatter_class = _Formatter
        _debug_option(sub, argparse.SUPPRESS)  # `hf-sparse fit --debug ...` and `hf-sparse --debug fit ...` both work
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"hf-sparse: warning: {one_line(message)}", file=sys.stderr)


def _quiet_libraries(debug: bool, progress: bool):
    """Hide third-party warnings and log chatter (not hf_sparse's own warnings) unless --debug; with `progress`
    False, switch the libraries' progress bars off. Returns a function that switches them back on where they were
    on (`main` calls it when the command ends: a caller that runs commands in its own process keeps its bars)."""
    import datasets
    import huggingface_hub
    import transformers

    restore = _progress_bars_restorer()
    if not progress:
        datasets.disable_progress_bars()
        huggingface_hub.utils.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    if debug:
        return restore
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("always", module=r"hf_sparse(\.|$)")
    warnings.showwarning = _show_warning
    transformers.utils.logging.set_verbosity_error()
    datasets.utils.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()
    return restore


def _progress_bars_restorer():
    """A function that switches the datasets, huggingface_hub and transformers progress bars back on if they are on
    now."""
    import datasets
    import huggingface_hub
    import transformers

    on = (not datasets.utils.are_progress_bars_disabled(), not huggingface_hub.utils.are_progress_bars_disabled(),
          transformers.utils.logging.is_progress_bar_enabled())

    def restore() -> None:
        if on[0]:
            datasets.enable_progress_bars()
        if on[1]:
            huggingface_hub.utils.enable_progress_bars()
        if on[2]:
            transformers.utils.logging.enable_progress_bar()

    return restore


def _error_message(error: BaseException) -> tuple[int, str]:
    """Exit status and one-line message for an exception a command did not turn into a `CLIError` itself."""
    from hf_sparse.features.processes import ProcessSetupError
    from hf_sparse.modeling import CheckpointError, UnsupportedModelError

    if isinstance(error, CLIError):
        return error.exit_code, one_line(error)
    if isinstance(error, ProcessSetupError):
        return 1, one_line(error)
    if isinstance(error, ModuleNotFoundError) and error.name and not error.name.startswith("hf_sparse"):
        package = error.name.split(".")[0]
        return 1, f"the Python package {package!r} is needed for this and is not installed: pip install {package}"
    if isinstance(error, (UnsupportedModelError, CheckpointError, ValueError, OSError)):
        return 1, describe(error)
    return 1, f"unexpected {type(error).__name__}: {describe(error)} (rerun with --debug for the traceback)"


def _rank_prefix() -> str:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f"[rank {os.environ.get('RANK', '0')}] " if world > 1 else ""


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: the command line), run the command and return the exit status."""
    args = build_parser().parse_args(argv)
    name = f"hf-sparse {args.command}"
    restore_progress_bars = None
    try:
        restore_progress_bars = _quiet_libraries(args.debug, progress=not getattr(args, "no_progress", False))
        return int(args.run(args) or 0)
    except BrokenPipeError:  # e.g. `hf-sparse explain ... --json | head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"{_rank_prefix()}{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every failure becomes one line unless --debug
        if args.debug:
            raise
        code, message = _error_message(error)
        print(f"{_rank_prefix()}{name}: error: {message}", file=sys.stderr)
        return code
    finally:
        if restore_progress_bars is not None:
            restore_progress_bars()


__all__ = ["CLIError", "build_parser", "main"]
