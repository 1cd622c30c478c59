"""Run raw inputs (texts or images) through a sparse-head model and return the head's input features."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..features.extract import preprocessor_lock


@dataclass
class FitData:
    """What `fit_sparse_head` saw, kept on the model (not saved) so that explanations and audits need no new
    forward pass: the cached `FeatureSet`s and the source datasets, with their column names."""

    train_features: Any
    train_dataset: Any
    eval_features: Any = None
    eval_dataset: Any = None
    text_column: str = "text"
    image_column: str = "image"
    label_column: str = "label"
    #: Features of counterfactual texts already encoded for `augment=` ({max_length: {text: feature row}}), so
    #: that trying several fixes encodes each text once.
    counterfactuals: dict = field(default_factory=dict)

    @property
    def features(self):
        """The evaluation features when there are some, else the training ones."""
        return self.eval_features if self.eval_features is not None else self.train_features

    @property
    def dataset(self):
        """The dataset `features` come from."""
        return self.eval_dataset if self.eval_features is not None else self.train_dataset


def as_batch_list(inputs) -> list:
    """A single text or image becomes a one-element list; lists, tuples and dataset columns become lists."""
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    if isinstance(inputs, str) or hasattr(inputs, "convert") or isinstance(inputs, torch.Tensor) or hasattr(inputs, "shape"):
        return [inputs]  # a text, a PIL image, or one image array
    return list(inputs)  # e.g. a datasets Column


def processor_inputs(model, items: list, processor=None, max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Tokenize texts or preprocess images for `model`, on the model's device."""
    processor = processor if processor is not None else model.processor
    if processor is None:
        kind = "tokenizer" if model.modality == "text" else "image_processor"
        raise ValueError(f"This model has no {kind}: set model.processor = <{kind}> first.")
    if model.modality == "text":
        if not all(isinstance(t, str) for t in items):
            raise TypeError("a text model takes a string or a list of strings")
        # the tokenizer's padding/truncation settings are state of the object: one hf_sparse call at a time
        with preprocessor_lock(processor):
            enc = processor(items, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    else:
        images = [im.convert("RGB") if hasattr(im, "convert") else im for im in items]
        enc = processor(images=images, return_tensors="pt")
    device = model.sparse_head.values.device
    return {k: v.to(device) for k, v in enc.items()}


@torch.no_grad()
def encode(model, inputs, *, batch_size: int = 32, processor=None, max_length: int | None = None) -> torch.Tensor:
    """(n, num_features) float32 features (the input of the sparse head) for texts or images.

    Example:
        ```python
        >>> X = encode(model, ["a fine film", "a dull film"])     # or model.encode(...)
        >>> model.sparse_head(X)                                 # the logits
        ```
    """
    items = as_batch_list(inputs)
    out = []
    for start in range(0, len(items), batch_size):
        enc = processor_inputs(model, items[start : start + batch_size], processor, max_length)
        out.append(model(**enc, output_contributions=True).features.float().cpu())
    if not out:
        return torch.empty(0, model.sparse_head.in_features)
    return torch.cat(out)
