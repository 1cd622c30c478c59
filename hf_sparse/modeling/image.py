"""`SparseHeadImageModel`: a transformers image classifier whose final linear layer is sparse (the model half of
`hf_sparse.SparseHeadForImageClassification`, which adds the explain, audit and card methods)."""

from __future__ import annotations

import torch
from transformers import AutoModelForImageClassification, AutoImageProcessor

from .base import SparseHeadPreTrainedModel
from .outputs import SparseImageClassifierOutput


class SparseHeadImageModel(SparseHeadPreTrainedModel):
    """A transformers image classifier (ViT, ConvNeXt, ResNet, ...) with a sparse final linear layer.

    The modeling part of `hf_sparse.SparseHeadForImageClassification` (wrapping, fitting, forward, loading,
    saving); the public class adds the explain, audit and card mixins (`hf_sparse/models.py`), and its docstring
    has the example.
    """

    main_input_name = "pixel_values"
    modality = "image"
    _output_class = SparseImageClassifierOutput

    _base_auto_class = AutoModelForImageClassification
    _processor_auto_class = AutoImageProcessor

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        output_contributions: bool = False,
        use_dense_head: bool = False,
        **kwargs,
    ) -> SparseImageClassifierOutput:
        """Logits of the sparse head (or of the kept dense head with `use_dense_head=True`); the loss when `labels`
        are given; with `output_contributions=True` also each active feature's value times weight for each class."""
        inputs = dict(
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        return self._forward(inputs, labels, output_contributions, use_dense_head, return_dict)
