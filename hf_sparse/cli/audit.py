"""``hf-sparse audit``: run an audit suite on a saved model, print the report and record it with the model.

The report goes into the model folder's ``audit.json`` (with its checksum in the manifest) and its card (README.md and
its pictures); the weights are not written again unless ``--save-model`` or ``--output`` asks for a whole save.

Example:
    $ hf-sparse audit runs/sparse --suite slices --dataset test.csv --text-column review
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from .errors import CLIError, UsageError, describe
from .options import column_list, open_fraction, positive_int

HELP = "audit a saved model: identity terms, subgroup metrics or error slices"

#: The function of `hf_sparse.audit` each suite runs.
SUITE_FUNCTIONS = {"identity": "identity_audit", "subgroup": "subgroup_metrics", "slices": "find_error_slices"}

DESCRIPTION = """\
Run one audit suite and print its report; the report is recorded in MODEL_DIR: its audit.json and its model card
(README.md and pictures) are refreshed, the weights are left as they are. --output DIR (or --save-model) saves the
whole model with the report instead; --no-save only prints it.

suites:
  identity  swap identity terms in template sentences (or in the texts of --dataset) and measure how the
            probability of --target-label moves, per group and term, with the features that carry the change
  subgroup  subgroup, BPSN and BNSP AUC per subgroup of --dataset (rows marked by --identity-columns, or by the
            identity terms found in the texts), for the sparse and the dense head
  slices    the --n-slices regions of --dataset where the loss is highest, with their examples and features"""

EPILOG = """\
examples:
  hf-sparse audit runs/sparse --suite identity --target-label toxic
  hf-sparse audit runs/sparse --suite subgroup --dataset test.csv --identity-columns female,muslim
  hf-sparse audit runs/sparse --suite slices --dataset test.csv --n-slices 5 --json slices.json"""


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("audit", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model saved by `hf-sparse fit` (folder or Hub id)")
    p.add_argument("--suite", required=True, choices=tuple(SUITE_FUNCTIONS), help="which audit to run (see above)")

    data = p.add_argument_group("data")
    data.add_argument("--dataset", metavar="DATASET",
                      help="data to audit on (needed by subgroup and slices; identity then swaps terms in its texts): "
                           "a .csv/.tsv/.json/.jsonl/.parquet file, a save_to_disk folder or a Hub id")
    data.add_argument("--split", default="test", metavar="NAME",
                      help="split of a Hub dataset or saved DatasetDict (default: test)")
    data.add_argument("--text-column", default="text", metavar="NAME", help="column holding the texts (default: text)")
    data.add_argument("--label-column", default="label", metavar="NAME",
                      help="column holding the labels (default: label)")
    data.add_argument("--max-rows", type=positive_int, metavar="N", help="use only the first N rows of --dataset")

    suite = p.add_argument_group("suite options")
    suite.add_argument("--target-label", type=column_list, metavar="LABEL",
                       help="the audited label: a name or id, or several separated by commas (identity, subgroup; "
                            "default: label 1 of a two-class model, else one named toxic, positive, ...)")
    suite.add_argument("--groups", type=column_list, metavar="A,B",
                       help="identity groups to use, e.g. gender,religion (identity, subgroup; default: all of the "
                            "project's groups)")
    suite.add_argument("--identity-columns", type=column_list, metavar="A,B",
                       help="columns of --dataset that mark subgroups (subgroup; default: the identity terms found "
                            "in the texts)")
    suite.add_argument("--n-slices", type=positive_int, default=5, metavar="N",
                       help="number of error slices (slices; default: 5)")
    suite.add_argument("--spotlight-size", type=open_fraction, metavar="F",
                       help="share of the data in each slice (slices; default: 0.05)")

    out = p.add_argument_group("output")
    out.add_argument("--output", "-o", metavar="DIR",
                     help="save the whole model with its audit and refreshed card here (default: record the audit "
                          "in MODEL_DIR itself: audit.json and the card only)")
    out.add_argument("--save-model", action="store_true",
                     help="save the whole model again (weights included) instead of refreshing only audit.json and "
                          "the card")
    out.add_argument("--no-save", action="store_true", help="only print the report; save nothing")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    out.add_argument("--json", metavar="FILE",
                     help="also write the report as JSON to FILE ('-': print JSON instead of the text report)")
    p.set_defaults(run=run_audit)
    return p


def _audit_function(suite: str):
    name = SUITE_FUNCTIONS[suite]
    try:
        from hf_sparse import audit
    except ImportError as err:
        raise CLIError(f"this version of hf_sparse has no audit module ({err}); update hf_sparse") from err
    function = getattr(audit, name, None)
    if function is None:
        raise CLIError(f"this version of hf_sparse.audit has no {name} (--suite {suite}); update hf_sparse")
    return function


def _target(labels: list[str] | None):
    """`--target-label` as the audit functions take it: a name or id, or a list of them."""
    if not labels:
        return None
    values = [int(v) if v.isdigit() else v for v in labels]
    return values[0] if len(values) == 1 else values


#: The audit functions' argument names and the options that set them.
ARGUMENT_FLAGS = {"target_label": "--target-label", "identity_columns": "--identity-columns", "groups": "--groups",
                  "n_slices": "--n-slices", "spotlight_size": "--spotlight-size", "text_column": "--text-column",
                  "label_column": "--label-column", "dataset": "--dataset", "texts": "--dataset"}
#: `name=` always; a bare name only where it cannot be an English word (it has an underscore).
_ARGUMENT = re.compile(r"(?<![\w.-])(?:(" + "|".join(ARGUMENT_FLAGS) + r")=|("
                       + "|".join(n for n in ARGUMENT_FLAGS if "_" in n) + r")\b(?![=(]))")


def cli_words(message: str) -> str:
    """An audit function's message with its Python argument names (``target_label=``, ``n_slices`` ...) given as
    the command's options (``--target-label``, ``--n-slices``).

    Example:
        >>> cli_words("pass target_label= (a name or an id)")
        'pass --target-label (a name or an id)'
    """
    return _ARGUMENT.sub(lambda m: ARGUMENT_FLAGS[m.group(1) or m.group(2)], message)


def load_audit_data(args, config):
    """The checked --dataset (None for the identity suite without one)."""
    from . import data

    if args.dataset is None:
        if args.suite == "identity":
            return None
        raise UsageError(f"--suite {args.suite} needs --dataset (the data to audit the model on)")
    dataset = data.first_rows(data.load_source(args.dataset, split=args.split, what="--dataset"), args.max_rows)
    columns = [("--text-column", args.text_column)]
    if args.suite != "identity":
        columns.append(("--label-column", args.label_column))
    columns += [("--identity-columns", name) for name in args.identity_columns or ()]
    data.require_columns(dataset, columns, "--dataset")
    if args.suite == "identity":
        return dataset
    return data.encode_labels(dataset, args.label_column, config, "--dataset")


def suite_arguments(args, dataset) -> tuple[tuple, dict]:
    """Positional and keyword arguments of the suite's function (only the options given, so that the audit
    module's own defaults apply otherwise)."""
    if args.suite == "identity":
        kwargs = {"groups": args.groups, "target_label": _target(args.target_label)}
        if dataset is not None:
            kwargs["texts"] = [str(t) for t in dataset[args.text_column]]
        return (), {k: v for k, v in kwargs.items() if v is not None}
    kwargs = {"text_column": args.text_column, "label_column": args.label_column}
    if args.suite == "subgroup":
        kwargs.update(identity_columns=args.identity_columns, groups=args.groups, target_label=_target(args.target_label))
    else:
        kwargs.update(n_slices=args.n_slices, spotlight_size=args.spotlight_size)
    return (dataset,), {k: v for k, v in kwargs.items() if v is not None}


def record_audit(model, directory: str | os.PathLike) -> list[str]:
    """Record `model`'s audit reports in its saved folder `directory` without saving the model again: write
    `audit.json`, put its sha256 in the manifest and refresh the model card (README.md, its own text kept, and its
    pictures). The folder is updated atomically (`atomic_folder`: the files not written again, the weights among
    them, are carried over as hard links, so a crash leaves the old folder or the new one). Returns the files written.

    Example:
        >>> model, _ = load_checkpoint("runs/sparse"); identity_audit(model); record_audit(model, "runs/sparse")
        ['audit.json', 'hf_sparse_manifest.json', 'README.md', ...]
    """
    from hf_sparse.constants import AUDIT_NAME
    from hf_sparse.modeling.artifacts import artifacts

    from .models import update_saved_checkpoint

    def write_audit(tmp) -> list[str]:
        written = []
        for artifact in artifacts(checked=True):
            if AUDIT_NAME in artifact.files:
                written += artifact.save(model, tmp, {})
        return [name for name in written if name == AUDIT_NAME]

    def write_card(tmp) -> list[str]:
        written = []
        for artifact in artifacts(checked=False):  # the model card (the manifest does not list it)
            written += artifact.save(model, tmp, {"model_card": True})
        return written

    return update_saved_checkpoint(directory, write_audit, write_card, what="record the audit",
                                   instead="give --save-model to save the whole model again")


def run_audit(args) -> int:
    from .models import load_checkpoint, require_checkpoint
    from .paths import check_output_file, looks_local, prepare_output_dir

    run_suite = _audit_function(args.suite)
    if args.no_save and (args.save_model or args.output is not None):
        raise UsageError("--no-save saves nothing: leave out --save-model / --output, or --no-save")
    output = None
    if not args.no_save:
        output = args.output
        if output is None:
            if not looks_local(args.model_dir):
                raise UsageError(f"MODEL_DIR {args.model_dir} is a Hub id: give --output DIR to save the audited model")
            output = args.model_dir
    if args.json not in (None, "-"):
        check_output_file(args.json, "--json")
    config = require_checkpoint(args.model_dir)
    dataset = load_audit_data(args, config)
    out_dir = prepare_output_dir(output, "--output") if output is not None else None
    model, head_only = load_checkpoint(args.model_dir)
    positional, kwargs = suite_arguments(args, dataset)
    try:
        report = run_suite(model, *positional, **kwargs)
    except ValueError as err:  # the audit's own words name its Python arguments: give the options instead
        raise CLIError(cli_words(describe(err))) from err
    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report)
    if args.json not in (None, "-"):
        Path(args.json).expanduser().write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n",
                                                encoding="utf-8")
    in_place = out_dir is not None and (args.output is None or (
        os.path.isdir(args.model_dir) and os.path.samefile(args.model_dir, out_dir)))
    if in_place and not args.save_model:
        record_audit(model, out_dir)
        if args.json != "-":
            print(f"\nRecorded this audit in {out_dir / 'audit.json'} and refreshed its model card (README.md); "
                  "the weights were not written again (--save-model saves the whole model)")
    elif out_dir is not None:  # --save-model, or another folder: the whole model
        model.save_pretrained(out_dir, head_only=head_only)
        if args.json != "-":
            print(f"\nSaved the model with this audit and its refreshed card to {out_dir}")
    return 0
