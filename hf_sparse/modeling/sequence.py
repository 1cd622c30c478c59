"""`SparseHeadTextModel`: a transformers text classifier whose final linear layer is sparse (the model half of
`hf_sparse.SparseHeadForSequenceClassification`, which adds the explain, audit and card methods)."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .base import SparseHeadPreTrainedModel
from .outputs import SparseSequenceClassifierOutput


class SparseHeadTextModel(SparseHeadPreTrainedModel):
    """A transformers text classifier (BERT, DistilBERT, RoBERTa, MPNet, ...) with a sparse final linear layer.

    The modeling part of `hf_sparse.SparseHeadForSequenceClassification` (wrapping, fitting, forward, loading,
    saving); the public class adds the explain, audit and card mixins (`hf_sparse/models.py`), and its docstring
    has the example.
    """

    main_input_name = "input_ids"
    modality = "text"
    _output_class = SparseSequenceClassifierOutput

    _base_auto_class = AutoModelForSequenceClassification
    _processor_auto_class = AutoTokenizer

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        output_contributions: bool = False,
        use_dense_head: bool = False,
        **kwargs,
    ) -> SparseSequenceClassifierOutput:
        """Logits of the sparse head (or of the kept dense head with `use_dense_head=True`); the loss when `labels`
        are given; with `output_contributions=True` also each active feature's value times weight for each class."""
        inputs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        return self._forward(inputs, labels, output_contributions, use_dense_head, return_dict)
