"""The model-card method of the public model classes (`create_model_card`), and the card written by
`save_pretrained` (README.md and its pictures, a registered checkpoint artifact written after the manifest).

Composed into the public classes in `hf_sparse.models`, as transformers composes `GenerationMixin`.

Example:
    >>> model.model_card_data.update(license="apache-2.0", datasets=["stanfordnlp/sst2"])   # saved in the config
    >>> card = model.create_model_card(repo_id="user/sst2-sparse"); print(card.text)
    >>> model.save_pretrained("out")   # writes out/README.md too
"""

from __future__ import annotations

from pathlib import Path

from ..modeling.artifacts import Artifact, register_artifact
from .card_data import SparseModelCardData
from .render import create_model_card


class CardMixin:
    """The model card of the model, and its metadata (`model_card_data`)."""

    @property
    def model_card_data(self) -> SparseModelCardData:
        """The card's user-set metadata (`SparseModelCardData`): set a field or call `update`, and the change is
        written to `config.card_data`, so `save_pretrained` keeps it and every later card shows it.

        Example:
            ```python
            >>> model.model_card_data.license = "apache-2.0"
            >>> model.model_card_data.update(base_model="sentence-transformers/all-MiniLM-L6-v2", language="en")
            ```
        """
        return SparseModelCardData.from_user_fields(getattr(self.config, "card_data", None)).bind(self)

    @model_card_data.setter
    def model_card_data(self, value) -> None:
        if isinstance(value, dict):
            value = SparseModelCardData().update(**value)
        if not isinstance(value, SparseModelCardData):
            raise TypeError(f"model_card_data must be a SparseModelCardData or a dict of its fields, not "
                            f"{type(value).__name__}")
        self.config.card_data = value.user_fields() or None

    def create_model_card(self, **kwargs):
        """The `huggingface_hub.ModelCard` of this model (see `hf_sparse.card.render_model_card` for options).

        Example:
            ```python
            >>> card = model.create_model_card(repo_id="user/sst2-sparse", card_data={"license": "mit"})
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
