"""Checkpoint files: safetensors + JSON only, with a sha256 manifest checked on load. Nothing is unpickled.

The folder itself is written atomically by `hf_sparse.modeling.atomic.atomic_folder`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..constants import (
    CONFIG_NAME,
    HEAD_WEIGHTS_NAME,
    KIND_FULL,
    KIND_HEAD_ONLY,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    WEIGHTS_NAME,
)
from ..utils import file_sha256
from .atomic import current_umask


class CheckpointError(OSError):
    """An hf_sparse checkpoint is missing a file, was modified after saving, or is malformed."""


def save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Save tensors as safetensors (contiguous CPU copies; storage shared between tensors is split)."""
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        v = v.detach().to("cpu").contiguous()
        if v.numel() and v.data_ptr() in seen:
            v = v.clone()
        if v.numel():
            seen.add(v.data_ptr())
        out[k] = v
    save_file(out, str(path), metadata={"format": "pt", **(metadata or {})})
    # safetensors writes through a private temporary file (mode 0600): give the file the mode of any other file of
    # the save (0666 less the umask), so a checkpoint shared with a group or served can be read like its config.json
    os.chmod(path, 0o666 & ~current_umask())



def write_manifest(directory: str | os.PathLike, kind: str, files: list[str], extra: dict | None = None) -> dict:
    """Write `hf_sparse_manifest.json` with the sha256 of each of `files` (relative to `directory`)."""
    from .. import __version__

    directory = Path(directory)
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "kind": kind,
        "hf_sparse_version": __version__,
        "files": {name: file_sha256(directory / name) for name in files},
        **(extra or {}),
    }
    with open(directory / MANIFEST_NAME, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return manifest


#: Files a tokenizer, image processor or processor may write into a checkpoint. Those saved with the model are listed
#: in the manifest (and so checked on load); one found in a local checkpoint but not listed gets a warning.
PROCESSOR_FILE_NAMES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "bpe.codes",
    "preprocessor_config.json", "image_processor_config.json", "processor_config.json", "chat_template.jinja",
    "chat_template.json",
)


def saved_processor_files(directory: str | os.PathLike, returned) -> list[str]:
    """Names (relative to `directory`) of the files a processor's `save_pretrained` wrote: the paths it returned
    that lie in `directory`, else the `PROCESSOR_FILE_NAMES` present there.

    Example:
        >>> saved_processor_files("out", tokenizer.save_pretrained("out"))
        ['tokenizer.json', 'tokenizer_config.json']
    """
    directory = Path(directory).resolve()
    names: set[str] = set()
    if isinstance(returned, (list, tuple)):
        for item in returned:
            if not isinstance(item, (str, os.PathLike)):
                continue
            path = Path(item) if Path(item).is_absolute() else directory / item
            try:
                relative = path.resolve().relative_to(directory)
            except ValueError:
                continue
            if path.is_file():
                names.add(relative.as_posix())
    if not names:
        names = {name for name in PROCESSOR_FILE_NAMES if (directory / name).is_file()}
    return sorted(names - {CONFIG_NAME, WEIGHTS_NAME, HEAD_WEIGHTS_NAME, MANIFEST_NAME})


# ------------------------------------------------------------------------------------------ base model fingerprint
#: The types the base model's weights are hashed in: the fingerprint can be checked against a base loaded in any of
#: them when the head was fit on a float32 base (a cast to a lower precision rounds the same way every time).
_FINGERPRINT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def base_tensors(model: torch.nn.Module, head_module: str, head: torch.nn.Linear) -> dict[str, torch.Tensor]:
    """The tensors that make a base model: its state dict, with the dense final layer `head` in place of whatever
    sits at `head_module` (a sparse head while fitted, the checkpoint's own layer when loaded; no bias = zeros)."""
    prefix = f"{head_module}."
    tensors = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    tensors[prefix + "weight"] = head.weight
    tensors[prefix + "bias"] = head.bias if head.bias is not None else torch.zeros(head.out_features, dtype=head.weight.dtype)
    return tensors


def _floating_dtype(tensors: dict[str, torch.Tensor]) -> str:
    """The floating dtype holding the most weights."""
    sizes: dict[torch.dtype, int] = {}
    for t in tensors.values():
        if t.is_floating_point():
            sizes[t.dtype] = sizes.get(t.dtype, 0) + t.numel()
    dtype = max(sizes, key=sizes.get) if sizes else torch.float32
    return str(dtype).replace("torch.", "")


def _hash_base(tensors: dict[str, torch.Tensor], dtypes: list[str]) -> dict[str, str]:
    """sha256 per dtype of `tensors` (sorted by name; floating ones cast to that dtype, the others as they are)."""
    hashes = {name: hashlib.sha256() for name in dtypes}
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        if tensor.device.type == "meta":
            raise CheckpointError(f"the base model's tensor {name!r} is not loaded (meta device); it cannot be checked.")
        flat = tensor.to("cpu").reshape(-1)
        for dtype_name, h in hashes.items():
            value = flat.to(_FINGERPRINT_DTYPES[dtype_name]) if flat.is_floating_point() else flat
            h.update(f"{name}|{tuple(tensor.shape)}|{value.dtype}|".encode())
            if value.numel():
                h.update(value.contiguous().view(torch.uint8).numpy().data)
    return {name: h.hexdigest() for name, h in hashes.items()}


def base_fingerprint(tensors: dict[str, torch.Tensor]) -> dict:
    """A fingerprint of a whole base model (`base_tensors`): the sha256 of all its tensors, in float32, bfloat16 and
    float16, and its dtype. A head-only checkpoint records it in its manifest, and loading checks the base model
    against it (`check_base_fingerprint`).

    Example:
        >>> fp = base_fingerprint(base_tensors(model.model, "classifier", model.dense_head)); fp["dtype"]
        'float32'
    """
    return {"algorithm": "sha256", "dtype": _floating_dtype(tensors), "tensors": len(tensors),
            "sha256": _hash_base(tensors, list(_FINGERPRINT_DTYPES))}


def fingerprint_difference(tensors: dict[str, torch.Tensor], recorded) -> dict | None:
    """How `tensors` differ from a recorded `base_fingerprint`, or None when they are the same: {"kind": "malformed" |
    "dtype" | "count" | "weights", with what each message needs ("saved" / "loaded" dtypes, "tensors", "digest",
    "recorded" digest and "target" dtype)}.

    The weights are compared in the lower precision of the two dtypes (float32 against bfloat16: in bfloat16), so
    tensors loaded with another `dtype=` than the recorded one still compare exactly; bfloat16 against float16
    cannot be compared ("dtype").

    Example:
        >>> fingerprint_difference(base_tensors(base, "classifier", base.classifier), manifest["base_model"])
    """
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), dict):
        return {"kind": "malformed", "recorded": str(recorded)[:80]}
    saved, loaded = recorded.get("dtype"), _floating_dtype(tensors)
    target = "float32" if saved == loaded else next(
        (t for t in ("bfloat16", "float16") if {saved, loaded} <= {"float32", t}), None)
    if target is None or target not in recorded["sha256"]:
        return {"kind": "dtype", "saved": saved, "loaded": loaded}
    if len(tensors) != recorded.get("tensors"):
        return {"kind": "count", "tensors": len(tensors), "recorded": recorded.get("tensors")}
    digest = _hash_base(tensors, [target])[target]
    if digest != recorded["sha256"][target]:
        return {"kind": "weights", "tensors": len(tensors), "target": target, "digest": digest[:12],
                "recorded": recorded["sha256"][target][:12]}
    return None


def check_base_fingerprint(tensors: dict[str, torch.Tensor], recorded: dict) -> str | None:
    """What differs between a loaded base model's `base_tensors` and the `base_fingerprint` recorded at saving, or
    None when they are the same (compared as `fingerprint_difference` does).

    Example:
        >>> check_base_fingerprint(base_tensors(base, "classifier", base.classifier), manifest["base_model"])
    """
    diff = fingerprint_difference(tensors, recorded)
    if diff is None:
        return None
    kind = diff["kind"]
    if kind == "malformed":
        return f"its recorded fingerprint is malformed ({diff['recorded']})"
    if kind == "dtype":
        return (f"its weights are {diff['loaded']} but the head was fit on a {diff['saved']} base, and weights cannot "
                f"be compared across these two types: load it with dtype=torch.{diff['saved']}")
    if kind == "count":
        return f"it has {diff['tensors']} tensors instead of {diff['recorded']}"
    return (f"its weights differ from the ones the head was fit on (sha256 of all its {diff['tensors']} tensors, in "
            f"{diff['target']}: {diff['digest']}... instead of {diff['recorded']}...)")


def resolve_file(path_or_repo: str, filename: str, hub_kwargs: dict, required: bool = True) -> str | None:
    """Local path of `filename` in a folder or Hub repo (downloaded to the cache if needed)."""
    local = Path(str(path_or_repo)) / hub_kwargs.get("subfolder", "") / filename
    if Path(str(path_or_repo)).is_dir():
        if local.is_file():
            return str(local)
        if required:
            raise CheckpointError(f"The hf_sparse checkpoint at {path_or_repo} is missing {filename!r}.")
        return None
    from transformers.utils import cached_file

    try:
        return cached_file(
            str(path_or_repo),
            filename,
            _raise_exceptions_for_missing_entries=required,
            _raise_exceptions_for_connection_errors=required,
            **hub_kwargs,
        )
    except OSError as err:
        if required:
            raise CheckpointError(f"Could not get {filename!r} of the hf_sparse checkpoint {path_or_repo}: {err}") from err
        return None


def load_pointed_base(config, base_model, hub_kwargs: dict, load, *, needs: str, passing: str, loaded: str):
    """The base model a head-only checkpoint points to, loaded by `load(path, kwargs)`: `base_model` when it is a
    path, else the config's `base_model_name_or_path` at its recorded revision; a missing pointer or a failed load
    raises a `CheckpointError` saying what to pass (`needs`: what the head needs, e.g. "encoder"; `passing`: how the
    message names `base_model=`; `loaded`: what a loaded `base_model=` is)."""
    base_path = str(base_model) if base_model is not None else config.base_model_name_or_path
    if not base_path:
        raise CheckpointError(
            f"This head-only checkpoint has no base_model_name_or_path; pass base_model={passing} to from_pretrained."
        )
    revision = None if base_model is not None else config.base_model_revision
    base_kwargs = {k: v for k, v in hub_kwargs.items() if k not in ("revision", "subfolder")}
    if revision:
        base_kwargs["revision"] = revision
    try:
        return load(base_path, base_kwargs)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"This head-only checkpoint needs its {needs} {base_path!r}"
            f"{f' (revision {revision})' if revision else ''}, which could not be loaded: {err}. "
            f"Pass base_model= (a loaded {loaded} or a path) to from_pretrained."
        ) from err


def read_manifest(path_or_repo: str, hub_kwargs: dict) -> dict:
    """Load and check the manifest and every file it lists (sha256). Returns the manifest with `local_files`."""
    manifest_path = resolve_file(path_or_repo, MANIFEST_NAME, hub_kwargs, required=False)
    if manifest_path is None:
        raise CheckpointError(
            f"{path_or_repo} has an hf_sparse config.json but no {MANIFEST_NAME}: the checkpoint is incomplete. "
            "Save it again with `model.save_pretrained(...)`."
        )
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{MANIFEST_NAME} of {path_or_repo} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{MANIFEST_NAME} of {path_or_repo} is not an hf_sparse manifest.")
    if manifest.get("format_version", 0) > MANIFEST_VERSION:
        raise CheckpointError(
            f"{path_or_repo} was saved by a newer hf_sparse (manifest format {manifest['format_version']}); upgrade hf_sparse."
        )
    kind = manifest.get("kind")
    weights = {KIND_FULL: WEIGHTS_NAME, KIND_HEAD_ONLY: HEAD_WEIGHTS_NAME}.get(kind)
    if weights is None:
        raise CheckpointError(f"{MANIFEST_NAME} of {path_or_repo} has unknown kind {kind!r}.")
    for required in (CONFIG_NAME, weights):
        if required not in manifest["files"]:
            raise CheckpointError(f"{MANIFEST_NAME} of {path_or_repo} does not list {required!r}.")
    local = {}
    for name, digest in manifest["files"].items():
        if os.path.isabs(name) or ".." in Path(name).parts:
            raise CheckpointError(f"{MANIFEST_NAME} of {path_or_repo} lists an unsafe path {name!r}.")
        file_path = resolve_file(path_or_repo, name, hub_kwargs, required=True)
        actual = file_sha256(file_path)
        if actual != digest:
            raise CheckpointError(
                f"{name!r} in {path_or_repo} does not match its checksum in {MANIFEST_NAME} (sha256 {actual[:12]}... "
                f"instead of {digest[:12]}...): the file was modified or corrupted after saving. Restore it or save "
                "the model again."
            )
        local[name] = file_path
    _warn_unlisted_processor_files(path_or_repo, hub_kwargs, manifest["files"])
    manifest["local_files"] = local
    manifest["weights_file"] = weights
    return manifest


def _warn_unlisted_processor_files(path_or_repo: str, hub_kwargs: dict, listed: dict) -> None:
    """Warn about tokenizer / image processor files of a local checkpoint that its manifest does not cover."""
    folder = Path(str(path_or_repo)) / hub_kwargs.get("subfolder", "")
    if not Path(str(path_or_repo)).is_dir():
        return
    unlisted = [name for name in PROCESSOR_FILE_NAMES if name not in listed and (folder / name).is_file()]
    if unlisted:
        warnings.warn(
            f"{unlisted} in {path_or_repo} are not covered by its {MANIFEST_NAME} (saved by an older hf_sparse, or "
            "added after saving): they are used without a checksum. Save the model again with its tokenizer / image "
            "processor (model.processor = ...; model.save_pretrained(...)) to cover them.",
            UserWarning, stacklevel=4,
        )


def load_tensors(path: str) -> dict[str, torch.Tensor]:
    """Load a safetensors file on CPU with a clear error if it is not one."""
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err
