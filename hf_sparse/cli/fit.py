"""``hf-sparse fit``: fit a sparse head on a fine-tuned classifier (or, with ``--from-encoder``, on a pretrained
encoder with no classification head) and save the model with its card.

Example:
    $ hf-sparse fit my-finetuned-bert reviews.csv --text-column review --features-per-class 5 --output runs/sparse
    $ hf-sparse fit path/to/all-MiniLM-L6-v2 reviews.csv --from-encoder --pooling mean --features-per-class 5 -o runs/minilm
    $ hf-sparse fit my-finetuned-bert train.csv --eval-file val.csv --features-per-class 5 --group-word tuesday -o runs/fixed
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

from hf_sparse.modeling.fit_config import FIT, TARGET_OPTIONS, FitConfig

from .errors import CLIError, UsageError
from .options import CLI_OPTIONS  # noqa: F401 - imported from here too
from .options import fit_config, fit_option, mixing, open_fraction, pooling, positive_int, size_or_fraction
from .options import sparsity_target, target_value

HELP = "fit a sparse final layer on a fine-tuned classifier (or a pretrained encoder) and save it"

DESCRIPTION = """\
Replace the final linear layer of a fine-tuned transformers classifier by a sparse one: cache the layer's input
features over DATASET, fit the elastic-net regularization path, install the point chosen by the sparsity target
(exactly one of --features-per-class, --max-accuracy-drop, --lam), describe the features it uses, and save the
model with its model card (README.md) to --output.

With --from-encoder, MODEL is a pretrained encoder with no classification head (e.g. all-MiniLM-L6-v2, a ViT):
the features are its pooled output (--pooling mean, cls or pooler), the labels and their names come from the
data's label column (a ClassLabel's names, else its sorted distinct values), and there is no dense head to compare
with."""

EPILOG = """\
examples:
  hf-sparse fit my-bert-sst2 sst2_train.csv --text-column sentence --features-per-class 5 --output sparse-sst2
  hf-sparse fit textattack/bert-base-uncased-SST-2 stanfordnlp/sst2 --text-column sentence \\
      --eval-split validation --max-accuracy-drop 0.01 --output sparse-sst2
  hf-sparse fit my-vit images/ --image-column image --validation-size 0.1 --lam 0.05 --output sparse-vit
  hf-sparse fit path/to/all-MiniLM-L6-v2 sst2_train.csv --from-encoder --pooling mean --text-column sentence \
      --eval-file sst2_validation.csv --features-per-class 5 --output sparse-minilm
  hf-sparse fit my-bert train.csv --eval-file val.csv --features-per-class 5 --group-word tuesday --output fixed
  hf-sparse fit my-toxicity-bert comments.csv --validation-size 0.2 --features-per-class 5 \
      --groups identity --augment-identity sexual_orientation,religion --output fixed-toxicity
  hf-sparse fit --from-encoder PATH comments.csv --validation-size 0.2 --features-per-class 20 \
      --augment-identity sexual_orientation --swap-across-groups --output fixed-toxicity

datasets: a Hub id (with --split), a folder saved with Dataset.save_to_disk (a DatasetDict: --split picks one),
a folder of data files, or a .csv / .tsv / .json / .jsonl / .parquet file. Label names (strings) are mapped to
the model's label ids; image columns of a data file may hold image paths (relative to the file's folder).

several GPUs: `accelerate launch -m hf_sparse.cli fit ...` or `torchrun --nproc-per-node 4 -m hf_sparse.cli
fit ...` (or `accelerate launch $(which hf-sparse) fit ...`). Every process runs the command: feature extraction
is split over the processes and the path solver sums over them; only the main process writes --output and
prints the summary."""


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("fit", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("model", metavar="MODEL",
                   help="a fine-tuned classifier (or, with --from-encoder, a pretrained encoder): a Hub id or a local "
                        "folder (safetensors weights)")
    p.add_argument("dataset", metavar="DATASET",
                   help="training data: a Hub id, a save_to_disk folder, or a .csv/.tsv/.json/.jsonl/.parquet file")
    p.add_argument("--output", "-o", required=True, metavar="DIR",
                   help="folder to save the model, its model card and feature descriptions in (created if needed; "
                        "a folder that holds files only with --overwrite; never MODEL's folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --output to be a folder that already holds files: the model saved there is replaced "
                        "in one step (other files are kept)")

    cols = p.add_argument_group("columns")
    # default None: which of the two was given tells an image model from a text one (see run_fit)
    fit_option(cols, "text_column", default=None, note=f"default: {FitConfig.default('text_column')}")
    fit_option(cols, "image_column", default=None, note=f"default: {FitConfig.default('image_column')}; also marks "
                                                     "MODEL as an image model when its config does not say")
    fit_option(cols, "label_column")

    data = p.add_argument_group("splits")
    data.add_argument("--split", default="train", metavar="NAME",
                      help="training split of a Hub dataset or a saved DatasetDict (default: train)")
    evaluation = data.add_mutually_exclusive_group()
    evaluation.add_argument("--eval-split", metavar="NAME",
                            help="evaluation split of DATASET (a Hub dataset or a saved DatasetDict), e.g. validation")
    evaluation.add_argument("--eval-file", metavar="DATASET",
                            help="evaluation data from another file, folder or Hub id (its 'validation' split if it has several)")
    evaluation.add_argument("--validation-size", type=size_or_fraction, metavar="SIZE",
                            help="hold out this fraction (e.g. 0.1) or number of training rows for evaluation")
    data.add_argument("--seed", type=int, default=0, help="seed of the --validation-size split (default: 0)")
    data.add_argument("--max-rows", type=positive_int, metavar="N",
                      help="use only the first N rows of the training and evaluation data (default: all)")

    target = p.add_argument_group(
        "sparsity target (exactly one)",
        "Without evaluation data the path is scored on the training data.")
    exclusive = target.add_mutually_exclusive_group()
    for name in TARGET_OPTIONS:
        fit_option(exclusive, name, type=target_value(name))

    encoder = p.add_argument_group("pretrained encoder (no classification head)")
    encoder.add_argument("--from-encoder", action="store_true",
                         help="MODEL is a pretrained encoder: fit the sparse head on its pooled output; labels and "
                              "label names come from the data's label column")
    encoder.add_argument("--pooling", type=pooling, metavar="{mean,cls,pooler}",
                         help="with --from-encoder: mean over the tokens (padding excluded) or patches, the first "
                              "(CLS) token, or the encoder's pooler output (default: mean for text, cls for images)")

    fix = p.add_argument_group(
        "fixing a shortcut or a bias (group-balanced refit on the cached features)",
        "After the plain fit, the head is refit with every (group, label) cell weighted equally, judged by "
        "worst-group accuracy on the evaluation data; the before/after report is printed and saved in the card.")
    which = fix.add_mutually_exclusive_group()
    which.add_argument("--groups", metavar="COLUMN",
                       help="a column of the training (and evaluation) data naming each row's group, e.g. has_shortcut")
    which.add_argument("--group-word", metavar="WORD",
                       help="two groups: the texts that contain WORD (whole word, any case) and the others")
    fit_option(fix, "balance", note="default with --groups/--group-word: groups")
    fix.add_argument("--augment-identity", metavar="GROUPS",
                     help="add counterfactual training texts with identity terms swapped (comma-separated groups of "
                          "hf_sparse.audit.terms, e.g. religion,sexual_orientation, or 'all'), with the original labels")
    fix.add_argument("--swap-across-groups", action="store_true",
                     help="with --augment-identity: swap the named groups' terms for other groups' terms and back "
                          "(breaks the link between those groups and the label) instead of within each group")

    solver = p.add_argument_group("solver")
    fit_option(solver, "relax", action=argparse.BooleanOptionalAction, default=True, note="default: --relax")
    fit_option(solver, "alpha", type=mixing)
    fit_option(solver, "n_lambdas", type=positive_int)
    fit_option(solver, "lambda_min_ratio", type=open_fraction)
    fit_option(solver, "whole_path", action=argparse.BooleanOptionalAction, note="default: --whole-path")

    run = p.add_argument_group("features and saving")
    fit_option(run, "batch_size", type=positive_int)
    fit_option(run, "max_length", type=positive_int)
    fit_option(run, "cache_dir")
    run.add_argument("--head-only", action="store_true",
                     help="save only the sparse head and a pointer to MODEL (a few KB) instead of the whole model")
    run.add_argument("--no-describe", action="store_true",
                     help="skip describing the features the head uses (top examples, words / regions)")
    run.add_argument("--trust-remote-code", action="store_true",
                     help="allow MODEL's own Python code from the Hub to run (off unless given)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run_fit)
    return p


def load_training_data(args, data_column: str, data_flag: str, config, modality: str, train=None):
    """``(train, evaluation or None, where the evaluation comes from)``, checked and with labels mapped.
    `train`: the training rows already loaded (``load_train``), else they are loaded here."""
    from . import data

    if train is None:
        train = load_train(args)
    train = _checked(train, args.dataset, "DATASET", data_column, data_flag, args.label_column, config, modality)
    evaluation, where = None, None
    if args.eval_split:
        if args.eval_split == args.split:
            raise UsageError(f"--eval-split {args.eval_split} is also the training --split; choose another split")
        if data.is_file_source(args.dataset):
            raise UsageError(
                "--eval-split needs a dataset with splits (a Hub id or a save_to_disk folder); for a data file use "
                "--eval-file or --validation-size"
            )
        evaluation = data.load_source(args.dataset, split=args.eval_split, what="DATASET", only_split=False)
        where, source, what = f"split {args.eval_split!r}", args.dataset, f"split {args.eval_split!r} of DATASET"
    elif args.eval_file:
        evaluation = data.load_source(args.eval_file, split="validation", what="--eval-file")
        where, source, what = f"--eval-file {args.eval_file}", args.eval_file, "--eval-file"
    if evaluation is not None:
        evaluation = data.first_rows(evaluation, args.max_rows)
        evaluation = _checked(evaluation, source, what, data_column, data_flag, args.label_column, config, modality)
    elif args.validation_size is not None:
        train, evaluation = data.split_validation(train, args.validation_size, args.seed)
        where = f"held-out training rows (--validation-size {args.validation_size}, seed {args.seed})"
    return train, evaluation, where


def load_train(args):
    """The training rows of DATASET (its --split, the first --max-rows), unchecked."""
    from . import data

    return data.first_rows(data.load_source(args.dataset, split=args.split, what="DATASET"), args.max_rows)


def labels_from_data(dataset, column: str, what: str = "DATASET") -> dict[int, str]:
    """``id2label`` for ``--from-encoder``, from the label column: a ClassLabel's names, else the sorted distinct
    values (label names as they are; integer class ids, which must then be 0..k-1, named by their number)."""
    from datasets import ClassLabel, Value

    from . import data

    data.require_columns(dataset, {"--label-column": column}, what)
    feature = dataset.features[column]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
    elif isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        values = dataset[column]
        if any(v is None for v in values):
            raise CLIError(f"the label column {column!r} of {what} has empty values; fill or drop those rows")
        names = sorted(set(values))
    elif isinstance(feature, Value) and feature.dtype.startswith(("int", "uint", "bool")):
        values = dataset[column]
        if any(v is None for v in values):
            raise CLIError(f"the label column {column!r} of {what} has empty values; fill or drop those rows")
        ids = sorted({int(v) for v in values})
        if ids != list(range(len(ids))):
            raise CLIError(
                f"the label column {column!r} of {what} holds class ids {ids[:10]}{'...' if len(ids) > 10 else ''}; "
                "--from-encoder needs ids 0..k-1 (each present) or label names: renumber them or write names"
            )
        names = [str(i) for i in ids]
    else:
        raise CLIError(
            f"the label column {column!r} of {what} is {feature}; --from-encoder fits single-label classifiers: give "
            "a column of class names, of class ids 0..k-1, or a ClassLabel"
        )
    if len(names) < 2:
        raise CLIError(
            f"the label column {column!r} of {what} has {len(names)} class ({names}); a classifier needs at least two"
        )
    return dict(enumerate(str(name) for name in names))


def _checked(dataset, source, what, data_column, data_flag, label_column, config, modality):
    from . import data

    data.require_columns(dataset, {data_flag: data_column, "--label-column": label_column}, what)
    if modality == "image":
        dataset = data.resolve_image_paths(dataset, data_column, source, what)
    return data.encode_labels(dataset, label_column, config, what)


def check_encoder_options(args, config) -> None:
    """--from-encoder and --pooling against what MODEL is (a bare encoder, a classifier, an hf_sparse checkpoint)."""
    from .models import is_bare_encoder, is_sparse_config

    if args.pooling is not None and not args.from_encoder:
        raise UsageError("--pooling applies to a pretrained encoder: add --from-encoder (or drop --pooling)")
    if args.from_encoder and is_sparse_config(config):
        raise UsageError(
            f"MODEL {args.model} is already an hf_sparse checkpoint, not a pretrained encoder: drop --from-encoder, "
            "or give the encoder it was built on"
        )
    if not args.from_encoder and is_bare_encoder(config):
        raise UsageError(
            f"MODEL {args.model} is a pretrained encoder ({', '.join(config.architectures)}) with no classification "
            "head: pass --from-encoder (and --pooling mean|cls) to fit a sparse head on its pooled output"
        )


def run_fit(args) -> int:
    from .models import modality_of, model_class, read_config, resolve
    from .paths import check_output_free, prepare_output_dir
    from .processes import Processes

    started = time.perf_counter()
    target = sparsity_target(args)
    if args.balance in ("groups", "group") and args.groups is None and args.group_word is None:
        raise UsageError(f"--balance {args.balance} needs --groups COLUMN or --group-word WORD")
    if args.swap_across_groups and args.augment_identity is None:
        raise UsageError("--swap-across-groups changes how --augment-identity swaps terms: add --augment-identity "
                         "GROUPS (e.g. --augment-identity sexual_orientation)")
    progress = not args.no_progress
    procs = Processes.start()
    procs.quiet_others()
    existed = Path(args.output).expanduser().exists()
    inputs = {"MODEL": resolve(args.model), "DATASET": resolve(args.dataset)}
    check_output_free(args.output, "--output", overwrite=args.overwrite, inputs=inputs)
    output = prepare_output_dir(args.output, "--output")
    try:
        config = read_config(args.model, "MODEL", trust_remote_code=args.trust_remote_code)
        check_encoder_options(args, config)
        modality = modality_of(config, image_hint=args.image_column is not None)
        if modality == "image" and args.text_column is not None:
            raise UsageError(f"MODEL {args.model} is an image classifier: give --image-column, not --text-column")
        if modality == "text" and args.image_column is not None:
            raise UsageError(f"MODEL {args.model} is a text classifier: give --text-column, not --image-column")
        data_flag = "--image-column" if modality == "image" else "--text-column"
        data_column = (args.image_column or "image") if modality == "image" else (args.text_column or "text")
        train = load_train(args)
        id2label = None
        if args.from_encoder:
            id2label = labels_from_data(train, args.label_column)
            config = SimpleNamespace(problem_type=None, num_labels=len(id2label),
                                     label2id={name: i for i, name in id2label.items()})
        train, evaluation, eval_where = load_training_data(args, data_column, data_flag, config, modality, train)

        load_kwargs = {"trust_remote_code": True} if args.trust_remote_code else {}
        if args.from_encoder:
            model = model_class(modality).from_encoder(resolve(args.model), id2label=id2label, pooling=args.pooling,
                                                       **load_kwargs)
        else:
            model = model_class(modality).from_pretrained(resolve(args.model), **load_kwargs)
        fit_options = fit_config(args, data_column, modality, progress and procs.is_main)
        path = model.fit_sparse_head(train, evaluation, **fit_options.options(FIT))
        fix_report = _fix(model, args, modality, progress and procs.is_main)
        if not args.no_describe and hasattr(model, "describe_features"):
            model.describe_features(progress=progress and procs.is_main)
        if procs.is_main:
            model.save_pretrained(output, head_only=args.head_only)
    except BaseException:
        if procs.is_main and not existed and output.is_dir() and not any(output.iterdir()):
            output.rmdir()  # leave nothing behind for a run that failed before writing
        raise
    procs.wait()
    if procs.is_main:
        print(summary(model, path, target, args, train, evaluation, eval_where, output, time.perf_counter() - started))
        if fix_report is not None:
            print(f"\n{fix_report}")
    return 0


def _fix(model, args, modality: str, progress: bool):
    """The group-balanced refit (and counterfactual augmentation) the fix options ask for, or None."""
    if args.groups is None and args.group_word is None and args.augment_identity is None and args.balance is None:
        return None
    from hf_sparse.audit import balanced_refit, contains_word, identity_swaps

    groups = args.groups
    if args.group_word is not None:
        if modality != "text":
            raise UsageError("--group-word needs a text model; for images name a --groups column")
        groups = contains_word(args.group_word)
    augment = None
    if args.augment_identity is not None:
        if modality != "text":
            raise UsageError("--augment-identity swaps words in texts: it needs a text model")
        names = None if args.augment_identity.strip() == "all" else [
            g.strip() for g in args.augment_identity.split(",") if g.strip()]
        try:
            augment = identity_swaps(names, across_groups=args.swap_across_groups, seed=args.seed)
        except ValueError as err:
            raise UsageError(f"--augment-identity: {err}") from None
    balance = args.balance or ("groups" if groups is not None else None)
    try:
        return balanced_refit(model, groups=groups, balance=balance, augment=augment, progress=progress,
                              max_length=args.max_length)
    except ValueError as err:
        raise CLIError(f"the fix could not run: {err}") from None


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def summary(model, path, target, args, train, evaluation, eval_where, output, seconds) -> str:
    """The few lines printed at the end: data, path, dense vs sparse metrics, features per class, output."""
    config = model.config
    head = model.head_summary()
    dense, sparse = config.dense_metrics or {}, config.sparse_metrics or {}
    names = config.id2label or {}
    per_class = head["features_per_class"]
    method, value = target.rule, target.value
    selection = config.selection or {}
    relaxed = ", relaxed refit" if (selection.get("relax_gain") or {}).get("kept") or selection.get("relaxed") else ""
    lam = selection.get("lam", config.selected_lambda)
    scored_on = (f"{eval_where} ({len(evaluation)} rows)" if evaluation is not None
                 else f"the training data ({len(train)} rows; give evaluation data for a fair score)")
    if getattr(config, "base_kind", None) == "encoder" and "accuracy" in sparse:
        metric = (f"accuracy     sparse {_percent(sparse.get('accuracy'))} (a pretrained encoder: no dense head), "
                  f"on {scored_on}")
    elif "accuracy" in sparse or "accuracy" in dense:
        d, s = dense.get("accuracy"), sparse.get("accuracy")
        change = f" ({100 * (s - d):+.2f} points)" if d is not None and s is not None else ""
        metric = f"accuracy     dense {_percent(d)} -> sparse {_percent(s)}{change}, on {scored_on}"
    else:
        metric = (f"mse          dense {dense.get('mse')} -> sparse {sparse.get('mse')}; r2 {dense.get('r2')} -> "
                  f"{sparse.get('r2')}, on {scored_on}")
    by_class = ", ".join(f"{names.get(c, names.get(str(c), c))} {k}" for c, k in enumerate(per_class))
    kind = "head only, pointing to MODEL" if args.head_only else "full model"
    card = ", model card README.md" if (output / "README.md").is_file() else ""
    lines = [
        f"Fitted a sparse head on {args.model} in {seconds:.1f} s.",
        f"  data         {len(train)} training rows from {args.dataset}",
        f"  path         {len(path)} points (alpha {config.alpha}); selected lambda {lam:.3g} by "
        f"{method.replace('_', ' ')} = {value}{relaxed}",
        f"  {metric}",
        f"  features     {head['mean_features_per_class']:.3g} per class ({by_class}); {head['n_features']} distinct "
        f"of {head['num_features']}",
        f"  output       {output} ({kind}{card})",
    ]
    return "\n".join(lines)
