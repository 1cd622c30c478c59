"""transformers model classes whose final linear layer is sparse (fit by `hf_sparse.solver` on cached features).

- `SparseHeadConfig`: base model pointer and config, feature source, fit and selection, path summary, metrics.
- `SparseHeadForSequenceClassification`, `SparseHeadForImageClassification`: `from_pretrained` (a fine-tuned
  classifier or an hf_sparse checkpoint), `fit_sparse_head`, `forward`, `save_pretrained` (full or
  `head_only=True`), `push_to_hub`.
- `SparseLinear`: the head itself (nonzeros + bias; dense or sparse product, whichever is cheaper).
"""

from .auto import register_auto_classes
from .configuration import SparseHeadConfig
from .image import SparseHeadForImageClassification
from .outputs import SparseImageClassifierOutput, SparseSequenceClassifierOutput
from .saving import CheckpointError
from .sequence import SparseHeadForSequenceClassification
from .sparse_linear import SparseLinear
from .wrap import UnsupportedModelError, find_head

__all__ = [
    "CheckpointError",
    "SparseHeadConfig",
    "SparseHeadForImageClassification",
    "SparseHeadForSequenceClassification",
    "SparseImageClassifierOutput",
    "SparseLinear",
    "SparseSequenceClassifierOutput",
    "UnsupportedModelError",
    "find_head",
    "register_auto_classes",
]
