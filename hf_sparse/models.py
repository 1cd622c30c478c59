"""The public model classes: the model layer's text and image models with the explain, audit and card methods
mixed in, as transformers composes `GenerationMixin` into its models. Importing this module registers them with
transformers' Auto classes (`hf_sparse/__init__.py` does it on first use of transformers' Auto classes).

Example:
    >>> from hf_sparse import SparseHeadForSequenceClassification
    >>> model = SparseHeadForSequenceClassification.from_pretrained("path/to/fine-tuned-classifier")
    >>> path = model.fit_sparse_head(train_ds, eval_dataset=val_ds, text_column="sentence", features_per_class=5)
    >>> print(model.explain("a fine film")); model.save_pretrained("out")
"""

from __future__ import annotations

from .audit.mixin import AuditMixin
from .card.mixin import CardMixin
from .explain.mixin import ExplainMixin
from .modeling.configuration import SparseHeadConfig
from .modeling.image import SparseHeadImageModel
from .modeling.sequence import SparseHeadTextModel


class SparseHeadForSequenceClassification(ExplainMixin, AuditMixin, CardMixin, SparseHeadTextModel):
    """A transformers text classifier (BERT, DistilBERT, RoBERTa, MPNet, ...) with a sparse final linear layer.

    Wrapping, fitting, forward, loading and saving come from `hf_sparse.modeling.SparseHeadTextModel`;
    `describe_features` / `explain` / `class_features`, `edit_features` / `audit_reports` and `create_model_card`
    from the explain, audit and card mixins.

    Example:
        ```python
        >>> from hf_sparse import SparseHeadForSequenceClassification
        >>> model = SparseHeadForSequenceClassification.from_pretrained("path/to/fine-tuned-classifier")
        >>> path = model.fit_sparse_head(train_ds, eval_dataset=val_ds, text_column="sentence", features_per_class=5)
        >>> out = model(**model.processor(["a fine film"], return_tensors="pt"), output_contributions=True)
        >>> out.logits, out.contributions.shape          # (1, num_labels), (1, num_labels, n_active_features)
        >>> model.save_pretrained("out")
        ```
    """


class SparseHeadForImageClassification(ExplainMixin, AuditMixin, CardMixin, SparseHeadImageModel):
    """A transformers image classifier (ViT, ConvNeXt, ResNet, ...) with a sparse final linear layer.

    Example:
        ```python
        >>> from hf_sparse import SparseHeadForImageClassification
        >>> model = SparseHeadForImageClassification.from_pretrained("path/to/image-classifier")
        >>> path = model.fit_sparse_head(train_ds, eval_dataset=val_ds, image_column="img", features_per_class=5)
        >>> model(pixel_values=batch, output_contributions=True).contributions.shape
        ```
    """


def register_auto_classes() -> None:
    """Let `AutoConfig`, `AutoModelForSequenceClassification`, `AutoModelForImageClassification` and pipelines load
    hf_sparse checkpoints (idempotent; done when this module is imported).

    Example:
        >>> register_auto_classes()
        >>> AutoModelForSequenceClassification.from_pretrained("out")   # a SparseHeadForSequenceClassification
    """
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

    AutoConfig.register(SparseHeadConfig.model_type, SparseHeadConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(SparseHeadConfig, SparseHeadForSequenceClassification, exist_ok=True)
    AutoModelForImageClassification.register(SparseHeadConfig, SparseHeadForImageClassification, exist_ok=True)


register_auto_classes()

__all__ = ["SparseHeadConfig", "SparseHeadForImageClassification", "SparseHeadForSequenceClassification",
           "register_auto_classes"]
