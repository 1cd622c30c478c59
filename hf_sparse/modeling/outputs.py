"""Model outputs: the transformers ones, plus the per-feature contributions on request."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import ImageClassifierOutput, SequenceClassifierOutput


@dataclass
class SparseSequenceClassifierOutput(SequenceClassifierOutput):
    """`SequenceClassifierOutput` plus, with `output_contributions=True`:

    - `contributions` (batch, num_labels, n_active): feature value times weight for each active feature and class
      (`contributions.sum(-1) + head.bias == logits`);
    - `active_features` (n_active,): the feature indices (columns of the head's input) they refer to;
    - `features` (batch, num_features): the head's input.
    """

    contributions: torch.Tensor | None = None
    active_features: torch.Tensor | None = None
    features: torch.Tensor | None = None


@dataclass
class SparseImageClassifierOutput(ImageClassifierOutput):
    """`ImageClassifierOutput` plus `contributions`, `active_features` and `features` (see
    `SparseSequenceClassifierOutput`)."""

    contributions: torch.Tensor | None = None
    active_features: torch.Tensor | None = None
    features: torch.Tensor | None = None
