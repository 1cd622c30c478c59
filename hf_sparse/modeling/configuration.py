"""`SparseHeadConfig`: the transformers config of a model whose final linear layer is sparse."""

from __future__ import annotations

import copy
import json
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..constants import MODEL_TYPE
from ..solver.families import FAMILIES
from .first_use import first_config


@strict
class SparseHeadConfig(PreTrainedConfig):
    r"""Configuration of a transformers classifier whose final `nn.Linear` is replaced by a sparse one.

    It records everything needed to rebuild and to understand the model:

    - the base classifier: `base_config` (its full config as a dict), `base_model_name_or_path`,
      `base_model_revision` (a pointer, used by head-only checkpoints), `base_architecture`; `base_kind`:
      None for a fine-tuned classifier, `"encoder"` for a bare pretrained encoder given to `from_encoder`, which
      is rebuilt as encoder + `pooling` (`"mean"`, `"cls"` or `"pooler"`) + a linear `classifier`;
    - where the features come from: `head_module` (dotted path of the replaced `nn.Linear` inside the base model,
      e.g. `"classifier.out_proj"` for RoBERTa) and `feature_source` (a readable description), `num_features`;
    - the fit: `family` (`"multinomial"`, `"multilabel"` or `"gaussian"`), `alpha`, `selected_lambda`, `selection`
      (how the point was chosen), `path_summary` (per path point: lambda, features per class, accuracies),
      `standardization` (how features were standardized; the statistics are buffers `feature_mean` /
      `feature_std` of the model), `dense_metrics` and `sparse_metrics` on the evaluation features;
    - head edits (`edits`): one dict per `edit_features` call (features removed / reweighted, refit, accuracy and
      loss before and after);
    - label maps (`id2label`, `label2id`) and `problem_type`, copied from the base model;
    - `card_data`: the model-card fields a user set (license, language, Hub ids of the base model and datasets,
      ...; see `hf_sparse.card.SparseModelCardData`), kept so that a later card refresh keeps them.

    Example:
        ```python
        >>> from transformers import AutoConfig
        >>> import hf_sparse
        >>> config = AutoConfig.from_pretrained("out")       # a saved hf_sparse checkpoint
        >>> config.selection, config.dense_metrics["accuracy"], config.sparse_metrics["accuracy"]
        ```
    """

    model_type = MODEL_TYPE

    base_config: dict | None = None
    base_model_name_or_path: str | None = None
    base_model_revision: str | None = None
    base_architecture: str | None = None
    base_kind: str | None = None
    pooling: str | None = None
    modality: str | None = None
    head_module: str | None = None
    feature_source: str | None = None
    num_features: int | None = None
    head_nnz: int | None = None
    dense_head_sha256: str | None = None
    family: str | None = None
    alpha: float | int | None = None
    selected_lambda: float | int | None = None
    selection: dict | None = None
    path_summary: list | None = None
    standardization: dict | None = None
    dense_metrics: dict | None = None
    sparse_metrics: dict | None = None
    edits: list | None = None
    card_data: dict | None = None
    hf_sparse_version: str | None = None

    def __post_init__(self, **kwargs):
        # Label maps and problem type default to the base model's, so pipelines read the right labels.
        if self.base_config is not None:
            if self.id2label is None and self.base_config.get("id2label") is not None:
                self.id2label = dict(self.base_config["id2label"])
                self.label2id = dict(self.base_config.get("label2id") or {v: int(k) for k, v in self.id2label.items()})
            if self.problem_type is None:
                self.problem_type = self.base_config.get("problem_type")
        if self.base_kind not in (None, "encoder"):
            raise ValueError(f"base_kind must be None (a classifier) or 'encoder', got {self.base_kind!r}")
        if self.family is not None and self.family not in FAMILIES:
            raise ValueError(f"family must be one of {tuple(FAMILIES)}, got {self.family!r}")
        super().__post_init__(**kwargs)
        first_config()

    @property
    def is_fitted(self) -> bool:
        """True once `fit_sparse_head` (or `install_sparse_head`) has installed a selected path point."""
        return self.selection is not None

    def get_base_config(self) -> PreTrainedConfig:
        """The base classifier's config as a transformers config object (built offline from `base_config`)."""
        if self.base_config is None:
            raise ValueError("This SparseHeadConfig has no base_config; build it with SparseHeadConfig.from_base_model.")
        data = copy.deepcopy(self.base_config)
        model_type = data.get("model_type")
        if model_type not in CONFIG_MAPPING:
            raise ValueError(
                f"The base model type {model_type!r} is not known to this transformers installation; "
                "upgrade transformers or load the base model yourself and pass it as `base_model=`."
            )
        return CONFIG_MAPPING[model_type].from_dict(data)

    @classmethod
    def from_base_model(
        cls,
        base_model,
        *,
        head_module: str,
        modality: str,
        name_or_path: str | None = None,
        revision: str | None = None,
        **kwargs: Any,
    ) -> "SparseHeadConfig":
        """Build the config of a (not yet fitted) sparse-head model around a loaded transformers classifier."""
        from .. import __version__

        base_config = json.loads(base_model.config.to_json_string(use_diff=False))  # JSON form: str label ids
        base_config.pop("_name_or_path", None)
        return cls(
            base_config=base_config,
            base_model_name_or_path=None if name_or_path is None else str(name_or_path),
            base_model_revision=revision,
            base_architecture=type(base_model).__name__,
            modality=modality,
            head_module=head_module,
            hf_sparse_version=__version__,
            **kwargs,
        )


def register_config() -> None:
    """Let `AutoConfig` read hf_sparse configs (idempotent; done when this module is imported).

    Example:
        >>> register_config(); AutoConfig.for_model("hf_sparse")
    """
    from transformers import AutoConfig

    AutoConfig.register(MODEL_TYPE, SparseHeadConfig, exist_ok=True)


register_config()
