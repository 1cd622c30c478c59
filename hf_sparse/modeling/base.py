"""What the text and image models share: wrapping a classifier, the sparse head and forward.

Example:
    >>> model = SparseHeadForSequenceClassification.from_base_model(classifier)   # wraps; same logits until fit
    >>> model.install_sparse_head(W, b); model(**inputs, output_contributions=True).contributions

Loading (`LoadingMixin`), saving (`SavingMixin`), the processor (`ProcessorMixin`) and fitting (`FittingMixin`)
come from their own modules; explanations, audits, edits and the model card are mixins of the layers above, composed
into the public classes in `hf_sparse.models`.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel

from .configuration import SparseHeadConfig
from .encoder_head import BASE_KIND_ENCODER, ENCODER_CLASSIFIERS
from .encoder_loading import _other_class
from .fit_mixin import FittingMixin
from .loading import LoadingMixin
from .persistence import SavingMixin
from .processing import ProcessorMixin
from .sparse_linear import HeadCall, SparseLinear
from .wrap import SUPPORTED, UnsupportedModelError, base_model_class, dense_copy, find_head, set_submodule


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


class SparseHeadPreTrainedModel(LoadingMixin, SavingMixin, ProcessorMixin, FittingMixin, PreTrainedModel):
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
    #: "text" or "image": which inputs the model takes (set by the text and image classes)
    modality: ClassVar[str] = ""
    _output_class: ClassVar[type] = object

    #: the transformers Auto class of the base classifier, and of its tokenizer or image processor
    _base_auto_class: ClassVar[type]
    _processor_auto_class: ClassVar[type]

    # ------------------------------------------------------------------ construction
    def __init__(self, config: SparseHeadConfig, base_model: PreTrainedModel | None = None):
        super().__init__(config)
        if config.modality and config.modality != self.modality:
            raise ValueError(f"This checkpoint is a {config.modality} model: load it with {_other_class(self.modality)}.")
        if base_model is None and config.base_kind == BASE_KIND_ENCODER:
            base_model = ENCODER_CLASSIFIERS[self.modality](config.get_base_config(), pooling=config.pooling)
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
        config.modality = self.modality
        if config.head_nnz is None:
            config.head_nnz = self.sparse_head.nnz
        #: the `RegularizationPath` of the last `fit_sparse_head` call (kept in memory only)
        self.regularization_path = None
        #: `FitData` of the last `fit_sparse_head` call (features and datasets, kept in memory only)
        self.fit_data = None
        self.post_init()

    def _init_weights(self, module):
        # Weights come from the fine-tuned classifier or a checkpoint; nothing is ever initialized here.
        return

    def init_weights(self):
        # The wrapped classifier initialized (or loaded) itself when it was built: never re-initialize it.
        return

    @property
    def _modality(self) -> str:
        # The old private name of `modality`, kept for code written against it.
        return self.modality

    # ------------------------------------------------------------------ parts
    @property
    def sparse_head(self) -> SparseLinear:
        """The `SparseLinear` layer that replaced the classifier's final `nn.Linear`."""
        return self.model.get_submodule(self.config.head_module)

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

