"""Push an hf_sparse model to the Hub with a model card (a minimal one until `hf_sparse.card` provides more)."""

from __future__ import annotations

import os
import tempfile

from .constants import MODEL_CARD_NAME

PIPELINE_TAGS = {"text": "text-classification", "image": "image-classification"}


def minimal_model_card(model) -> str:
    """A short model card: what the model is, its base model, the fit and dense-versus-sparse metrics.

    Example:
        ```python
        >>> print(minimal_model_card(model))
        ```
    """
    from huggingface_hub import ModelCardData

    config = model.config
    summary = model.head_summary()
    base = config.base_model_name_or_path
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAGS.get(config.modality),
        tags=["hf_sparse", "sparse-linear-head", "interpretability"],
        base_model=base if base and not os.path.isdir(base) else None,
    )
    dense = config.dense_metrics or {}
    sparse = config.sparse_metrics or {}
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {os.path.basename(str(base or 'model'))} with a sparse linear head",
        "",
        "The final linear layer of this classifier was replaced by a sparse one, fit with an elastic-net",
        "regularization path on the classifier's own features (Wong, Santurkar & Madry 2021), so each class",
        "depends on a few features. Load it with `hf_sparse` installed:",
        "",
        "```python",
        "import hf_sparse",
        "from transformers import pipeline",
        f'pipe = pipeline("{PIPELINE_TAGS.get(config.modality, "text-classification")}", model="REPO_ID")',
        "```",
        "",
        "| | value |",
        "| --- | --- |",
        f"| base model | {base or 'unknown'} |",
        f"| base revision | {config.base_model_revision or 'unknown'} |",
        f"| family / alpha | {config.family} / {config.alpha} |",
        f"| selection | {config.selection} |",
        f"| lambda | {config.selected_lambda} |",
        f"| features per class | {summary['mean_features_per_class']:.2f} |",
        f"| distinct features used | {summary['n_features']} of {summary['num_features']} |",
    ]
    if "accuracy" in dense or "accuracy" in sparse:
        lines.append(f"| accuracy, dense head | {dense.get('accuracy')} |")
        lines.append(f"| accuracy, sparse head | {sparse.get('accuracy')} |")
    if dense.get("split"):
        lines.append(f"| metrics computed on | {dense['split']} |")
    return "\n".join(lines) + "\n"


def push_to_hub(
    model,
    repo_id: str,
    *,
    head_only: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    card: str | None = None,
    **kwargs,
):
    """Create `repo_id` if needed, save the model (or the head) with a model card, upload it in one commit.

    `card`: the model card text (default: `minimal_model_card(model)`); the card module passes its own.
    Returns the `CommitInfo` of the upload.
    """
    from huggingface_hub import HfApi

    for key in ("max_shard_size", "safe_serialization", "tags"):
        kwargs.pop(key, None)
    if kwargs:
        raise TypeError(f"push_to_hub got unexpected arguments {sorted(kwargs)}")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, head_only=head_only)
        text = card if card is not None else minimal_model_card(model).replace("REPO_ID", repo_id)
        with open(os.path.join(tmp, MODEL_CARD_NAME), "w", encoding="utf-8") as f:
            f.write(text)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            repo_type="model",
            commit_message=commit_message or ("Upload sparse head" if head_only else "Upload model with sparse head"),
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )
