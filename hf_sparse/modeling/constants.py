"""The checkpoint file names, re-exported from their one home, `hf_sparse.constants` (kept for old imports).

Example:
    >>> from hf_sparse.modeling.constants import WEIGHTS_NAME   # same object as hf_sparse.constants.WEIGHTS_NAME
"""

from ..constants import (
    AUDIT_NAME,
    CONFIG_NAME,
    DESCRIPTIONS_NAME,
    HEAD_WEIGHTS_NAME,
    KIND_FULL,
    KIND_HEAD_ONLY,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    MODEL_CARD_NAME,
    MODEL_TYPE,
    WEIGHTS_NAME,
)

__all__ = ["AUDIT_NAME", "CONFIG_NAME", "DESCRIPTIONS_NAME", "HEAD_WEIGHTS_NAME", "KIND_FULL", "KIND_HEAD_ONLY",
           "MANIFEST_FORMAT", "MANIFEST_NAME", "MANIFEST_VERSION", "MODEL_CARD_NAME", "MODEL_TYPE", "WEIGHTS_NAME"]
