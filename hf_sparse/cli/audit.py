"""``hf-sparse audit``: run an audit suite on a saved model, print the report and save it with the model.

Example:
    $ hf-sparse audit runs/sparse --suite slices --dataset test.csv --text-column review
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import CLIError, UsageError
from .options import column_list, positive_int

HELP = "audit a saved model: identity terms, subgroup metrics or error slices"

SUITES = ("identity", "subgroup", "slices")

DESCRIPTION = """\
Run one audit suite and print its report; the report is recorded in the model, which is saved again (to
MODEL_DIR unless --output is given), so that the model card shows it.

suites:
  identity  which features and classes respond to identity terms (no data needed)
  subgroup  accuracy and error rates per subgroup of --identity-columns on --dataset
  slices    the slices of --dataset where the model errs most, described by the features"""

EPILOG = """\
examples:
  hf-sparse audit runs/sparse --suite identity
  hf-sparse audit runs/sparse --suite subgroup --dataset test.csv --identity-columns gender,religion
  hf-sparse audit runs/sparse --suite slices --dataset test.csv --n-slices 5 --json slices.json"""


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("audit", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model saved by `hf-sparse fit` (folder or Hub id)")
    p.add_argument("--suite", required=True, choices=SUITES, help="which audit to run (see above)")
    p.add_argument("--dataset", metavar="DATASET",
                   help="data for the subgroup and slices suites: a .csv/.tsv/.json/.jsonl/.parquet file, a "
                        "save_to_disk folder or a Hub id")
    p.add_argument("--split", default="test", metavar="NAME",
                   help="split of a Hub dataset or saved DatasetDict (default: test)")
    p.add_argument("--text-column", default="text", metavar="NAME", help="column holding the texts (default: text)")
    p.add_argument("--label-column", default="label", metavar="NAME", help="column holding the labels (default: label)")
    p.add_argument("--identity-columns", type=column_list, metavar="A,B",
                   help="comma-separated columns that mark subgroups (subgroup suite)")
    p.add_argument("--n-slices", type=positive_int, default=5, metavar="N",
                   help="number of error slices to report (slices suite; default: 5)")
    p.add_argument("--max-rows", type=positive_int, metavar="N", help="use only the first N rows of --dataset")
    p.add_argument("--output", "-o", metavar="DIR",
                   help="save the model with its audit and refreshed card here (default: MODEL_DIR itself)")
    p.add_argument("--no-save", action="store_true", help="only print the report; save nothing")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="print the report as JSON instead of text, or write it to FILE")
    p.set_defaults(run=run_audit)
    return p


def _audit_module():
    try:
        from hf_sparse import audit
    except ImportError as err:
        raise CLIError(f"this version of hf_sparse has no audit module ({err}); update hf_sparse") from err
    return audit


def load_audit_data(args, config):
    from . import data

    if args.dataset is None:
        raise UsageError(f"--suite {args.suite} needs --dataset (the data to audit the model on)")
    dataset = data.first_rows(data.load_source(args.dataset, split=args.split, what="--dataset"), args.max_rows)
    columns = [("--text-column", args.text_column), ("--label-column", args.label_column)]
    if args.suite == "subgroup":
        if not args.identity_columns:
            raise UsageError("--suite subgroup needs --identity-columns (the columns that mark subgroups)")
        columns += [("--identity-columns", name) for name in args.identity_columns]
    data.require_columns(dataset, columns, "--dataset")
    return data.encode_labels(dataset, args.label_column, config, "--dataset")


def run_audit(args) -> int:
    from .models import is_sparse_config, read_config
    from .paths import check_output_file, looks_local, prepare_output_dir

    audit = _audit_module()
    output = args.output
    if not args.no_save:
        if output is None:
            if not looks_local(args.model_dir):
                raise UsageError(f"MODEL_DIR {args.model_dir} is a Hub id: give --output DIR to save the audited model")
            output = args.model_dir
    if args.json not in (None, "-"):
        check_output_file(args.json, "--json")
    config = read_config(args.model_dir, "MODEL_DIR")
    if not is_sparse_config(config):
        raise CLIError(f"MODEL_DIR {args.model_dir} is not an hf_sparse checkpoint: fit its sparse head first (hf-sparse fit)")
    dataset = None if args.suite == "identity" else load_audit_data(args, config)
    out_dir = prepare_output_dir(output, "--output") if output is not None else None

    from .models import load_checkpoint

    model, head_only = load_checkpoint(args.model_dir)
    if args.suite == "identity":
        report = audit.identity_audit(model)
    elif args.suite == "subgroup":
        report = audit.subgroup_metrics(model, dataset, text_column=args.text_column, label_column=args.label_column,
                                        identity_columns=args.identity_columns)
    else:
        report = audit.find_error_slices(model, dataset, n_slices=args.n_slices, text_column=args.text_column,
                                         label_column=args.label_column)
    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report)
    if args.json not in (None, "-"):
        Path(args.json).expanduser().write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    if out_dir is not None:
        model.save_pretrained(out_dir, head_only=head_only)
        if args.json != "-":
            print(f"\nSaved the model with this audit and its refreshed card to {out_dir}")
    return 0
