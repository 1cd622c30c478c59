"""File names and format markers of hf_sparse checkpoints, in one place (as peft does)."""

CONFIG_NAME = "config.json"
#: Full checkpoint: base model (with its sparse head) + dense head for comparison + feature statistics.
WEIGHTS_NAME = "model.safetensors"
#: Head-only checkpoint: the sparse head, the feature statistics; the base model is a pointer in the config.
HEAD_WEIGHTS_NAME = "sparse_head.safetensors"
#: JSON manifest with the sha256 of every file above; checked on load.
MANIFEST_NAME = "hf_sparse_manifest.json"
MODEL_CARD_NAME = "README.md"

MANIFEST_FORMAT = "hf_sparse"
MANIFEST_VERSION = 1
KIND_FULL = "full"
KIND_HEAD_ONLY = "head_only"

MODEL_TYPE = "hf_sparse"
FAMILIES = ("multinomial", "multilabel", "gaussian")
