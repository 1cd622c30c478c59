"""Locate, replace and rebuild the final linear layer of an arbitrary transformers classifier."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from .sparse_linear import SparseLinear

#: Where known architectures keep their final linear layer (the input of which is the feature vector).
KNOWN_HEADS = {
    "BertForSequenceClassification": "classifier",
    "DistilBertForSequenceClassification": "classifier",
    "RobertaForSequenceClassification": "classifier.out_proj",
    "XLMRobertaForSequenceClassification": "classifier.out_proj",
    "MPNetForSequenceClassification": "classifier.out_proj",
    "DebertaV2ForSequenceClassification": "classifier",
    "ViTForImageClassification": "classifier",
    "ConvNextForImageClassification": "classifier",
    "ResNetForImageClassification": "classifier.1",
    # a bare encoder given to `from_encoder` (hf_sparse.modeling.encoder_head)
    "EncoderForSequenceClassification": "classifier",
    "EncoderForImageClassification": "classifier",
}
SUPPORTED = (
    "BERT, DistilBERT, RoBERTa, MPNet (text); ViT, ConvNeXt, ResNet (images); and any classifier whose last layer "
    "is an nn.Linear with out_features == num_labels"
)


class UnsupportedModelError(ValueError):
    """The model has no final `nn.Linear` classifier that hf_sparse can replace."""


def find_head(model: nn.Module, num_labels: int | None = None) -> str:
    """Dotted name of the final `nn.Linear` of a classifier (out_features == num_labels).

    Known architectures use `KNOWN_HEADS`; otherwise the last registered `nn.Linear` with `num_labels` outputs.
    Raises `UnsupportedModelError` naming the model class when there is none.
    """
    if num_labels is None:
        num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    cls_name = type(model).__name__
    modules = dict(model.named_modules())
    known = KNOWN_HEADS.get(cls_name)
    if known is not None and isinstance(modules.get(known), (nn.Linear, SparseLinear)):
        return known
    candidates = [
        name
        for name, m in modules.items()
        if isinstance(m, (nn.Linear, SparseLinear)) and name and (num_labels is None or m.out_features == num_labels)
    ]
    if not candidates:
        raise UnsupportedModelError(
            f"{cls_name} has no final nn.Linear classifier with out_features == num_labels ({num_labels}), so "
            f"hf_sparse cannot replace its head. Supported: {SUPPORTED}. Load a model with a classification head "
            "(e.g. AutoModelForSequenceClassification / AutoModelForImageClassification)."
        )
    return candidates[-1]


def get_submodule(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, (nn.Sequential, nn.ModuleList)) and child.isdigit():
        parent[int(child)] = module
    else:
        setattr(parent, child, module)


def tensor_sha256(*tensors: torch.Tensor) -> str:
    """sha256 over the raw float32 little-endian bytes of tensors (identifies a dense head's weights)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            continue
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def dense_copy(linear: nn.Linear) -> nn.Linear:
    """An independent `nn.Linear` with the same weights (bias kept; zeros if the original had none)."""
    out = nn.Linear(linear.in_features, linear.out_features, bias=True, device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(linear.weight)
        if linear.bias is not None:
            out.bias.copy_(linear.bias)
        else:
            out.bias.zero_()
    out.requires_grad_(False)
    return out


def base_model_class(base_config, auto_class, main_input_name: str | None = None):
    """The transformers class to rebuild a base classifier from its config: its recorded architecture if
    transformers has it (and it takes `main_input_name`), otherwise what `auto_class` maps the config to.
    Raises `UnsupportedModelError` when neither applies."""
    import transformers

    for name in getattr(base_config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None and (main_input_name is None or getattr(cls, "main_input_name", None) == main_input_name):
            return cls
    try:
        return auto_class._model_mapping[type(base_config)]
    except KeyError as err:
        raise UnsupportedModelError(
            f"{type(base_config).__name__} ({', '.join(getattr(base_config, 'architectures', None) or []) or 'no architecture'}) "
            f"is not a model that {auto_class.__name__} can load. Supported: {SUPPORTED}."
        ) from err
