"""hf_sparse: debuggable transformers classifiers with sparse linear heads.

Layers, from the bottom: ``solver`` (elastic-net path on tensors), ``features``
(cached encoder features), ``modeling`` (transformers classes), ``explain``,
``audit``, ``card`` and ``cli``.

Importing the package registers its model classes with transformers' Auto
classes, so ``AutoModelForSequenceClassification.from_pretrained`` and
``pipeline(...)`` load saved hf_sparse checkpoints.
"""

__version__ = "0.1.0"

from .modeling import (  # noqa: E402
    SparseHeadConfig,
    SparseHeadForImageClassification,
    SparseHeadForSequenceClassification,
    SparseLinear,
    register_auto_classes,
)

register_auto_classes()

__all__ = [
    "SparseHeadConfig",
    "SparseHeadForImageClassification",
    "SparseHeadForSequenceClassification",
    "SparseLinear",
    "__version__",
]
