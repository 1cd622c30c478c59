"""``hf-sparse card``: write or refresh a saved model's card (README.md and its pictures).

Example:
    $ hf-sparse card runs/sparse --repo-id me/sst2-sparse --redact
"""

from __future__ import annotations

import argparse

HELP = "write or refresh the model card (README.md) of a saved model"

DESCRIPTION = """\
Render the model card of a saved model: what the sparse head is, dense versus sparse metrics, the features each
class rests on with what drives them, recorded audits, and pictures (the path, the class weights). An existing
README.md is updated in place: text outside the hf_sparse block is kept."""

EPILOG = """\
examples:
  hf-sparse card runs/sparse
  hf-sparse card runs/sparse --output card-preview --redact --no-images"""


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("card", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model saved by `hf-sparse fit` (folder or Hub id)")
    p.add_argument("--output", "-o", metavar="DIR", help="write the card into DIR (default: MODEL_DIR itself)")
    p.add_argument("--repo-id", metavar="OWNER/NAME", help="the Hub repository named in the card's usage example")
    p.add_argument("--dataset-name", metavar="NAME", help="the training dataset named in the card's metadata")
    p.add_argument("--no-images", action="store_true", help="no pictures: the card is text only")
    p.add_argument("--redact", action="store_true",
                   help="mask slurs and other offensive words in the example texts shown, and add a content note")
    p.set_defaults(run=run_card)
    return p


def card_options(args) -> dict:
    """Keyword arguments of `hf_sparse.card.write_model_card` for the options given."""
    options = {"redact": args.redact}
    if args.repo_id:
        options["repo_id"] = args.repo_id
    if args.dataset_name:
        options["dataset_name"] = args.dataset_name
    if args.no_images:
        options["images"] = False
    return options


def _check_supported(write_model_card, options: dict) -> None:
    """A clear error where this hf_sparse's card writer lacks an option (instead of a TypeError)."""
    import inspect

    from hf_sparse.card import render_model_card

    accepted = set(inspect.signature(write_model_card).parameters) | set(inspect.signature(render_model_card).parameters)
    flags = {"images": "--no-images", "repo_id": "--repo-id", "dataset_name": "--dataset-name", "redact": "--redact"}
    missing = [flags.get(k, k) for k in options if k not in accepted]
    if missing:
        from .errors import UsageError

        raise UsageError(f"this version of hf_sparse.card does not support {', '.join(missing)}; update hf_sparse")


def run_card(args) -> int:
    from .errors import CLIError, UsageError
    from .models import load_checkpoint, require_checkpoint
    from .paths import looks_local, prepare_output_dir

    try:
        from hf_sparse.card import write_model_card
    except ImportError as err:
        raise CLIError(f"this version of hf_sparse has no card module ({err}); update hf_sparse") from err
    output = args.output
    if output is None:
        if not looks_local(args.model_dir):
            raise UsageError(f"MODEL_DIR {args.model_dir} is a Hub id: give --output DIR for the card")
        output = args.model_dir
    options = card_options(args)
    _check_supported(write_model_card, options)
    require_checkpoint(args.model_dir)
    directory = prepare_output_dir(output, "--output")
    model, _ = load_checkpoint(args.model_dir)
    written = write_model_card(model, directory, **options)
    pictures = [name for name in written if name != "README.md"]
    extra = f" and {len(pictures)} picture(s)" if pictures else ""
    print(f"Wrote {directory / 'README.md'}{extra}.")
    return 0
