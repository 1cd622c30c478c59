"""The checks and defaults of `extract_features`' inputs: the dataset and its columns, the model's modality, its
tokenizer or image processor, the truncation length and the compute dtype (part of the cache key).

Example:
    >>> modality = modality_of(model)                               # "text" (input_ids) or "image" (pixel_values)
    >>> tokenizer = load_preprocessor(model, modality, None)        # from model.name_or_path
    >>> resolve_max_length(model, tokenizer, None)                  # e.g. 512
"""

from __future__ import annotations

from typing import Any

import torch
from datasets import Dataset
from torch import nn

#: Models whose position ids start after the padding index (max length = positions - pad - 1).
_OFFSET_POSITION_TYPES = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer"}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def as_dataset(data: Any) -> Any:
    """A pandas DataFrame becomes a `datasets.Dataset` (its index dropped); anything else is returned as it is.

    Example:
        >>> as_dataset(pandas.DataFrame({"text": ["a fine film"], "label": [1]})).column_names
        ['text', 'label']
    """
    if type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "columns"):
        return Dataset.from_pandas(data, preserve_index=False)
    return data


def check_dataset(dataset: Any) -> Dataset:
    """`dataset` when it is a non-empty `datasets.Dataset`, else an error saying how to make one."""
    if isinstance(dataset, Dataset):
        if len(dataset) == 0:
            raise ValueError("the dataset has no rows; there is nothing to extract.")
        return dataset
    if isinstance(dataset, dict) and all(isinstance(v, Dataset) for v in dataset.values()):
        raise TypeError(
            f"got a DatasetDict with splits {list(dataset.keys())}; pass one split, e.g. dataset['train']."
        )
    raise TypeError(
        f"dataset must be a datasets.Dataset, not {type(dataset).__name__} "
        "(for a pandas DataFrame, an IterableDataset or a list, build one with Dataset.from_pandas / "
        "Dataset.from_generator / Dataset.from_list)."
    )


def check_column(dataset: Dataset, name: str | None, role: str, argument: str) -> None:
    """An error naming the dataset's columns when column `name` (passed as `argument`) is not one of them."""
    if name is None or name not in dataset.column_names:
        hint = " or label_column=None for unlabelled data" if argument == "label_column" else ""
        raise ValueError(
            f"the {role} column {name!r} is not in the dataset; its columns are {dataset.column_names}. "
            f"Pass {argument}='<one of those>'{hint}."
        )


def modality_of(model: nn.Module) -> str:
    """"text" (a model taking input_ids) or "image" (pixel_values); anything else is an error."""
    name = getattr(model, "main_input_name", "input_ids")
    if name == "pixel_values":
        return "image"
    if name == "input_ids":
        return "text"
    raise ValueError(f"{type(model).__name__} takes {name!r} inputs; only text (input_ids) and image "
                     "(pixel_values) models are supported.")


def load_preprocessor(model: nn.Module, modality: str, given: Any) -> Any:
    """`given`, else the tokenizer (text) or image processor (image) saved at the model's path."""
    if given is not None:
        return given
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    argument = "tokenizer" if modality == "text" else "image_processor"
    if not path:
        raise ValueError(f"{type(model).__name__} was not loaded from a path, so its {argument} cannot be "
                         f"loaded for it; pass {argument}=.")
    # trust_remote_code always passed (the model's own setting; left out, transformers asks on stdin for an auto_map)
    trust = bool(getattr(model, "trust_remote_code", False))  # an hf_sparse model's public property
    try:
        if modality == "text":
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(path, trust_remote_code=trust)
    except Exception as err:  # noqa: BLE001 - re-raised with what to do
        raise ValueError(f"could not load a {argument} from {path!r} ({err}); pass {argument}=.") from err


def resolve_max_length(model: nn.Module, tokenizer: Any, max_length: int | None) -> int:
    """`max_length`, else the most tokens both the model's positions and the tokenizer allow (512 if neither says)."""
    if max_length is not None:
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}.")
        return int(max_length)
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and getattr(config, "model_type", None) in _OFFSET_POSITION_TYPES:
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    tok_limit = getattr(tokenizer, "model_max_length", None)
    candidates = [v for v in (limit, tok_limit) if v is not None and v < 100_000]
    return int(min(candidates)) if candidates else 512


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, param_dtype: torch.dtype) -> torch.dtype:
    """The dtype the forward pass computes in (part of the cache key).

    ``None``/``"auto"``: bf16 autocast (fp16 where bf16 is unsupported) for a float32
    model on GPU; otherwise the model's own dtype. A lower explicit dtype autocasts.
    """
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).replace("torch.", "")
    if dtype in (None, "auto"):
        if device.type == "cuda" and param_dtype == torch.float32:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return param_dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r}: use None/'auto', 'float32', 'bfloat16' or 'float16'.")
    wanted = _DTYPES[dtype]
    if wanted == torch.float32 and param_dtype != torch.float32:
        raise ValueError(
            f"dtype='float32' was asked for, but the model's weights are {param_dtype}; load it in float32 "
            "(from_pretrained(..., dtype=torch.float32)) or leave dtype=None."
        )
    return wanted
