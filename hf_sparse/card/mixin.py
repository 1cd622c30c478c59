"""The model-card method of the public model classes (`create_model_card`), and the card written by
`save_pretrained` (README.md and its pictures, a registered checkpoint artifact written after the manifest).

Composed into the public classes in `hf_sparse.models`, as transformers composes `GenerationMixin`.

Example:
    >>> card = model.create_model_card(repo_id="user/sst2-sparse", dataset_name="sst2"); print(card.text)
    >>> model.save_pretrained("out", card_kwargs={"dataset_name": "sst2"})   # writes out/README.md too
"""

from __future__ import annotations

from pathlib import Path

from ..modeling.artifacts import Artifact, register_artifact
from .render import create_model_card


class CardMixin:
    """The model card of the model."""

    def create_model_card(self, **kwargs):
        """The `huggingface_hub.ModelCard` of this model (see `hf_sparse.card.render_model_card` for options).

        Example:
            ```python
            >>> card = model.create_model_card(repo_id="user/sst2-sparse", dataset_name="sst2"); print(card.text)
            ```
        """
        return create_model_card(self, **kwargs)


def _save(model, directory: Path, options: dict) -> list[str]:
    """README.md and its pictures, unless `save_pretrained(model_card=False)`; `card_kwargs` go to
    `write_model_card`."""
    if not options.get("model_card", True):
        return []
    from . import write_model_card  # the package's, looked up per save (so it can be replaced, e.g. in tests)

    return write_model_card(model, directory, **(options.get("card_kwargs") or {}))


CARD_ARTIFACT = register_artifact(Artifact("model_card", save=_save, checked=False))
