"""File names and format markers of hf_sparse checkpoints, in one place (as peft keeps them in `utils/constants.py`).

Pure constants: importing this module imports nothing else, so every layer (the solver included) can use it.

Example:
    >>> from hf_sparse.constants import WEIGHTS_NAME, HEAD_WEIGHTS_NAME
    >>> WEIGHTS_NAME, HEAD_WEIGHTS_NAME
    ('model.safetensors', 'sparse_head.safetensors')
"""

CONFIG_NAME = "config.json"
#: Full checkpoint: base model (with its sparse head) + dense head for comparison + feature statistics.
WEIGHTS_NAME = "model.safetensors"
#: Head-only checkpoint: the sparse head, the feature statistics; the base model is a pointer in the config.
HEAD_WEIGHTS_NAME = "sparse_head.safetensors"
#: JSON manifest with the sha256 of every file above; checked on load.
MANIFEST_NAME = "hf_sparse_manifest.json"
MODEL_CARD_NAME = "README.md"
#: Feature descriptions (`hf_sparse.explain`), saved beside the weights when the model has them.
DESCRIPTIONS_NAME = "feature_descriptions.json"
#: Recorded audit reports (`hf_sparse.audit`), saved beside the weights when the model has them.
AUDIT_NAME = "audit.json"
#: A regularization path saved by `RegularizationPath.save` (`hf_sparse.solver`): tensors and metadata.
PATH_WEIGHTS_NAME = "path.safetensors"
PATH_CONFIG_NAME = "path.json"

MANIFEST_FORMAT = "hf_sparse"
MANIFEST_VERSION = 1
KIND_FULL = "full"
KIND_HEAD_ONLY = "head_only"

MODEL_TYPE = "hf_sparse"
