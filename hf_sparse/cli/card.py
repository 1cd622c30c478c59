"""``hf-sparse card``: write or refresh a saved model's card (README.md and its pictures), and set its metadata.

Example:
    $ hf-sparse card runs/sparse --model-id me/sst2-sparse --license apache-2.0 --language en \\
        --base-model sentence-transformers/all-MiniLM-L6-v2 --dataset-id stanfordnlp/sst2
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write or refresh the model card (README.md) of a saved model, and set its metadata"

DESCRIPTION = """\
Render the model card of a saved model: what the sparse head is, sparse versus dense metrics, the features each
class rests on with what drives them, recorded audits, and pictures (the path, the class weights). An existing
README.md is updated in place: text outside the hf_sparse block is kept.

The card-data options (--model-id, --license, --language, --base-model, --dataset-id, --model-name, --eval-split,
--widget) set the card's metadata. When the card is written into MODEL_DIR itself they are also saved in its
config.json (card_data), so later refreshes (e.g. by `hf-sparse audit`) keep them."""

EPILOG = """\
examples:
  hf-sparse card runs/sparse
  hf-sparse card runs/sparse --license apache-2.0 --language en --dataset-id stanfordnlp/sst2 \\
      --base-model sentence-transformers/all-MiniLM-L6-v2 --model-id me/sst2-sparse
  hf-sparse card runs/sparse --output card-preview --redact --no-images"""

#: Card-data options: {argparse dest: SparseModelCardData field}.
CARD_DATA_FLAGS = {"license": "license", "language": "language", "base_model": "base_model",
                   "dataset_id": "datasets", "model_name": "model_name", "eval_split": "eval_split",
                   "widget": "widget"}
#: {SparseModelCardData field: the flag that sets it}, for error messages.
_FLAG_NAMES = {field: "--" + dest.replace("_", "-") for dest, field in CARD_DATA_FLAGS.items()} | {"model_id": "--model-id"}


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("card", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model saved by `hf-sparse fit` (folder or Hub id)")
    p.add_argument("--output", "-o", metavar="DIR", help="write the card into DIR (default: MODEL_DIR itself)")
    p.add_argument("--model-id", "--repo-id", dest="repo_id", metavar="OWNER/NAME",
                   help="this model's Hub repo id: the card's usage example loads it (--repo-id: the same)")
    p.add_argument("--dataset-name", metavar="NAME",
                   help="a name for the evaluation data in the card's model-index, when no --dataset-id is given")
    data = p.add_argument_group("card data (saved in MODEL_DIR's config.json when the card is written there)")
    data.add_argument("--license", metavar="ID", help="the license, as a Hub license id (e.g. apache-2.0, mit)")
    data.add_argument("--language", metavar="CODE", action="append",
                      help="a language of the data, as an ISO 639 code (e.g. en); repeat for several")
    data.add_argument("--base-model", metavar="OWNER/NAME",
                      help="the Hub id of the pretrained model this one was made from (e.g. "
                           "sentence-transformers/all-MiniLM-L6-v2); a local base model folder is shown by its name")
    data.add_argument("--dataset-id", metavar="OWNER/NAME", action="append",
                      help="the Hub id of a training dataset (e.g. stanfordnlp/sst2); repeat for several, the "
                           "first names the data of the model-index")
    data.add_argument("--model-name", metavar="TEXT", help="the card's title and model-index name")
    data.add_argument("--eval-split", metavar="NAME",
                      help="the dataset's name of the split the metrics were measured on (e.g. validation)")
    data.add_argument("--widget", metavar="TEXT", action="append",
                      help="an example input for the Hub's inference widget; repeat for several")
    p.add_argument("--no-images", action="store_true", help="no pictures: the card is text only")
    p.add_argument("--redact", action="store_true",
                   help="mask slurs and other offensive words in the example texts shown, and add a content note")
    p.set_defaults(run=run_card)
    return p


def card_options(args) -> dict:
    """Keyword arguments of `hf_sparse.card.write_model_card` for the options given (card data not included)."""
    options = {"redact": args.redact}
    if args.repo_id:
        options["repo_id"] = args.repo_id
    if args.dataset_name:
        options["dataset_name"] = args.dataset_name
    if args.no_images:
        options["images"] = False
    return options


def card_data_options(args) -> dict:
    """{SparseModelCardData field: value} for the card-data options given."""
    values = {field: getattr(args, dest, None) for dest, field in CARD_DATA_FLAGS.items()}
    values["model_id"] = getattr(args, "repo_id", None)
    return {k: v for k, v in values.items() if v is not None}


def _check_supported(write_model_card, options: dict) -> None:
    """A clear error where this hf_sparse's card writer lacks an option (instead of a TypeError)."""
    import inspect

    from hf_sparse.card import render_model_card

    accepted = set(inspect.signature(write_model_card).parameters) | set(inspect.signature(render_model_card).parameters)
    flags = {"images": "--no-images", "repo_id": "--model-id", "dataset_name": "--dataset-name", "redact": "--redact"}
    missing = [flags.get(k, k) for k in options if k not in accepted]
    if missing:
        from .errors import UsageError

        raise UsageError(f"this version of hf_sparse.card does not support {', '.join(missing)}; update hf_sparse")


def set_card_data(model, values: dict) -> None:
    """Set `values` on `model.model_card_data` (kept in its config); a bad value is a `UsageError` naming the flag."""
    from .errors import UsageError

    for field, value in values.items():
        try:
            model.model_card_data.update(**{field: value})
        except (ValueError, TypeError) as err:
            raise UsageError(f"{_FLAG_NAMES.get(field, field)}: {err}") from None


def record_card_data(model, directory, options: dict) -> list[str]:
    """Save `model.config` (with its card data) into the saved model folder `directory`, update the config's sha256
    in the manifest and write the card, atomically (the other files are carried over); returns the files written."""
    from hf_sparse.card import write_model_card
    from hf_sparse.constants import CONFIG_NAME
    from hf_sparse.modeling.remote_code import save_config

    from .models import update_saved_checkpoint

    def write_config(tmp) -> list[str]:
        save_config(model.config, tmp)
        return [CONFIG_NAME]

    return update_saved_checkpoint(directory, write_config, lambda tmp: write_model_card(model, tmp, **options),
                                   what="save the card data", instead="give --output DIR to write the card alone")


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
    values = card_data_options(args)
    set_card_data(model, values)
    in_place = looks_local(args.model_dir) and directory.resolve() == Path(args.model_dir).expanduser().resolve()
    if values and in_place:
        written = record_card_data(model, directory, options)
        saved = " (card data saved in its config.json)"
    else:
        written = write_model_card(model, directory, **options)
        saved = " (card data in this card only: MODEL_DIR's config.json is unchanged)" if values else ""
    pictures = [name for name in written if name.endswith(".png")]
    extra = f" and {len(pictures)} picture(s)" if pictures else ""
    print(f"Wrote {directory / 'README.md'}{extra}{saved}.")
    return 0
