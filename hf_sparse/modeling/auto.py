"""Register the hf_sparse classes with transformers' Auto classes (done on `import hf_sparse`)."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

from .configuration import SparseHeadConfig
from .constants import MODEL_TYPE
from .image import SparseHeadForImageClassification
from .sequence import SparseHeadForSequenceClassification


def register_auto_classes() -> None:
    """Let `AutoConfig`, `AutoModelForSequenceClassification`, `AutoModelForImageClassification` and pipelines load
    hf_sparse checkpoints (idempotent)."""
    AutoConfig.register(MODEL_TYPE, SparseHeadConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(SparseHeadConfig, SparseHeadForSequenceClassification, exist_ok=True)
    AutoModelForImageClassification.register(SparseHeadConfig, SparseHeadForImageClassification, exist_ok=True)
