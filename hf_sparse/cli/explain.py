"""``hf-sparse explain``: why a saved model gives a text or an image its label, feature by feature.

Example:
    $ hf-sparse explain runs/sparse --text "a gorgeous, witty film" --html why.html
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import CLIError, UsageError

HELP = "explain a saved model's predictions for texts or an image"

DESCRIPTION = """\
Print the prediction for each input and every active feature's contribution to it (value x weight, with what
drives the feature). Inputs: a .txt file (one text per line), --text (repeatable), or an image file for image
models."""

EPILOG = """\
examples:
  hf-sparse explain runs/sparse --text "a gorgeous, witty film"
  hf-sparse explain runs/sparse reviews.txt --html explanations.html
  hf-sparse explain runs/sparse reviews.txt --json > explanations.json
  hf-sparse explain runs/sparse-vit cat.png"""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("explain", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model saved by `hf-sparse fit` (folder or Hub id)")
    p.add_argument("input", metavar="INPUT_FILE", nargs="?",
                   help=f"a text file (one text per line) or an image ({', '.join(IMAGE_SUFFIXES)})")
    p.add_argument("--text", action="append", metavar="TEXT", help="a text to explain (repeat for several)")
    p.add_argument("--target", metavar="LABEL",
                   help="explain this class (a label name or id) instead of the predicted one")
    p.add_argument("--html", metavar="FILE", help="also write the explanations as an HTML page to FILE")
    p.add_argument("--json", action="store_true", help="print the explanations as a JSON list instead of text")
    p.set_defaults(run=run_explain)
    return p


def read_inputs(args, modality: str) -> list:
    """The texts or the image to explain, checked against the model's modality."""
    if (args.input is None) == (not args.text):
        raise UsageError("give either INPUT_FILE or --text (not both)" if args.text else "give INPUT_FILE or --text TEXT")
    if args.text:
        if modality == "image":
            raise UsageError(f"{args.model_dir} is an image model: give an image file instead of --text")
        return list(args.text)
    path = Path(args.input).expanduser()
    if not path.is_file():
        raise CLIError(f"INPUT_FILE {args.input}: no such file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if modality != "image":
            raise CLIError(f"{args.model_dir} is a text model: give a text file (one text per line) or --text, not an image")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                return [image.convert("RGB")]
        except (UnidentifiedImageError, OSError) as err:
            raise CLIError(f"INPUT_FILE {args.input} is not a readable image: {err}") from err
    if modality == "image":
        raise CLIError(f"{args.model_dir} is an image model: give an image file ({', '.join(IMAGE_SUFFIXES)})")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as err:
        raise CLIError(f"INPUT_FILE {args.input} is not UTF-8 text (for images use {', '.join(IMAGE_SUFFIXES)})") from err
    texts = [line for line in lines if line]
    if not texts:
        raise CLIError(f"INPUT_FILE {args.input} has no text (one text per line)")
    return texts


def html_page(explanations) -> str:
    """One HTML page holding every explanation's fragment."""
    body = "\n<hr>\n".join(e.to_html() for e in explanations)
    return ("<!doctype html>\n<html><head><meta charset='utf-8'><title>hf_sparse explanations</title></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def run_explain(args) -> int:
    from .models import load_checkpoint, modality_of, require_checkpoint
    from .paths import check_output_file

    if args.html:
        check_output_file(args.html, "--html")
    config = require_checkpoint(args.model_dir)
    inputs = read_inputs(args, modality_of(config))
    model, _ = load_checkpoint(args.model_dir)
    if not hasattr(model, "explain"):
        raise CLIError("this version of hf_sparse has no model.explain; update hf_sparse")
    target = int(args.target) if args.target is not None and args.target.isdigit() else args.target
    result = model.explain(inputs, target=target)
    explanations = result if isinstance(result, list) else [result]
    if args.json:
        print(json.dumps([e.to_dict() for e in explanations], indent=2, default=str))
    else:
        print("\n\n".join(str(e) for e in explanations))
    if args.html:
        Path(args.html).expanduser().write_text(html_page(explanations), encoding="utf-8")
    return 0
