"""Push an hf_sparse model to the Hub with its model card, its pictures, descriptions and audits.

A card that already exists in the repository is updated in place: its text outside the hf_sparse markers and its
metadata keys are kept (see `hf_sparse.card.merge_card`).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

from ..constants import MODEL_CARD_NAME

logger = logging.getLogger(__name__)


def existing_card(api, repo_id: str, revision: str | None = None) -> str | None:
    """The README.md already in `repo_id` (at `revision`), or None when there is none or it cannot be read."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        path = api.hf_hub_download(repo_id=repo_id, filename=MODEL_CARD_NAME, repo_type="model", revision=revision)
    except (EntryNotFoundError, RepositoryNotFoundError, LocalEntryNotFoundError):
        return None
    except HfHubHTTPError as err:
        logger.warning("could not read the existing model card of %s (%s); writing a new one", repo_id, err)
        return None
    return Path(path).read_text(encoding="utf-8")


def _tag_list(tags) -> list[str]:
    tags = [tags] if isinstance(tags, str) else list(tags)
    if not all(isinstance(tag, str) and tag.strip() for tag in tags):
        raise TypeError(f"tags must be a string or a list of non-empty strings, got {tags!r}")
    return tags


def add_card_tags(readme: str | Path, tags: list[str] | str) -> list[str]:
    """Add `tags` to the `tags` of the model card `readme` (kept in order, no duplicates; a card holding only this
    metadata is written when there is none). Returns the card's tags.

    Example:
        >>> add_card_tags("out/README.md", ["sentiment", "minilm"])
        ['hf_sparse', 'sparse-linear-head', 'interpretability', 'transformers', 'sentiment', 'minilm']
    """
    from huggingface_hub import ModelCard, ModelCardData

    tags = _tag_list(tags)
    readme = Path(readme)
    card = ModelCard(readme.read_text(encoding="utf-8")) if readme.is_file() else ModelCard.from_template(ModelCardData())
    merged = list(dict.fromkeys([*(card.data.tags or []), *tags]))
    card.data.tags = merged
    readme.write_text(str(card), encoding="utf-8")
    return merged


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
    card_kwargs: dict | None = None,
    tags: list[str] | str | None = None,
    **kwargs,
):
    """Create `repo_id` if needed, save the model (or the head) with its card and pictures, upload in one commit.

    `tags` (a string or a list) are added to the card's metadata `tags`, after those the card already has.
    Returns the `CommitInfo` of the upload.

    Example:
        ```python
        >>> push_to_hub(model, "user/sst2-minilm-sparse", private=True, tags=["sentiment"],
        ...             card_kwargs={"dataset_name": "sst2"})
        ```
    """
    from huggingface_hub import HfApi

    for key in ("max_shard_size", "safe_serialization"):
        kwargs.pop(key, None)
    if kwargs:
        raise TypeError(f"push_to_hub got unexpected arguments {sorted(kwargs)}")
    tags = _tag_list(tags) if tags is not None else None
    base = model.config.base_model_name_or_path
    if head_only and base and Path(base).expanduser().exists():
        warnings.warn(
            f"This head-only checkpoint points to its base model by the local path {base!r}: others who load "
            f"{repo_id!r} will not find it. Push the full model (head_only=False), or fit the head on a model "
            "loaded from the Hub so that the checkpoint names its Hub id.", UserWarning, stacklevel=3)
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    with tempfile.TemporaryDirectory() as tmp:
        current = existing_card(api, repo_id, revision)
        if current is not None:
            (Path(tmp) / MODEL_CARD_NAME).write_text(current, encoding="utf-8")
        model.save_pretrained(tmp, head_only=head_only, card_kwargs={"repo_id": repo_id, **(card_kwargs or {})})
        if tags:
            add_card_tags(Path(tmp) / MODEL_CARD_NAME, tags)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            repo_type="model",
            commit_message=commit_message or ("Upload sparse head" if head_only else "Upload model with sparse head"),
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )
