"""transformers model classes whose final linear layer is sparse (fit by `hf_sparse.solver` on cached features).

- `SparseHeadConfig`: base model pointer and config, feature source, fit and selection, path summary, metrics.
- `SparseHeadTextModel`, `SparseHeadImageModel`: wrapping a classifier, `from_pretrained` (a fine-tuned classifier
  or an hf_sparse checkpoint), `fit_sparse_head`, `forward`, `save_pretrained` (full or `head_only=True`),
  `push_to_hub`. The public classes `hf_sparse.SparseHeadForSequenceClassification` and
  `hf_sparse.SparseHeadForImageClassification` add the explain, audit and card methods to them (`hf_sparse.models`).
- `SparseLinear`: the head itself (nonzeros + bias; dense or sparse product, whichever is cheaper).
- `Artifact`, `register_artifact`: the files other layers save beside the weights.
"""

import importlib

# Loaded on first access (PEP 562): importing `hf_sparse.modeling.configuration` (which transformers' AutoConfig
# registration does while transformers is still loading) must not import the model classes.
_LAZY = {
    "Artifact": "artifacts",
    "register_artifact": "artifacts",
    "SparseHeadPreTrainedModel": "base",
    "SparseHeadConfig": "configuration",
    "SparseHeadImageModel": "image",
    "SparseImageClassifierOutput": "outputs",
    "SparseSequenceClassifierOutput": "outputs",
    "CheckpointError": "saving",
    "SparseHeadTextModel": "sequence",
    "SparseLinear": "sparse_linear",
    "UnsupportedModelError": "wrap",
    "find_head": "wrap",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Artifact",
    "CheckpointError",
    "SparseHeadConfig",
    "SparseHeadImageModel",
    "SparseHeadPreTrainedModel",
    "SparseHeadTextModel",
    "SparseImageClassifierOutput",
    "SparseLinear",
    "SparseSequenceClassifierOutput",
    "UnsupportedModelError",
    "find_head",
    "register_artifact",
]
