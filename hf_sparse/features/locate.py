"""Where the features come from: the classifier's input, or a pooled hidden layer.

By default the feature vector is exactly the input of the model's final
classification ``nn.Linear`` (``out_features == num_labels``), so the dense head
applied to the cached features gives the model's logits. The layer is found by
name for common architectures and, otherwise, as the last ``nn.Linear`` with
``out_features == num_labels``; a forward pre-hook captures its input (only the calling thread's, so one
model can serve other threads during an extraction).

Bare encoders (``AutoModel``) have no classifier: pass ``pooling=`` (``"cls"``,
``"mean"`` over the attention mask, or ``"pooler"``) and optionally ``layer=``.

An hf_sparse model (``SparseHeadForSequenceClassification`` / ``...ImageClassification``) is read through the
classifier it wraps (:func:`wrapped_classifier`): its features are the sparse head's input, the same cache entry
``fit_sparse_head`` writes.

Example::

    >>> spec = FeatureSpec.resolve(model)                # classifier input
    >>> spec = FeatureSpec.resolve(encoder, pooling="mean", layer=-2)
"""

from __future__ import annotations

import contextvars
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: Feature sources, besides the default input of the final classifier layer.
POOLINGS = ("cls", "mean", "pooler")
#: Name of the default source (the input of the final classification layer).
CLASSIFIER_SOURCE = "classifier"

#: The extraction call running in this thread / async task: a capture hook keeps only its own call's inputs.
_CAPTURE_OWNER: contextvars.ContextVar[object | None] = contextvars.ContextVar("hf_sparse_capture_owner", default=None)

#: Dotted name of the final classification ``nn.Linear`` by ``config.model_type``.
CLASSIFIER_LAYER_NAMES: dict[str, str] = {
    "bert": "classifier",
    "distilbert": "classifier",
    "albert": "classifier",
    "deberta": "classifier",
    "deberta-v2": "classifier",
    "modernbert": "classifier",
    "roberta": "classifier.out_proj",
    "xlm-roberta": "classifier.out_proj",
    "camembert": "classifier.out_proj",
    "mpnet": "classifier.out_proj",
    "electra": "classifier.out_proj",
    "vit": "classifier",
    "deit": "classifier",
    "beit": "classifier",
    "swin": "classifier",
    "dinov2": "classifier",
    "convnext": "classifier",
    "convnextv2": "classifier",
    "resnet": "classifier.1",
    "regnet": "classifier.1",
}


def _num_labels(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "num_labels", None) if config is not None else None


def find_classifier_layer(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """Return ``(name, layer)`` of the model's final classification ``nn.Linear``.

    Looks up :data:`CLASSIFIER_LAYER_NAMES` by ``config.model_type`` first, then
    takes the last ``nn.Linear`` (in module order) whose ``out_features`` equals
    ``config.num_labels``. Returns ``None`` for a bare encoder.

    Example::

        >>> name, layer = find_classifier_layer(roberta_classifier)
        >>> name
        'classifier.out_proj'
    """
    num_labels = _num_labels(model)
    if num_labels is None:
        return None
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    name = CLASSIFIER_LAYER_NAMES.get(model_type or "")
    if name is not None:
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            layer = None
        if isinstance(layer, nn.Linear) and layer.out_features == num_labels:
            return name, layer
    # Modules of the base encoder are never the classifier (a bare encoder's
    # own layers may happen to have num_labels outputs).
    base = getattr(model, "base_model", model)
    base_ids = set() if base is model else {id(m) for m in base.modules()}
    found = None
    for name, module in model.named_modules():
        if id(module) in base_ids:
            continue
        if isinstance(module, nn.Linear) and module.out_features == num_labels:
            found = (name, module)
    return found


def wrapped_classifier(model: nn.Module) -> nn.Module | None:
    """For an hf_sparse model, the classifier it wraps with its dense final layer (``model.dense_classifier()``,
    sharing every weight); ``None`` for any other model.

    Its final layer is the one whose input the sparse head reads, so extracting from it gives the sparse head's
    input features, under the same cache key as ``fit_sparse_head``. An hf_sparse model is recognised by what it
    offers (``dense_classifier()``, ``sparse_head`` and ``config.head_module``), since this layer cannot import the
    model classes.

    Example::

        >>> wrapped_classifier(sparse_model)(**inputs).logits     # the dense head's logits
        >>> wrapped_classifier(bert_classifier) is None
        True
    """
    make = getattr(type(model), "dense_classifier", None)
    head_module = getattr(getattr(model, "config", None), "head_module", None)
    if not callable(make) or not isinstance(head_module, str) or not hasattr(type(model), "sparse_head"):
        return None
    return model.dense_classifier()


@dataclass(frozen=True)
class FeatureSpec:
    """What to extract: ``source`` is ``"classifier"`` or one of :data:`POOLINGS`.

    ``layer_name`` is the classifier layer (source ``"classifier"``); ``layer`` the
    hidden layer index for ``"cls"``/``"mean"`` (``None``: the final hidden state).
    """

    source: str
    layer_name: str | None = None
    layer: int | None = None

    @classmethod
    def resolve(cls, model: nn.Module, pooling: str | None = None, layer: int | None = None) -> FeatureSpec:
        """Check ``pooling``/``layer`` against ``model`` and return the spec.

        ``pooling=None`` (or ``"classifier"``) means the input of the final
        classification layer; it is an error for a model without one.
        """
        if pooling is None or pooling == CLASSIFIER_SOURCE:
            if layer is not None:
                raise ValueError(
                    f"layer={layer!r} applies to pooling='cls' or 'mean' only; the classifier's input "
                    "is one fixed layer. Pass pooling='mean' or 'cls' together with layer=."
                )
            found = find_classifier_layer(model)
            if found is None:
                raise ValueError(
                    f"{type(model).__name__} has no linear classifier with out_features == num_labels "
                    f"({_num_labels(model)}), so there is no classifier input to extract. For a bare "
                    "encoder pass pooling='mean' (mean over the attention mask), 'cls' (first token) or "
                    "'pooler' (the model's pooler output), and optionally layer=<hidden layer index>."
                )
            return cls(CLASSIFIER_SOURCE, layer_name=found[0])
        if pooling not in POOLINGS:
            raise ValueError(
                f"pooling={pooling!r} is not one of None (the classifier's input), "
                + ", ".join(repr(p) for p in POOLINGS)
                + "."
            )
        if pooling == "pooler" and layer is not None:
            raise ValueError("layer= does not apply to pooling='pooler'; use pooling='cls' or 'mean' with layer=.")
        if layer is not None and not isinstance(layer, int):
            raise TypeError(f"layer must be an int (a hidden_states index, e.g. -1 or 6), not {layer!r}.")
        return cls(pooling, layer=layer)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able description (part of the cache key)."""
        return {"source": self.source, "layer_name": self.layer_name, "layer": self.layer}


def _accepted_kwargs(module: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    params = inspect.signature(module.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        # transformers forwards take **kwargs; keep only named inputs.
        named = {k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        return {k: v for k, v in batch.items() if k in named}
    return {k: v for k, v in batch.items() if k in params}


class FeatureExtractor:
    """Runs a model on one preprocessed batch and returns its (batch, d) features.

    Example::

        >>> fx = FeatureExtractor(model, FeatureSpec.resolve(model))
        >>> fx(tokenizer(["a film"], return_tensors="pt"))   # (1, hidden) tensor
    """

    def __init__(self, model: nn.Module, spec: FeatureSpec):
        self.model = model
        self.spec = spec
        if spec.source == CLASSIFIER_SOURCE:
            self.module = model
            self.layer = model.get_submodule(spec.layer_name)
        else:
            # The base encoder returns last_hidden_state / pooler_output even when
            # the model carries a head.
            self.module = getattr(model, "base_model", model)
            self.layer = None

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = _accepted_kwargs(self.module, batch)
        if self.spec.source == CLASSIFIER_SOURCE:
            return self._classifier_input(inputs)
        return self._pooled(inputs, batch.get("attention_mask"))

    def _classifier_input(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # The hook keeps only the inputs of this call: other threads (or async tasks) running the same model at the
        # same time also pass through the layer while the hook is registered, and their inputs must not be taken
        # for this batch's features.
        captured: list[torch.Tensor] = []
        owner = object()

        def hook(_module, args):
            if _CAPTURE_OWNER.get() is owner:
                captured.append(args[0])

        token = _CAPTURE_OWNER.set(owner)
        handle = self.layer.register_forward_pre_hook(hook)
        try:
            self.module(**inputs)
        finally:
            handle.remove()
            _CAPTURE_OWNER.reset(token)
        if not captured:
            raise RuntimeError(f"the classifier layer {self.spec.layer_name!r} was not called in the forward pass.")
        feats = captured[-1]
        if feats.dim() != 2:
            raise ValueError(
                f"the input of {self.spec.layer_name!r} has shape {tuple(feats.shape)}, not (batch, features): "
                "this model pools after its classifier (e.g. a decoder scoring every token). Pass "
                "pooling='mean' or 'cls' instead."
            )
        return feats

    def _pooled(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        source, layer = self.spec.source, self.spec.layer
        want_hidden = layer is not None
        if want_hidden:
            inputs = {**inputs, "output_hidden_states": True}
        out = self.module(**inputs, return_dict=True)
        if source == "pooler":
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise ValueError(
                    f"{type(self.module).__name__} returns no pooler_output (it has no pooling layer). "
                    "Pass pooling='mean' or 'cls' instead."
                )
            return pooled.flatten(1)
        if want_hidden:
            hidden_states = getattr(out, "hidden_states", None)
            if hidden_states is None:
                raise ValueError(f"{type(self.module).__name__} returns no hidden_states; layer= cannot be used.")
            try:
                hidden = hidden_states[layer]
            except IndexError:
                raise ValueError(
                    f"layer={layer} is out of range: the model has {len(hidden_states)} hidden states "
                    f"(valid: {-len(hidden_states)} .. {len(hidden_states) - 1})."
                ) from None
        else:
            hidden = out.last_hidden_state
        if hidden.dim() == 4:  # convolutional maps (batch, channels, height, width)
            if source == "cls":
                raise ValueError("pooling='cls' needs a token sequence; this model gives feature maps. Use 'mean'.")
            return hidden.mean(dim=(2, 3))
        if source == "cls":
            return hidden[:, 0]
        if mask is None:
            return hidden.mean(dim=1)
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
