"""Saving: `save_pretrained` (full or head-only, atomic, with a sha256 manifest) and `push_to_hub`, as a mixin of the
model class. The files other layers keep beside the weights come from `hf_sparse.modeling.artifacts`.

Example:
    >>> model.save_pretrained("out")                       # whole model
    >>> model.save_pretrained("out-head", head_only=True)  # a few KB + pointer to the base model
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .. import __version__
from ..constants import (
    CONFIG_NAME,
    HEAD_WEIGHTS_NAME,
    KIND_FULL,
    KIND_HEAD_ONLY,
    MANIFEST_NAME,
    MODEL_CARD_NAME,
    WEIGHTS_NAME,
)
from .artifacts import artifact_files, artifacts_saved, save_artifacts
from .atomic import atomic_folder
from .configuration import SparseHeadConfig
from .loading import FEATURE_BUFFERS
from .remote_code import REMOTE_CODE_FILES, save_config, write_remote_code
from .saving import base_fingerprint, base_tensors, save_tensors, saved_processor_files, write_manifest

logger = logging.getLogger(__name__)

#: `save_pretrained` keywords passed on to `push_to_hub` when `push_to_hub=True`.
_PUSH_KWARGS = ("repo_id", "commit_message", "commit_description", "private", "token", "revision", "create_pr", "tags")


class SavingMixin:
    """`save_pretrained` and `push_to_hub` (mixed into `SparseHeadPreTrainedModel`)."""

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        head_only: bool = False,
        is_main_process: bool = True,
        save_processor: bool = True,
        model_card: bool = True,
        card_kwargs: dict | None = None,
        push_to_hub: bool = False,
        **kwargs,
    ) -> list[str]:
        """Save the model (`config.json`, `model.safetensors`) or, with `head_only=True`, only the head
        (`config.json`, `sparse_head.safetensors`) and a pointer to the base model, like a peft adapter. A sha256
        manifest of these files is written too; the tokenizer / image processor is saved alongside when known; the
        feature descriptions and recorded audits (`feature_descriptions.json`, `audit.json`) and, unless
        `model_card=False`, the model card (README.md, updated in place if present, with its pictures; `card_kwargs`
        go to `hf_sparse.card.write_model_card`); `auto_map` and the remote-code files `configuration_hf_sparse.py` /
        `modeling_hf_sparse.py` (`hf_sparse.modeling.remote_code`). Returns the files written.

        With `push_to_hub=True` the folder is written, then the model is pushed with `push_to_hub` to `repo_id`
        (default: the folder's name); `commit_message`, `private`, `token`, `revision`, `create_pr`, `tags`, ...
        go to `push_to_hub`.

        The folder is written atomically: into a temporary folder beside it that then replaces it in one rename, so
        a crash leaves the old checkpoint or the new one; the folder's other files are kept (an older checkpoint's
        weights, manifest, descriptions and audits are replaced). A `ValueError` refuses the folder of the base model
        this head was built on and a folder holding another model's config.json.

        Example:
            ```python
            >>> model.save_pretrained("out")                       # whole model
            >>> model.save_pretrained("out-head", head_only=True)  # a few KB + pointer to the base model
            >>> model.save_pretrained("sst2-sparse", push_to_hub=True, repo_id="user/sst2-sparse", tags=["sst2"])
            ```
        """
        push_kwargs = {k: kwargs.pop(k) for k in _PUSH_KWARGS if k in kwargs}
        if push_kwargs and not push_to_hub:
            raise TypeError(f"save_pretrained got {sorted(push_kwargs)}, which are used only with push_to_hub=True")
        for key in ("max_shard_size", "safe_serialization", "state_dict", "variant", "save_peft_format"):
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"save_pretrained got unexpected arguments {sorted(kwargs)}")
        if not is_main_process:
            return []
        directory = Path(save_directory).expanduser()
        if directory.is_file():
            raise ValueError(f"{directory} is a file; save_pretrained needs a folder")
        self._check_save_target(directory)
        self.sparse_head.check()
        stale = (WEIGHTS_NAME, HEAD_WEIGHTS_NAME, MANIFEST_NAME, *REMOTE_CODE_FILES, *artifact_files())
        options = {"head_only": head_only, "model_card": model_card, "card_kwargs": card_kwargs}
        # Written into a temporary folder that then replaces `directory` in one rename: a crash leaves the old
        # checkpoint or the new one. The folder's other files (a README.md's own text, the user's files) are kept.
        with atomic_folder(directory, drop=stale, seed=(MODEL_CARD_NAME,)) as tmp:
            written = self._save_files(tmp, head_only, save_processor, options)
        artifacts_saved(self, directory)
        if push_to_hub:  # as transformers does: the folder is written first, then the model is pushed
            repo_id = push_kwargs.pop("repo_id", None) or directory.resolve().name
            self.push_to_hub(repo_id, head_only=head_only, card_kwargs=card_kwargs, **push_kwargs)
        return [str(directory / name) for name in written]

    def _check_save_target(self, directory: Path) -> None:
        """Refuse to save over the base model this head was built on, or over a folder holding another model."""
        base = self.config.base_model_name_or_path
        if base and directory.is_dir() and os.path.isdir(str(base)) and os.path.samefile(str(base), directory):
            raise ValueError(
                f"{directory} is the folder of the model this sparse head was built on ({base}): saving there would "
                "overwrite it. Save to another folder."
            )
        config_file = directory / CONFIG_NAME
        if config_file.is_file():
            try:
                with open(config_file, encoding="utf-8") as f:
                    model_type = json.load(f).get("model_type")
            except (OSError, ValueError, AttributeError):
                model_type = None
            if model_type != SparseHeadConfig.model_type:
                raise ValueError(
                    f"{directory} holds another model ({CONFIG_NAME} of model_type {model_type!r}, not an hf_sparse "
                    "checkpoint): saving there would overwrite it. Save to a new or empty folder (or delete that "
                    "model first)."
                )

    def _save_files(self, directory: Path, head_only, save_processor, options: dict) -> list[str]:
        """Write the checkpoint's files into `directory` (an empty folder); returns their relative names."""
        config = self.config
        config.architectures = [type(self).__name__]
        config.head_nnz = self.sparse_head.nnz
        config.dtype = self.model.dtype
        config.hf_sparse_version = __version__
        if head_only:
            if not config.base_model_name_or_path:
                logger.warning(
                    "Saving a head-only checkpoint without base_model_name_or_path: pass base_model= when loading it."
                )
            weights_name, kind = HEAD_WEIGHTS_NAME, KIND_HEAD_ONLY
            prefix = f"model.{config.head_module}."
            tensors = {prefix + k: v for k, v in self.sparse_head.state_dict().items()}
            tensors.update({name: self.get_buffer(name) for name in FEATURE_BUFFERS})
        else:
            weights_name, kind = WEIGHTS_NAME, KIND_FULL
            tensors = self.state_dict()
        save_tensors(tensors, directory / weights_name, metadata={"hf_sparse_kind": kind})
        save_config(config, directory)  # with `auto_map`, for loading with trust_remote_code=True
        written = [CONFIG_NAME, weights_name, *write_remote_code(directory)]
        written += save_artifacts(self, directory, options, checked=True)
        checked = [n for n in written if n.endswith((".json", ".safetensors")) or n in REMOTE_CODE_FILES]
        if save_processor:  # before the manifest, which lists (and so checks) the tokenizer / image processor files
            processor = self._processor_for_saving()
            if processor is not None:
                saved = [n for n in saved_processor_files(directory, processor.save_pretrained(directory))
                         if n not in written]
                written += saved
                checked += saved
        extra = None
        if head_only:  # the whole base model's fingerprint, checked when the head is loaded onto a base again
            extra = {"base_model": base_fingerprint(base_tensors(self.model, config.head_module, self.dense_head))}
        write_manifest(directory, kind, checked, extra=extra)
        written.append(MANIFEST_NAME)
        written += save_artifacts(self, directory, options, checked=False)  # the model card, after the manifest
        return written

    def _processor_for_saving(self):
        return self.processor

    def push_to_hub(self, repo_id: str, *, head_only: bool = False, **kwargs):
        """Upload the model (or, with `head_only=True`, just the head) with a model card. See `hf_sparse.modeling.hub`.

        Example:
            ```python
            >>> model.push_to_hub("user/sst2-minilm-sparse", private=True)
            ```
        """
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, head_only=head_only, **kwargs)

