"""Model cards for sparse-head models: rendered from `model_card_template.md`, with pictures beside them.

Example:
    >>> from hf_sparse.card import create_model_card, write_model_card
    >>> model.model_card_data.update(license="apache-2.0", datasets=["stanfordnlp/sst2"])  # kept in the config
    >>> card = create_model_card(model)          # huggingface_hub.ModelCard
    >>> write_model_card(model, "out")           # README.md, card_assets/*.png (an existing card is updated)
"""

from ..text_safety import escape_markdown, redact_text
from .card_data import SparseModelCardData
from .readme_merge import merge_card
from .render import ASSETS_DIR, create_model_card, render_model_card, write_model_card

__all__ = ["ASSETS_DIR", "SparseModelCardData", "create_model_card", "escape_markdown", "merge_card", "redact_text",
           "render_model_card", "write_model_card"]
