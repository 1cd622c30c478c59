"""Which model class a command needs, and loading models by path or Hub id with one-line errors.

`fit` reads the config first (cheap) to choose between text and image before loading any weights; the other
commands load a saved hf_sparse checkpoint.

Example:
    >>> config = read_config("my-classifier", "MODEL")
    >>> cls = model_class(modality_of(config))
    >>> model, head_only = load_checkpoint("runs/sst2-sparse", "MODEL_DIR")
"""

from __future__ import annotations

import json
from pathlib import Path

from hf_sparse.constants import KIND_HEAD_ONLY, MANIFEST_NAME, MODEL_TYPE

from .errors import CLIError, describe
from .paths import looks_local

#: Where a config's architecture names its task.
_IMAGE_ARCH, _TEXT_ARCH = "ForImageClassification", "ForSequenceClassification"
#: Config attributes only vision models have.
_VISION_ATTRIBUTES = ("num_channels", "image_size")


def read_config(model: str, what: str, *, trust_remote_code: bool = False):
    """`AutoConfig` of a folder or Hub id (an hf_sparse checkpoint gives its `SparseHeadConfig`)."""
    from transformers import AutoConfig  # hf_sparse is imported, so AutoConfig knows SparseHeadConfig

    if looks_local(model):
        path = Path(model).expanduser()
        if not path.exists():
            raise CLIError(f"{what} {model}: no such folder (give a model folder or a Hub id such as owner/name)")
        if not path.is_dir():
            raise CLIError(f"{what} {model} is a file; give the model's folder (with config.json) or a Hub id")
        if not (path / "config.json").is_file():
            raise CLIError(f"{what} {model} has no config.json: is it a transformers model folder?")
        model = str(path)
    kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    try:
        return AutoConfig.from_pretrained(model, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        if not looks_local(model) and hub_offline():
            raise CLIError(
                f"{what} {model!r} is not a local folder, and it cannot be downloaded in offline mode (HF_HUB_OFFLINE "
                "is set) nor found in the cache: give a model folder, or unset HF_HUB_OFFLINE"
            ) from err
        raise CLIError(f"cannot load the model {model!r}: {describe(err)}") from err


def hub_offline() -> bool:
    from huggingface_hub import constants

    check = getattr(constants, "is_offline_mode", None)
    return bool(check()) if callable(check) else bool(constants.HF_HUB_OFFLINE)


def resolve(model: str) -> str:
    """A local path with ``~`` expanded; a Hub id as it is."""
    return str(Path(model).expanduser()) if looks_local(model) else model


def is_sparse_config(config) -> bool:
    return getattr(config, "model_type", None) == MODEL_TYPE


def is_bare_encoder(config) -> bool:
    """Whether a (non-hf_sparse) config describes an encoder with no task head: its architectures, if it names any,
    are all base models such as ``BertModel`` / ``ViTModel`` (no ``For...`` task class)."""
    if is_sparse_config(config):
        return False
    architectures = getattr(config, "architectures", None) or []
    return bool(architectures) and all("For" not in name for name in architectures)


def modality_of(config, image_hint: bool = False) -> str:
    """``"image"`` or ``"text"``: from an hf_sparse config's modality, else the architecture name, else the
    presence of vision-only config attributes; `image_hint` (``--image-column`` given) settles the rest."""
    if is_sparse_config(config) and config.modality:
        return config.modality
    architectures = getattr(config, "architectures", None) or []
    if any(_IMAGE_ARCH in name for name in architectures):
        return "image"
    if any(_TEXT_ARCH in name for name in architectures):
        return "text"
    if image_hint or any(hasattr(config, name) for name in _VISION_ATTRIBUTES):
        return "image"
    return "text"


def model_class(modality: str):
    from hf_sparse import SparseHeadForImageClassification, SparseHeadForSequenceClassification

    return SparseHeadForImageClassification if modality == "image" else SparseHeadForSequenceClassification


def is_head_only(model_dir: str) -> bool:
    """Whether the checkpoint folder holds only the head (so that re-saving it keeps it that way)."""
    manifest = Path(model_dir).expanduser() / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("kind") == KIND_HEAD_ONLY
    except (OSError, ValueError):
        return False


def require_checkpoint(model_dir: str, what: str = "MODEL_DIR"):
    """The `SparseHeadConfig` of a saved hf_sparse model, or a `CLIError` saying what `model_dir` is instead."""
    config = read_config(model_dir, what)
    if not is_sparse_config(config):
        raise CLIError(
            f"{what} {model_dir} is a {getattr(config, 'model_type', 'transformers')} model, not an hf_sparse "
            f"checkpoint: fit its sparse head first (hf-sparse fit {model_dir} DATASET --output DIR ...)"
        )
    return config


def load_checkpoint(model_dir: str, what: str = "MODEL_DIR"):
    """Load a saved hf_sparse model (folder or Hub id); returns ``(model, head_only)``."""
    config = require_checkpoint(model_dir, what)
    cls = model_class(modality_of(config))
    path = resolve(model_dir)
    model = cls.from_pretrained(path)
    return model, is_head_only(path)


def update_saved_checkpoint(directory, write_hashed, write_card, *, what: str, instead: str) -> list[str]:
    """Rewrite some files of the saved checkpoint folder `directory` without saving the model again, atomically
    (`atomic_folder`: the files not written again, the weights among them, are carried over as hard links, so a
    crash leaves the old folder or the new one). `write_hashed(tmp)` writes files the manifest lists and returns
    their names (their sha256 goes into the manifest); `write_card(tmp)` then writes the model card, which the
    manifest does not list. A manifest that cannot be read is a CLIError: "cannot {what} in DIR ...; {instead}".
    Returns the names written.

    Example:
        >>> update_saved_checkpoint(path, lambda tmp: save_audit(tmp), lambda tmp: write_card(tmp),
        ...                         what="record the audit", instead="give --save-model to save the whole model")
        ['audit.json', 'hf_sparse_manifest.json', 'README.md']
    """
    from hf_sparse.constants import MODEL_CARD_NAME
    from hf_sparse.modeling.atomic import atomic_folder
    from hf_sparse.utils import file_sha256

    directory = Path(directory).expanduser()
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CLIError(f"cannot {what} in {directory}: its {MANIFEST_NAME} cannot be read ({err}); {instead}") from err
    with atomic_folder(directory, seed=(MODEL_CARD_NAME,)) as tmp:
        written = list(write_hashed(tmp))
        if written:
            for name in written:
                files[name] = file_sha256(tmp / name)
            text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
            (tmp / MANIFEST_NAME).write_text(text, encoding="utf-8")
            written.append(MANIFEST_NAME)
        written += write_card(tmp)
    return written
