"""``hf-sparse finetune``: fine-tune a pretrained text encoder on labelled data into an ordinary transformers
classifier folder, ready for ``hf-sparse fit``.

Example:
    $ hf-sparse finetune reviews.csv --text-column review --epochs 1 --max-length 64 -o runs/clf
    $ hf-sparse fit runs/clf reviews.csv --text-column review --validation-size 0.2 --features-per-class 5 \
          -o runs/sparse
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .errors import CLIError
from .options import non_negative_int, positive_float, positive_int

HELP = "fine-tune a pretrained text encoder into a classifier (for `hf-sparse fit` when you have none)"

DESCRIPTION = """\
Fine-tune a pretrained text encoder (default: the packaged all-MiniLM-L6-v2, offline) on the labelled texts of
DATASET and save an ordinary transformers classifier to --output: safetensors weights, the tokenizer, and the label
names as id2label / label2id. Labels are class names (strings, sorted), class ids 0..k-1 or a ClassLabel.
The embeddings stay frozen (and --freeze-layers N lowest layers); AdamW with a short warm-up and a linear decay.
Then `hf-sparse fit DIR DATASET ...` replaces its final layer by a sparse one."""

EPILOG = """\
examples:
  hf-sparse finetune train.csv --text-column sentence --epochs 1 --max-length 64 -o clf
  hf-sparse fit clf train.csv --text-column sentence --validation-size 0.2 --features-per-class 5 -o sparse
  hf-sparse finetune comments.parquet --text-column comment --label-column toxic --model path/to/encoder -o clf

datasets: a Hub id (with --split), a folder saved with Dataset.save_to_disk, a folder of data files, or a .csv /
.tsv / .json / .jsonl / .parquet file.

time with MiniLM on a 2-core CPU: about 3 s a step of 32 texts at --max-length 64 (2,000 SST-2 phrases, one
epoch, 63 steps: 3-4 minutes); a GPU is used when there is one."""


def add_parser(commands) -> argparse.ArgumentParser:
    from hf_sparse.modeling.fit_config import FitConfig  # the column options' help, shared with `fit`

    p = commands.add_parser("finetune", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("dataset", metavar="DATASET",
                   help="training data: a Hub id, a save_to_disk folder, or a .csv/.tsv/.json/.jsonl/.parquet file")
    p.add_argument("--output", "-o", required=True, metavar="DIR",
                   help="folder to save the classifier in (created if needed; a folder that holds files only with "
                        "--overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --output to be a folder that already holds files: the classifier saved there is "
                        "replaced in one step (other files are kept)")
    p.add_argument("--model", metavar="ENCODER", default=None,
                   help="pretrained encoder to fine-tune: a local folder or a Hub id (default: the packaged "
                        "all-MiniLM-L6-v2)")

    cols = p.add_argument_group("data")
    cols.add_argument("--text-column", default="text", metavar="NAME",
                      help=f"{FitConfig.help('text_column')} (default: text)")
    cols.add_argument("--label-column", default="label", metavar="NAME",
                      help="column holding the labels: class names (strings) or class ids 0..k-1 (default: label)")
    cols.add_argument("--split", default="train", metavar="NAME",
                      help="training split of a Hub dataset or a saved DatasetDict (default: train)")
    cols.add_argument("--max-rows", type=positive_int, metavar="N",
                      help="train on the first N rows only (default: all)")

    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=positive_float, default=2.0, metavar="E",
                       help="passes over the data, fractions allowed (default: 2)")
    train.add_argument("--learning-rate", "--lr", dest="lr", type=positive_float, default=1e-4, metavar="LR",
                       help="AdamW learning rate (default: 1e-4)")
    train.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="texts per step (default: 32)")
    train.add_argument("--max-length", type=positive_int, default=48, metavar="TOKENS",
                       help="tokens kept per text (default: 48; raise it for longer texts, at a cost in time)")
    train.add_argument("--freeze-layers", type=non_negative_int, default=0, metavar="N",
                       help="also keep the N lowest transformer layers as pretrained (default: 0; the embeddings "
                            "are always frozen)")
    train.add_argument("--seed", type=int, default=0, help="seed of the head's initial weights, dropout and batch "
                                                           "order (default: 0)")
    train.add_argument("--trust-remote-code", action="store_true",
                       help="allow ENCODER's own Python code from the Hub to run (off unless given)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_finetune)
    return p


def run_finetune(args) -> int:
    from . import data
    from .models import resolve
    from .paths import check_output_free, prepare_output_dir

    started = time.perf_counter()
    encoder = resolve(args.model) if args.model is not None else None
    if encoder is not None and Path(encoder).exists() and not (Path(encoder) / "config.json").is_file():
        raise CLIError(f"--model {args.model} has no config.json: give a transformers model folder or a Hub id")
    inputs = {"DATASET": resolve(args.dataset)}
    if encoder is not None:
        inputs["--model"] = encoder
    check_output_free(args.output, "--output", overwrite=args.overwrite, inputs=inputs)
    existed = Path(args.output).expanduser().exists()
    output = prepare_output_dir(args.output, "--output")
    try:
        train = data.first_rows(data.load_source(args.dataset, split=args.split, what="DATASET"), args.max_rows)
        data.require_columns(train, {"--text-column": args.text_column, "--label-column": args.label_column},
                             "DATASET")
        from hf_sparse.modeling.finetune import finetune_text_classifier

        # the data's own problems (one class, labels neither names nor ids, rows without text) are ValueErrors
        # that say what to do: printed as they are
        model, _ = finetune_text_classifier(
            train, encoder=encoder, text_column=args.text_column, label_column=args.label_column,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_length=args.max_length,
            freeze_layers=args.freeze_layers, seed=args.seed, out_dir=output, progress=not args.no_progress,
            trust_remote_code=args.trust_remote_code,
        )
    except BaseException:
        if not existed and output.is_dir() and not any(output.iterdir()):
            output.rmdir()  # leave nothing behind for a run that failed before writing
        raise
    print(summary(model.finetune_summary, args, output, time.perf_counter() - started))
    return 0


def summary(info: dict, args, output: Path, seconds: float) -> str:
    """The lines printed at the end: data, classes, training, output, and the next command."""
    classes = info["classes"]
    shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    encoder = args.model or "the packaged all-MiniLM-L6-v2"
    columns = "" if args.text_column == "text" else f" --text-column {args.text_column}"
    columns += "" if args.label_column == "label" else f" --label-column {args.label_column}"
    return "\n".join([
        f"Fine-tuned {encoder} in {seconds:.1f} s (training {info['seconds']:.1f} s).",
        f"  data         {info['rows']} training rows from {args.dataset}",
        f"  classes      {len(classes)}: {shown}",
        f"  training     {info['epochs']:g} epoch(s), {info['steps']} steps of {args.batch_size}, max length "
        f"{args.max_length}, final loss {info['final_loss']:.3f}",
        f"  output       {output} (a transformers classifier)",
        f"  next         hf-sparse fit {output} {args.dataset}{columns} --validation-size 0.2 "
        "--features-per-class 5 -o OUT",
    ])
