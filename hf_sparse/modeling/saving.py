"""Checkpoint files: safetensors + JSON only, with a sha256 manifest checked on load. Nothing is unpickled."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .constants import (
    CONFIG_NAME,
    HEAD_WEIGHTS_NAME,
    KIND_FULL,
    KIND_HEAD_ONLY,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    WEIGHTS_NAME,
)


class CheckpointError(OSError):
    """An hf_sparse checkpoint is missing a file, was modified after saving, or is malformed."""


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    manifest["local_files"] = local
    manifest["weights_file"] = weights
    return manifest


def load_tensors(path: str) -> dict[str, torch.Tensor]:
    """Load a safetensors file on CPU with a clear error if it is not one."""
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err
