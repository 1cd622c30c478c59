"""Loading: `from_pretrained` (a fine-tuned classifier or an hf_sparse checkpoint, full or head-only),
`from_base_model` (a loaded classifier) and `from_encoder` (a bare pretrained encoder), as a mixin of the model class.

Every checkpoint file is checked against its sha256 manifest; weights are read from safetensors only. The files
other layers save beside the weights (descriptions, audits) are read back by their `hf_sparse.modeling.artifacts`.

Example:
    >>> model = SparseHeadForSequenceClassification.from_pretrained("path/to/fine-tuned-classifier")
    >>> model = SparseHeadForSequenceClassification.from_pretrained("out")   # saved with save_pretrained
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedModel

from ..constants import CONFIG_NAME, HEAD_WEIGHTS_NAME, KIND_FULL, WEIGHTS_NAME
from .artifacts import load_artifacts
from .configuration import SparseHeadConfig
from .encoder_head import BASE_KIND_ENCODER, EncoderClassifier
from .encoder_loading import (
    _HUB_KWARGS,
    _INTERNAL_KWARGS,
    EncoderLoadingMixin,
    _is_sparse_checkpoint,
    _load_kwargs,
    _other_class,
    _resolved_revision,
    _unpickle_refusal,
)
from .saving import (
    CheckpointError,
    base_tensors,
    check_base_fingerprint,
    load_pointed_base,
    load_tensors,
    read_manifest,
)
from .wrap import SUPPORTED, UnsupportedModelError, base_model_class, find_head, tensor_sha256

logger = logging.getLogger(__name__)

#: The buffers a head-only checkpoint saves beside the head: the statistics its features were standardized with.
FEATURE_BUFFERS = ("feature_mean", "feature_std")


class LoadingMixin(EncoderLoadingMixin):
    """`from_pretrained`, `from_base_model` (and, from `EncoderLoadingMixin`, `from_encoder`) with the checks behind
    them; mixed into `SparseHeadPreTrainedModel`, which gives `modality`, `main_input_name` and `_base_auto_class`."""

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args,
        config: SparseHeadConfig | None = None,
        base_model: PreTrainedModel | str | None = None,
        dtype: torch.dtype | str | None = None,
        device_map: Any = None,
        allow_base_mismatch: bool = False,
        **kwargs,
    ):
        """Load a fine-tuned transformers classifier, or an hf_sparse checkpoint (full or head-only).

        From a classifier (hub id or folder, safetensors weights): the model keeps its encoder and every layer before
        the final `nn.Linear`, which becomes a sparse layer holding the dense weights until `fit_sparse_head`.
        From an hf_sparse checkpoint: every file is checked against the checkpoint's sha256 manifest; a head-only
        checkpoint loads its base model from the pointer in its config (`base_model_name_or_path` at
        `base_model_revision`), or from `base_model=` (a loaded model or another path). The base model is checked
        against the fingerprint of the whole base (all its tensors) recorded at saving: a different base raises
        `CheckpointError`, unless `allow_base_mismatch=True` (a warning; its predictions are not the fitted ones).

        Example:
            ```python
            >>> model = SparseHeadForSequenceClassification.from_pretrained("path/to/fine-tuned-classifier")
            >>> model = SparseHeadForSequenceClassification.from_pretrained("out")  # saved with save_pretrained
            ```
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes no positional arguments besides the path")
        for key in _INTERNAL_KWARGS:
            kwargs.pop(key, None)
        hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        if not kwargs.get("trust_remote_code"):  # remote code runs only on the caller's explicit request
            kwargs.pop("trust_remote_code", None)
        path = str(pretrained_model_name_or_path)
        if config is not None and not isinstance(config, SparseHeadConfig):
            # A base classifier's config given explicitly.
            return cls._from_base_classifier(path, config, dtype, device_map, hub_kwargs, kwargs)
        sparse_config = _is_sparse_checkpoint(path, hub_kwargs)
        if sparse_config is None:  # `attn_implementation` and the other keywords go to the base's from_pretrained
            return cls._from_base_classifier(path, None, dtype, device_map, hub_kwargs, kwargs)
        attn_implementation = kwargs.pop("attn_implementation", None)
        if kwargs:
            unknown = sorted(k for k in kwargs if not k.startswith("_") and k != "trust_remote_code")
            if unknown:
                logger.warning("Ignoring arguments not used when loading an hf_sparse checkpoint: %s", unknown)
        manifest = read_manifest(path, hub_kwargs)
        # The config is the checked file, not what a caller (e.g. an Auto class) may have parsed before.
        config = SparseHeadConfig.from_json_file(manifest["local_files"][CONFIG_NAME])
        config._name_or_path = path
        if config.modality and config.modality != cls.modality:
            raise ValueError(
                f"{path} holds a {config.modality} model; load it with "
                f"{_other_class(cls.modality)}."
            )
        tensors = load_tensors(manifest["local_files"][manifest["weights_file"]])
        if manifest["kind"] == KIND_FULL:
            model = cls._load_full(config, tensors, dtype)
            processor_path = path
        else:
            model = cls._load_head_only(config, tensors, base_model, dtype, device_map, hub_kwargs,
                                        base_fingerprint=manifest.get("base_model"),
                                        allow_base_mismatch=allow_base_mismatch)
            processor_path = path
        load_artifacts(model, manifest["local_files"])
        if attn_implementation is not None:
            model._use_attn_implementation(attn_implementation)
        model._trust_remote_code = bool(kwargs.get("trust_remote_code"))
        model._processor_source = (processor_path, hub_kwargs.get("revision"))
        model._fallback_processor_source = (
            (config.base_model_name_or_path, config.base_model_revision) if config.base_model_name_or_path else None
        )
        model._place(device_map)
        model.eval()
        return model

    @classmethod
    def _load_base(cls, path, base_config, dtype, device_map, hub_kwargs, kwargs):
        """Load a transformers classifier (safetensors only) and return it with its resolved revision."""

        auto = cls._base_auto_class
        if base_config is None:
            try:
                trust = {"trust_remote_code": True} if kwargs.get("trust_remote_code") else {}
                base_config = AutoConfig.from_pretrained(path, **hub_kwargs, **trust)
            except (OSError, ValueError) as err:
                raise OSError(
                    f"Could not load {path!r} as a transformers classifier or an hf_sparse checkpoint: {err}"
                ) from err
        try:
            klass = base_model_class(base_config, auto, cls.main_input_name)
        except UnsupportedModelError as err:
            other = _other_class(cls.modality)
            raise UnsupportedModelError(f"{path}: {err} (For {'image' if cls.modality == 'text' else 'text'} models use {other}.)") from err
        load_kwargs = _load_kwargs(hub_kwargs, kwargs, dtype, device_map)
        try:
            base, info = klass.from_pretrained(path, config=base_config, output_loading_info=True, **load_kwargs)
        except OSError as err:
            refusal = _unpickle_refusal(path, err, load_kwargs)
            if refusal is not None:
                raise refusal from err
            raise
        head_name = find_head(base)
        untrained = sorted(k for k in info.get("missing_keys", ()) if k.startswith(head_name.rpartition(".")[0] or head_name))
        if untrained:
            raise UnsupportedModelError(
                f"{path} has no trained classification head: {untrained} are not in the checkpoint, so "
                f"{klass.__name__} would start from random weights. hf_sparse needs a fine-tuned classifier "
                f"({SUPPORTED}); fine-tune the model first."
            )
        revision = _resolved_revision(path, hub_kwargs)
        return base, revision

    @classmethod
    def _from_base_classifier(cls, path, base_config, dtype, device_map, hub_kwargs, kwargs):
        base, revision = cls._load_base(path, base_config, dtype, device_map, hub_kwargs, kwargs)
        model = cls.from_base_model(base, name_or_path=path, revision=revision)
        model._trust_remote_code = bool(kwargs.get("trust_remote_code"))
        model._processor_source = (path, hub_kwargs.get("revision"))
        model.eval()
        return model

    @classmethod
    def from_base_model(cls, base_model: PreTrainedModel, *, name_or_path: str | None = None, revision: str | None = None):
        """Wrap an already loaded transformers classifier (its final `nn.Linear` is replaced in place).

        Example:
            ```python
            >>> clf = AutoModelForSequenceClassification.from_pretrained("my-classifier")
            >>> model = SparseHeadForSequenceClassification.from_base_model(clf, name_or_path="my-classifier")
            ```
        """
        if not isinstance(base_model, PreTrainedModel):
            raise UnsupportedModelError(
                f"{type(base_model).__name__} is not a transformers PreTrainedModel. Supported: {SUPPORTED}."
            )
        if isinstance(base_model, LoadingMixin):
            raise ValueError("base_model is already an hf_sparse model")
        head_name = find_head(base_model)
        name_or_path = name_or_path or getattr(base_model.config, "_name_or_path", None) or None
        config = SparseHeadConfig.from_base_model(
            base_model, head_module=head_name, modality=cls.modality, name_or_path=name_or_path, revision=revision
        )
        head = base_model.get_submodule(head_name)
        config.dense_head_sha256 = tensor_sha256(head.weight, head.bias)
        if isinstance(base_model, EncoderClassifier):
            if base_model.modality != cls.modality:
                raise ValueError(f"base_model is a {base_model.modality} encoder; wrap it with the {base_model.modality} class.")
            config.base_kind = BASE_KIND_ENCODER
            config.pooling = base_model.pooling
            config.base_architecture = type(base_model.encoder).__name__
        model = cls(config, base_model=base_model)
        if name_or_path and os.path.isdir(str(name_or_path)):
            model._processor_source = (str(name_or_path), None)
        return model

    @classmethod
    def _load_full(cls, config: SparseHeadConfig, tensors: dict[str, torch.Tensor], dtype):
        model = cls(config)
        if dtype not in (None, "auto"):
            model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        expected = set(model.state_dict().keys())
        got = set(tensors)
        missing, unexpected = sorted(expected - got), sorted(got - expected)
        if missing or unexpected:
            raise CheckpointError(
                f"{WEIGHTS_NAME} does not match the model built from config.json: missing {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}."
            )
        model.load_state_dict(tensors, strict=True)
        model.sparse_head.check()
        return model

    @classmethod
    def _load_head_only(cls, config, tensors, base_model, dtype, device_map, hub_kwargs, *, base_fingerprint=None,
                        allow_base_mismatch=False):
        base_name = str(base_model) if isinstance(base_model, (str, os.PathLike)) else (
            config.base_model_name_or_path if base_model is None else type(base_model).__name__)
        if config.base_kind == BASE_KIND_ENCODER:
            base_model = cls._encoder_base(config, base_model, dtype, device_map, hub_kwargs)
        if base_model is None or isinstance(base_model, (str, os.PathLike)):
            base_model, _ = load_pointed_base(
                config, base_model, hub_kwargs,
                lambda path, kwargs: cls._load_base(path, None, dtype, device_map, kwargs, {}),
                needs="base model", passing="", loaded="classifier")
        if not isinstance(base_model, PreTrainedModel):
            raise TypeError(f"base_model must be a transformers model or a path, got {type(base_model).__name__}")
        head_name = config.head_module or find_head(base_model)
        try:
            head = base_model.get_submodule(head_name)
        except AttributeError as err:
            raise CheckpointError(f"The base model {type(base_model).__name__} has no layer {head_name!r}.") from err
        if not isinstance(head, nn.Linear):
            raise CheckpointError(f"{type(base_model).__name__}.{head_name} is not an nn.Linear; is this the right base model?")
        problems = []
        if base_fingerprint is not None:  # the whole base, its final layer included, in a dtype-independent way
            problem = check_base_fingerprint(base_tensors(base_model, head_name, head), base_fingerprint)
            if problem is not None:
                problems.append(problem)
        else:
            digest = tensor_sha256(head.weight, head.bias)
            if config.dense_head_sha256 and digest != config.dense_head_sha256:
                problems.append(f"its final layer {head_name!r} differs (sha256 {digest[:12]}... instead of "
                                f"{config.dense_head_sha256[:12]}...)")
            warnings.warn(
                f"This head-only checkpoint records no fingerprint of its base model (saved by an older hf_sparse): only "
                f"the base's final layer {head_name!r} is checked. Save it again to record one.", UserWarning, stacklevel=4)
        if problems:
            message = (f"The base model {base_name!r} is not the one this head was fit on: "
                       f"{'; '.join(problems)}.")
            if not allow_base_mismatch:
                raise CheckpointError(
                    f"{message} Pass the right model as base_model=, or from_pretrained(..., allow_base_mismatch=True) "
                    "to load it anyway (its predictions will not be the ones the head was fit for)."
                )
            warnings.warn(f"{message} Loading it anyway (allow_base_mismatch=True): the head's predictions and "
                          "explanations are not the ones it was fit for.", UserWarning, stacklevel=4)
        model = cls(config, base_model=base_model)
        prefix = f"model.{head_name}."
        expected = {prefix + n for n in ("indices", "values", "bias")} | set(FEATURE_BUFFERS)
        if set(tensors) != expected:
            raise CheckpointError(
                f"{HEAD_WEIGHTS_NAME} holds {sorted(tensors)}; expected {sorted(expected)}."
            )
        head_state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        model.sparse_head.load_state_dict(head_state, strict=True)
        model.sparse_head.check()
        with torch.no_grad():
            for name in FEATURE_BUFFERS:
                model.get_buffer(name).copy_(tensors[name])
        return model

    def _use_attn_implementation(self, attn_implementation: str | dict) -> None:
        """Use `attn_implementation` (`"eager"`, `"sdpa"`, `"flash_attention_2"`, ...) in the encoder, as
        `from_pretrained(..., attn_implementation=...)` does; raises `ValueError` when the encoder does not support it.

        Example:
            >>> model._use_attn_implementation("eager"); model.model.config._attn_implementation
            'eager'
        """
        base = self.model
        base.set_attn_implementation(attn_implementation)
        encoder = getattr(base, "encoder", None)  # a bare encoder wrapped by `from_encoder`
        if isinstance(encoder, PreTrainedModel):
            encoder.set_attn_implementation(attn_implementation)
        wanted = attn_implementation if isinstance(attn_implementation, str) else attn_implementation.get("")
        got = (encoder if isinstance(encoder, PreTrainedModel) else base).config._attn_implementation
        if wanted is not None and got != wanted:
            raise ValueError(
                f"The encoder ({type(base).__name__}) cannot use attn_implementation={wanted!r} (it uses {got!r}): "
                "it does not support switching its attention implementation. Load without attn_implementation."
            )

    def _place(self, device_map) -> None:
        if device_map is None:
            return
        if isinstance(device_map, dict):
            if set(device_map) != {""}:
                raise NotImplementedError("hf_sparse loads a model onto one device: pass device_map='cpu', 'cuda:0', or {'': device}.")
            device_map = device_map[""]
        if device_map == "auto":
            device_map = "cuda" if torch.cuda.is_available() else "cpu"
        self.to(torch.device(device_map) if not isinstance(device_map, int) else torch.device("cuda", device_map))
