"""The files a checkpoint carries beside its weights, as a registry each layer adds to.

`save_pretrained` writes the config, the weights and the processor files itself; every other file comes from a
registered `Artifact`: the explain layer registers the feature descriptions, the audit layer the recorded audit
reports, the card layer the model card. `from_pretrained` hands each artifact the checked files of the manifest so
it can attach what it saved. The model layer never imports the layers above it: they register themselves when
they are imported (the public classes in `hf_sparse.models` import them all).

Example:
    >>> from hf_sparse.modeling.artifacts import Artifact, register_artifact
    >>> def save_notes(model, directory, options):
    ...     (directory / "notes.json").write_text("{}"); return ["notes.json"]
    >>> register_artifact(Artifact("notes", files=("notes.json",), save=save_notes))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _nothing(*args) -> None:
    return None


@dataclass(frozen=True)
class Artifact:
    """One kind of file saved beside the weights.

    - `name`: the registry key (registering the same name again replaces the entry);
    - `files`: the names it owns; an older checkpoint's copies are dropped before saving (so a model without
      descriptions does not keep a stale `feature_descriptions.json`);
    - `save(model, directory, options) -> list[str]`: writes into `directory` (the temporary folder of the save)
      and returns the relative names written; `options` are `save_pretrained`'s keywords (`head_only`,
      `model_card`, `card_kwargs`);
    - `load(model, local_files)`: attaches what was saved; `local_files` maps each file name listed in the
      manifest to its local path;
    - `saved(model, directory)`: called with the final folder once it is in place;
    - `checked`: listed in the sha256 manifest (`.json` / `.safetensors` files only) and written before it;
      unchecked artifacts (the model card) are written after the manifest.
    """

    name: str
    files: tuple[str, ...] = ()
    save: Callable[[Any, Path, dict], list[str]] = lambda model, directory, options: []
    load: Callable[[Any, dict[str, str]], None] = _nothing
    saved: Callable[[Any, Path], None] = _nothing
    checked: bool = True


_REGISTRY: dict[str, Artifact] = {}


def register_artifact(artifact: Artifact) -> Artifact:
    """Add `artifact` to the files every checkpoint saves and loads (idempotent by name); returns it."""
    _REGISTRY[artifact.name] = artifact
    return artifact


def unregister_artifact(name: str) -> Artifact | None:
    """Remove the artifact called `name` (None when there is none); returns it."""
    return _REGISTRY.pop(name, None)


def artifacts(checked: bool | None = None) -> list[Artifact]:
    """The registered artifacts in registration order (only the checked or unchecked ones when `checked` is given)."""
    return [a for a in _REGISTRY.values() if checked is None or a.checked == checked]


def artifact_files() -> tuple[str, ...]:
    """Every file name the registered artifacts own."""
    return tuple(name for a in _REGISTRY.values() for name in a.files)


def save_artifacts(model, directory: Path, options: dict, *, checked: bool) -> list[str]:
    """Run the `save` of each checked (or unchecked) artifact; returns the names written."""
    written: list[str] = []
    for artifact in artifacts(checked):
        written += artifact.save(model, directory, options)
    return written


def load_artifacts(model, local_files: dict[str, str]) -> None:
    """Let each artifact attach its files of a checked checkpoint to `model`."""
    for artifact in artifacts():
        artifact.load(model, local_files)


def artifacts_saved(model, directory: Path) -> None:
    """Tell each artifact the final folder of a save."""
    for artifact in artifacts():
        artifact.saved(model, directory)
