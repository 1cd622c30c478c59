"""`SparseModelCardData`: the typed metadata of a sparse-head model card (as setfit's `SetFitModelCardData`).

A `huggingface_hub.CardData` dataclass. The fields a user sets (`USER_FIELDS`: language, license, model name, the
Hub ids of the model, its base model and its datasets, widget examples, extra tags, the name of the evaluation
split) are checked when set and, on `model.model_card_data`, written through to `model.config.card_data`, so they
are saved with the model (`save_pretrained`) and kept by every later card refresh (`hf-sparse audit` refreshes the
card). The other fields (pipeline tag, library, framework versions, training-data size, label counts, eval results)
are filled from the model each time a card is rendered (`from_model`).

Example:
    >>> model.model_card_data.license = "apache-2.0"
    >>> model.model_card_data.update(base_model="sentence-transformers/all-MiniLM-L6-v2", datasets=["stanfordnlp/sst2"],
    ...                              language="en")
    >>> model.save_pretrained("out")        # config.json keeps them; out/README.md shows them
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field, fields
from importlib import metadata

from huggingface_hub import CardData

from ..text_safety import visible_text

#: The fields a user sets; saved in `config.card_data`.
USER_FIELDS = ("language", "license", "model_name", "model_id", "base_model", "datasets", "widget", "tags",
               "eval_split")
#: The fields filled from the model when a card is rendered (not saved: they would go stale).
DERIVED_FIELDS = ("pipeline_tag", "library_name", "framework_versions", "train_size", "label_counts", "eval_results",
                  "metrics")
DEFAULT_TAGS = ["hf_sparse", "sparse-linear-head", "interpretability", "transformers"]
PIPELINE_TAGS = {"text": "text-classification", "image": "image-classification"}
_LANGUAGE = re.compile(r"^(?:[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*|multilingual)$")
_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+\-_]{0,63}$")
_SPLIT = re.compile(r"^[\w.\-]{1,64}$")
_PACKAGES = ("hf_sparse", "transformers", "torch", "huggingface_hub", "datasets")


def check_repo_id(repo_id, what: str = "repo_id", example: str = "user/model-name", hint: str = "") -> None:
    """A `ValueError` unless `repo_id` is None or a valid Hub repo id (``name`` or ``owner/name``: letters, digits,
    ``-``, ``_``, ``.``; at most 96 characters), so that it cannot break out of the card's code block or metadata.

    Example:
        >>> check_repo_id("user/sst2-sparse")
    """
    if repo_id is None:
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str):
        raise ValueError(f"{what} must be a string such as {example!r}, not {type(repo_id).__name__}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ValueError(
            f"{what} {visible_text(repo_id)!r} is not a Hub repo id: give 'name' or 'owner/name' of letters, digits, "
            "'-', '_' and '.' (at most 96 characters, no '--' or '..', not starting or ending with '-' or '.')" + hint
        ) from None


def is_hub_id(name) -> bool:
    """True when `name` reads as a Hub repo id and not as a local path (absolute, ``./``, ``~``, an existing folder).

    Example:
        >>> is_hub_id("sentence-transformers/all-MiniLM-L6-v2"), is_hub_id("/tmp/runs/minilm")
        (True, False)
    """
    if not isinstance(name, str) or not name or os.path.isabs(name) or name.startswith((".", "~")):
        return False
    if os.path.exists(name):
        return False
    try:
        check_repo_id(name)
    except ValueError:
        return False
    return True


def _strings(name: str, value, example: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be a string or a list of strings such as {example}, got {value!r}")
    return list(values)


def _check(name: str, value):
    """`value` checked and normalized for the user field `name` (None: unset)."""
    if value is None:
        return None
    if name in ("base_model", "model_id"):
        example = "sentence-transformers/all-MiniLM-L6-v2" if name == "base_model" else "user/sst2-sparse"
        hint = ("; a local folder is no Hub id: leave base_model unset and the card names the folder"
                if name == "base_model" else "")
        check_repo_id(value, name, example, hint)
        return value
    if name == "datasets":
        ids = _strings(name, value, "['stanfordnlp/sst2']")
        for dataset in ids:
            check_repo_id(dataset, "datasets entry", "stanfordnlp/sst2")
        return ids or None
    if name == "language":
        codes = _strings(name, value, "'en' or ['en', 'fr']")
        bad = [c for c in codes if not _LANGUAGE.match(c)]
        if bad:
            raise ValueError(f"language must be ISO 639 codes such as 'en' or ['en', 'fr'] (or 'multilingual'); "
                             f"{visible_text(bad[0])!r} is not one")
        return codes[0] if len(codes) == 1 else codes
    if name == "license":
        if not isinstance(value, str) or not _LICENSE.match(value):
            raise ValueError(f"license must be a Hub license id such as 'apache-2.0', 'mit' or 'cc-by-4.0' (lower "
                             f"case, no spaces), got {visible_text(str(value))!r}")
        return value
    if name == "widget":
        items = [value] if isinstance(value, (str, dict)) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"widget must be a list of example inputs (strings, or dicts such as "
                             f"{{'text': 'a gorgeous film'}}), got {value!r}")
        out = []
        for item in items:
            if isinstance(item, str):
                item = {"text": item}
            strings = isinstance(item, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in item.items())
            if not strings:
                raise ValueError(f"widget examples must be strings or dicts of strings such as {{'text': 'a gorgeous "
                                 f"film'}}, got {item!r}")
            out.append(dict(item))
        return out or None
    if name == "tags":
        return _strings(name, value, "['sentiment']") or None
    if name == "model_name":
        if not isinstance(value, str) or not value.strip() or "\n" in value:
            raise ValueError(f"model_name must be a one-line string, got {value!r}")
        return value
    if name == "eval_split":
        if not isinstance(value, str) or not _SPLIT.match(value):
            raise ValueError(f"eval_split must be the dataset's name of the evaluation split, such as 'validation' "
                             f"(letters, digits, '_', '-', '.'), got {value!r}")
        return value
    return value


def framework_versions() -> dict[str, str]:
    """{"python": ..., "hf_sparse": ..., "transformers": ..., ...}: the versions installed now (`datasets` only when
    installed)."""
    out = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            out[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            try:
                out[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                continue
    return out


@dataclass
class SparseModelCardData(CardData):
    """The model card's metadata. Set `USER_FIELDS` (checked when set); the rest is filled from the model.

    - `language`: ISO 639 code(s), e.g. ``"en"``; `license`: a Hub license id, e.g. ``"apache-2.0"``;
    - `model_name`: the card's title and the model-index name; `model_id`: this model's Hub repo id (the usage
      snippet loads it); `base_model`: the Hub id of the pretrained model it was made from;
    - `datasets`: Hub dataset ids, e.g. ``["stanfordnlp/sst2"]`` (the model-index names the first);
    - `widget`: example inputs for the Hub's inference widget (strings or ``{"text": ...}``); `tags`: extra tags;
    - `eval_split`: the dataset's name for the split the metrics were measured on, e.g. ``"validation"``.

    Example:
        >>> data = SparseModelCardData(license="apache-2.0", datasets="stanfordnlp/sst2")
        >>> data.update(language="en"); data.datasets
        ['stanfordnlp/sst2']
    """

    language: str | list[str] | None = None
    license: str | None = None
    model_name: str | None = None
    model_id: str | None = None
    base_model: str | None = None
    datasets: list[str] | None = None
    widget: list[dict] | None = None
    tags: list[str] | None = None
    eval_split: str | None = None
    # filled from the model (`from_model`), never saved
    pipeline_tag: str | None = field(default=None, init=False)
    library_name: str = field(default="hf_sparse", init=False)
    framework_versions: dict = field(default_factory=dict, init=False)
    train_size: int | None = field(default=None, init=False)
    label_counts: dict | None = field(default=None, init=False)
    eval_results: list | None = field(default=None, init=False)
    metrics: list | None = field(default=None, init=False)

    def __setattr__(self, name, value):
        if name in USER_FIELDS:
            value = _check(name, value)
        object.__setattr__(self, name, value)
        if name in USER_FIELDS:
            owner = self.__dict__.get("_owner")
            if owner is not None:  # write through to the model's config (saved with it)
                owner.config.card_data = self.user_fields() or None

    def update(self, **values) -> "SparseModelCardData":
        """Set several user fields at once (each checked); returns self.

        Example:
            >>> model.model_card_data.update(license="mit", datasets=["stanfordnlp/sst2"])
        """
        for name in values:
            if name in DERIVED_FIELDS:
                raise ValueError(f"{name} is filled from the model each time the card is rendered; set one of "
                                 f"{', '.join(USER_FIELDS)}")
            if name not in USER_FIELDS:
                raise TypeError(f"unknown model-card field {name!r}; the fields a user sets are "
                                f"{', '.join(USER_FIELDS)}")
        for name, value in values.items():
            setattr(self, name, value)
        return self

    def user_fields(self) -> dict:
        """The user fields that are set, as JSON (what `config.card_data` holds)."""
        return {name: getattr(self, name) for name in USER_FIELDS if getattr(self, name) is not None}

    @classmethod
    def from_user_fields(cls, data: dict | None) -> "SparseModelCardData":
        """Rebuild from `config.card_data` (keys this version does not know are left out).

        Example:
            >>> SparseModelCardData.from_user_fields({"license": "mit"}).license
            'mit'
        """
        return cls(**{k: v for k, v in (data or {}).items() if k in USER_FIELDS})

    def bind(self, model) -> "SparseModelCardData":
        """Write every later change of a user field through to `model.config.card_data`; returns self."""
        object.__setattr__(self, "_owner", model)
        return self

    def merged(self, other: "SparseModelCardData | dict | None") -> "SparseModelCardData":
        """A new, unbound copy with `other`'s set user fields over this one's.

        Example:
            >>> SparseModelCardData(license="mit").merged({"language": "en"}).user_fields()
            {'language': 'en', 'license': 'mit'}
        """
        if isinstance(other, SparseModelCardData):
            other = other.user_fields()
        elif other is not None and not isinstance(other, dict):
            raise TypeError(f"card_data must be a SparseModelCardData or a dict of its fields, not "
                            f"{type(other).__name__}")
        out = SparseModelCardData.from_user_fields(self.user_fields())
        return out.update(**{k: v for k, v in (other or {}).items() if v is not None})

    def to_dict(self) -> dict:
        """The card's YAML metadata: language, license, library, pipeline tag, base_model (a Hub id only),
        datasets, tags, metrics, widget and the model-index (eval results)."""
        from huggingface_hub import ModelCardData

        data = ModelCardData(
            language=self.language, license=self.license, library_name=self.library_name,
            pipeline_tag=self.pipeline_tag, base_model=self.base_model, datasets=self.datasets,
            tags=DEFAULT_TAGS + [t for t in (self.tags or []) if t not in DEFAULT_TAGS], metrics=self.metrics,
            model_name=self.model_name or self.model_id or self.__dict__.get("_index_name") or "sparse-head-model",
            eval_results=self.eval_results or None,
            widget=self.widget,
        ).to_dict()
        if not self.eval_results:
            data.pop("model_name", None)
        return data

    def __repr__(self):
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name))
        return f"SparseModelCardData({shown})"
