"""The explain methods of the public model classes (`describe_features`, `explain`, `class_features`) and the
saving of feature descriptions beside the weights (`feature_descriptions.json`, registered as a checkpoint artifact).

Composed into `hf_sparse.SparseHeadForSequenceClassification` / `...ForImageClassification` in `hf_sparse.models`,
as transformers composes `GenerationMixin` into its models.

Example:
    >>> model.describe_features()[17].top_words[:5]
    >>> print(model.explain("a gorgeous, witty film"))
"""

from __future__ import annotations

from pathlib import Path

from ..constants import DESCRIPTIONS_NAME
from ..modeling.artifacts import Artifact, register_artifact
from .class_features import class_features
from .descriptions import FeatureDescriptions, check_stale, describe_features
from .explanation import explain


class ExplainMixin:
    """Explanations on the model; `feature_descriptions` is saved with it and loaded back."""

    @property
    def feature_descriptions(self) -> FeatureDescriptions | None:
        """`FeatureDescriptions` (from `describe_features`, or loaded with the checkpoint); None until then.

        Reading it checks them against the encoder when a weight of the encoder changed since the last check
        (`check_stale`): descriptions of an encoder trained further are marked `stale` and warn once.
        """
        descriptions = self.__dict__.get("_feature_descriptions")
        if isinstance(descriptions, FeatureDescriptions):
            check_stale(self, descriptions)
        return descriptions

    @feature_descriptions.setter
    def feature_descriptions(self, value: FeatureDescriptions | None) -> None:
        self.__dict__["_feature_descriptions"] = value

    def describe_features(self, features: list[int] | None = None, **kwargs):
        """Describe each feature the head uses from the cached data of the last fit: top and bottom examples, and
        the words (text) or regions (images) that drive it. Stored as `model.feature_descriptions` and saved with
        the model. See `hf_sparse.explain.describe_features`.

        Example:
            ```python
            >>> model.describe_features()[17].top_words[:5]
            ```
        """
        return describe_features(self, features, **kwargs)

    def explain(self, inputs, *, target: int | str | None = None):
        """The prediction for a text / image (or a list), with each active feature's contribution and description.

        Example:
            ```python
            >>> exp = model.explain("a gorgeous, witty film"); print(exp); exp.to_html()
            ```
        """
        return explain(self, inputs, target=target)

    def class_features(self):
        """Per class, the features with nonzero weight, sorted by weight, with their share of the logit.

        Example:
            ```python
            >>> model.class_features()[1].features[:3]
            ```
        """
        return class_features(self)


def _save(model, directory: Path, options: dict) -> list[str]:
    descriptions = model.feature_descriptions
    if not descriptions:
        return []
    root = descriptions.image_root
    try:
        return descriptions.save(directory)
    finally:  # `directory` is the save's temporary folder: the images are found in the final one (`_saved`)
        descriptions.image_root = root


def _load(model, local_files: dict[str, str]) -> None:
    if DESCRIPTIONS_NAME in local_files:
        descriptions = FeatureDescriptions.load(Path(local_files[DESCRIPTIONS_NAME]).parent)
        model.feature_descriptions = descriptions
        check_stale(model, descriptions, force=True)  # against the loaded encoder: warns now when they are stale


def _saved(model, directory: Path) -> None:
    descriptions = model.feature_descriptions
    if descriptions is not None and hasattr(descriptions, "image_root"):
        descriptions.image_root = directory


DESCRIPTIONS_ARTIFACT = register_artifact(
    Artifact("feature_descriptions", files=(DESCRIPTIONS_NAME,), save=_save, load=_load, saved=_saved)
)
