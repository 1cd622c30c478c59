"""Run a model's encoder once over a dataset and cache the features of its classifier.

:func:`extract_features` is the entry point; see its docstring. The dataset is
cut into shards of ``shard_size`` consecutive rows (boundaries independent of
the number of processes). Within a shard, texts are sorted by token length so
batches carry little padding, and the features are put back in dataset order
before the shard is written. Under ``accelerate`` each process takes a
contiguous run of shards; the main process joins them. Because batches are the
same whatever the number of processes, the result is the same row for row.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import threading
import weakref
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from tqdm.auto import tqdm

from .cache import FeatureCache, default_cache_root, feature_schema, make_batch
from .fingerprint import features_fingerprint
from .inputs import check_column, check_dataset, load_preprocessor, modality_of, resolve_dtype, resolve_max_length
from .locate import FeatureExtractor, FeatureSpec, wrapped_classifier
from .processes import Processes
from .result import FeatureSet

#: Default number of dataset rows per cache shard (the unit of resumption).
DEFAULT_SHARD_SIZE = 4096


# -- tokenizer calls ------------------------------------------------------------------
_LOCKS_GUARD = threading.Lock()
_LOCKS: dict[int, threading.Lock] = {}
_SHARED_LOCK = threading.Lock()


def preprocessor_lock(preprocessor: Any) -> threading.Lock:
    """The lock hf_sparse holds around each call of ``preprocessor`` (one lock per tokenizer object).

    A fast tokenizer keeps its padding and truncation settings on the object and sets them at every call, so two
    threads calling one tokenizer with different settings (``model.encode`` pads, the extraction does not) get
    each other's: wrong token ids, without an error. Calls made through hf_sparse take this lock.

    Example::

        >>> with preprocessor_lock(tokenizer):
        ...     enc = tokenizer(texts, padding=True, return_tensors="pt")
    """
    key = id(preprocessor)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            try:
                weakref.finalize(preprocessor, _LOCKS.pop, key, None)
            except TypeError:  # cannot be weakly referenced: one lock for all such objects
                return _SHARED_LOCK
            lock = _LOCKS[key] = threading.Lock()
        return lock


# -- batches -------------------------------------------------------------------------
def _pad(encoding: dict[str, list], rows: np.ndarray, lengths: np.ndarray, tokenizer: Any) -> dict[str, torch.Tensor]:
    """Pad the tokenized ``rows`` to their longest, as ``tokenizer(..., padding=True)`` would."""
    width = int(lengths[rows].max())
    pad_values = {
        "input_ids": tokenizer.pad_token_id,
        "attention_mask": 0,
        "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
        "special_tokens_mask": 1,
    }
    left = getattr(tokenizer, "padding_side", "right") == "left"
    batch = {}
    for key, seqs in encoding.items():
        if key not in pad_values:
            continue
        out = np.full((len(rows), width), pad_values[key], dtype=np.int64)
        for r, i in enumerate(rows):
            seq = seqs[i]
            if left:
                out[r, width - len(seq) :] = seq
            else:
                out[r, : len(seq)] = seq
        batch[key] = torch.from_numpy(out)
    return batch


def _to_rgb(image: Any) -> Any:
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    elif isinstance(image, str):
        image = Image.open(image)
    elif isinstance(image, dict) and ("bytes" in image or "path" in image):
        import io

        image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
    if not isinstance(image, Image.Image):
        raise TypeError(f"cannot read an image from a {type(image).__name__}; use a datasets Image() column.")
    return image if image.mode == "RGB" else image.convert("RGB")


class _ShardRunner:
    """Computes the (index, label, features) record batch of one shard."""

    def __init__(self, model, dataset, preprocessor, spec, *, modality, data_column, label_column,
                 max_length, batch_size, device, compute_dtype, progress):
        self.extractor = FeatureExtractor(model, spec)
        self.modality = modality
        self.data = dataset.select_columns([data_column])
        self.data_column = data_column
        self.labels = dataset.select_columns([label_column]) if label_column is not None else None
        self.label_feature = dataset.features[label_column] if label_column is not None else None
        self.preprocessor = preprocessor
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.param_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        self.compute_dtype = compute_dtype
        self.progress = progress

    def _autocast(self):
        if self.compute_dtype == torch.float32 or self.compute_dtype == self.param_dtype:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype)

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        moved = {}
        for k, v in batch.items():
            if not isinstance(v, torch.Tensor):
                continue
            v = v.to(self.device, non_blocking=True)
            moved[k] = v.to(self.param_dtype) if v.is_floating_point() else v
        with torch.inference_mode(), self._autocast():
            return self.extractor(moved).float()

    def _batches(self, start: int, end: int):
        """Yield (positions within the shard, preprocessed batch)."""
        if self.modality == "text":
            texts = self.data[start:end][self.data_column]
            missing = [start + i for i, t in enumerate(texts) if not isinstance(t, str)]
            if missing:
                raise ValueError(
                    f"{len(missing)} row(s) of column {self.data_column!r} hold no text (e.g. rows {missing[:10]}: "
                    f"{[texts[i - start] for i in missing[:3]]}). Filter or fill them first "
                    "(empty strings are fine)."
                )
            tok = self.preprocessor
            if tok.pad_token_id is None:
                raise ValueError(f"{type(tok).__name__} has no pad token; set tokenizer.pad_token "
                                 "(e.g. to tokenizer.eos_token) before extracting.")
            with preprocessor_lock(tok):
                enc = tok(texts, truncation=True, max_length=self.max_length)
            enc = {k: enc[k] for k in enc.keys()}
            lengths = np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(texts))
            order = np.argsort(-lengths, kind="stable")  # longest first: peak memory shows at once
            for b in range(0, len(order), self.batch_size):
                rows = order[b : b + self.batch_size]
                yield rows, _pad(enc, rows, lengths, tok)
        else:
            for b in range(start, end, self.batch_size):
                stop = min(b + self.batch_size, end)
                images = [_to_rgb(im) for im in self.data[b:stop][self.data_column]]
                yield np.arange(b - start, stop - start), dict(self.preprocessor(images=images, return_tensors="pt"))

    def __call__(self, start: int, end: int):
        out: np.ndarray | None = None
        bad: list[int] = []
        for rows, batch in self._batches(start, end):
            feats = self._forward(batch)
            if feats.dim() != 2:
                raise ValueError(f"features must be (batch, d); got shape {tuple(feats.shape)}.")
            finite = torch.isfinite(feats).all(dim=1).cpu().numpy()
            if not finite.all():
                bad.extend(int(start + r) for r in rows[~finite])
            if out is None:
                out = np.empty((end - start, feats.shape[1]), dtype=np.float32)
            out[rows] = feats.cpu().numpy()
            self.progress.update(len(rows))
        if bad:
            bad.sort()
            raise FloatingPointError(
                f"the features of {len(bad)} row(s) contain NaN or inf: dataset rows {bad[:20]}"
                f"{' ...' if len(bad) > 20 else ''}. Check those inputs; with half precision, try dtype='float32'."
            )
        labels = self.labels[start:end][self.labels.column_names[0]] if self.labels is not None else None
        if labels is not None and any(v is None for v in labels):
            rows = [start + i for i, v in enumerate(labels) if v is None][:10]
            raise ValueError(f"rows {rows} have no label; filter them or pass label_column=None.")
        schema = feature_schema(out.shape[1], self.label_feature)
        return make_batch(np.arange(start, end), out, labels, schema)


# -- entry point ---------------------------------------------------------------------
def extract_features(
    model: nn.Module,
    dataset: Dataset,
    tokenizer: Any = None,
    *,
    text_column: str = "text",
    image_column: str = "image",
    label_column: str | None = "label",
    image_processor: Any = None,
    pooling: str | None = None,
    layer: int | None = None,
    max_length: int | None = None,
    batch_size: int = 64,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    accelerator: Any = None,
    model_fingerprint: str | None = None,
    show_progress: bool = True,
) -> FeatureSet:
    """Features of ``dataset`` under ``model``, computed once and cached.

    By default the features are exactly the input of the model's final
    classification ``nn.Linear``, so ``head(feats.features)`` reproduces the
    model's logits. For a bare encoder pass ``pooling="mean"`` (over the
    attention mask), ``"cls"`` or ``"pooler"``, and optionally ``layer=`` (an
    index into ``hidden_states``).

    For an hf_sparse model the features are the sparse head's input (its own tokenizer or image processor is
    used unless one is given): the cache entry ``fit_sparse_head`` wrote for the same data and options, and
    ``model.sparse_head(feats.features)`` gives the model's logits.

    Args:
        model: a transformers text or image classifier, a bare encoder, or an hf_sparse model.
        dataset: one ``datasets.Dataset`` split.
        tokenizer: for text models; loaded from ``model.name_or_path`` when omitted.
        text_column / image_column / label_column: columns to read
            (``label_column=None`` for unlabelled data).
        image_processor: for image models; loaded from the model's path when omitted.
        max_length: truncation length (default: what the model and tokenizer allow).
        batch_size: rows per forward pass. Texts are batched by length.
        dtype: compute dtype; ``None`` autocasts a float32 model to bf16 (fp16) on GPU
            and keeps the model's dtype on CPU. Stored features are always float32.
        device: move the model there first (default: where it is; under
            ``accelerate``, each process's device).
        cache_dir: cache root (default ``$HF_SPARSE_FEATURES_CACHE`` or
            ``<datasets cache>/hf_sparse_features``).
        shard_size: rows per shard (the unit of resumption and of work per process).
        accelerator: an ``accelerate.Accelerator``; found automatically under torchrun.
        model_fingerprint: replaces the hash of the weights in the cache key.
        show_progress: a tqdm bar with rows per second (main process only).

    Returns:
        A :class:`FeatureSet` over the memory-mapped cache.

    Example::

        >>> feats = extract_features(model, dataset, tokenizer, text_column="sentence")
        >>> torch.allclose(model.classifier(feats.features), logits, atol=1e-5)
        True
        >>> feats = extract_features(sparse_model, dataset, text_column="sentence")   # an hf_sparse model
        >>> logits = sparse_model.sparse_head(feats.features)
    """
    inner = wrapped_classifier(model)
    if inner is not None:
        if device is not None:  # moved here: the wrapped classifier shares the model's modules, not its root
            model.to(device)
        return _extract_sparse_model(
            model, inner, dataset, tokenizer, text_column=text_column, image_column=image_column,
            label_column=label_column, image_processor=image_processor, pooling=pooling, layer=layer,
            max_length=max_length, batch_size=batch_size, dtype=dtype, cache_dir=cache_dir, shard_size=shard_size,
            accelerator=accelerator, model_fingerprint=model_fingerprint, show_progress=show_progress,
        )
    dataset = check_dataset(dataset)
    modality = modality_of(model)
    data_column = text_column if modality == "text" else image_column
    check_column(dataset, data_column, modality, f"{modality}_column")
    if label_column is not None:
        check_column(dataset, label_column, "label", "label_column")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be positive, got {batch_size} and {shard_size}.")
    given = (image_processor if image_processor is not None else tokenizer) if modality == "image" else tokenizer
    preprocessor = load_preprocessor(model, modality, given)
    spec = FeatureSpec.resolve(model, pooling, layer)
    procs = Processes.current(accelerator)

    if device is not None:
        model.to(device)
    elif procs.distributed and procs.state.device.type != "cpu":
        model.to(procs.state.device)
    model_device = next(model.parameters()).device
    param_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    compute_dtype = resolve_dtype(dtype, model_device, param_dtype)
    max_len = resolve_max_length(model, preprocessor, max_length) if modality == "text" else None

    key, parts = features_fingerprint(
        dataset, model, preprocessor, spec.as_dict(), max_length=max_len,
        dtype=str(compute_dtype).replace("torch.", ""),
        columns={"data": data_column, "label": label_column}, model_fingerprint=model_fingerprint,
    )
    cache = FeatureCache(cache_dir if cache_dir is not None else default_cache_root(), key)
    meta = {
        "key": key,
        "fingerprint": parts,
        "source": spec.as_dict(),
        "model": parts["model"]["name"],
        "columns": {"data": data_column, "label": label_column},
        "max_length": max_len,
        "dtype": parts["dtype"],
        "shard_size": shard_size,
    }

    if not procs.main_says(cache.is_complete()):
        n = len(dataset)
        ranges = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
        mine = procs.my_shards(ranges)
        if procs.is_main:
            cache.prepare()
        procs.barrier()
        cache.prepare()
        show = show_progress and procs.is_local_main
        try:
            from datasets.utils import are_progress_bars_disabled

            show = show and not are_progress_bars_disabled()
        except ImportError:  # pragma: no cover
            pass
        todo = sum(e - s for s, e in mine)
        done = sum(e - s for s, e in mine if cache.has_shard(s, e))
        progress = tqdm(total=todo, initial=done, unit="rows", disable=not show,
                        desc=f"Extracting features ({spec.source})")
        # Only modules in training mode are switched (and switched back): a model already in eval mode, e.g. one
        # serving other threads, is not written to at all.
        training = [m for m in model.modules() if m.training]
        for m in training:
            m.training = False
        try:
            runner = _ShardRunner(
                model, dataset, preprocessor, spec, modality=modality, data_column=data_column,
                label_column=label_column, max_length=max_len, batch_size=batch_size,
                device=model_device, compute_dtype=compute_dtype, progress=progress,
            )
            for start, end in mine:
                if cache.is_complete():  # another process finished the whole entry
                    break
                if cache.has_shard(start, end):
                    continue
                with cache.lock(cache.shard_name(start, end)):
                    if cache.has_shard(start, end) or cache.is_complete():
                        continue
                    cache.remove_stale_temporaries(start, end)
                    cache.write_shard(start, end, runner(start, end))
        finally:
            for m in training:
                m.training = True
            progress.close()
        procs.barrier()
        if procs.is_main:
            meta["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            cache.finalize(ranges, meta)
        procs.barrier()
    return FeatureSet(cache.load(), cache.read_meta() or meta, cache.final_path)


def _extract_sparse_model(model: nn.Module, inner: nn.Module, dataset: Dataset, tokenizer: Any, *,
                          image_processor: Any, **kwargs) -> FeatureSet:
    """`extract_features` of an hf_sparse `model`: the features of the classifier it wraps (`inner`), with the
    model's own tokenizer or image processor when none is given. As `fit_sparse_head` calls it, so a fitted
    model's cache entry is found again."""
    modality = modality_of(model)
    given = (image_processor if image_processor is not None else tokenizer) if modality == "image" else tokenizer
    if given is None:
        given = getattr(model, "processor", None)
    if given is None:
        argument = "tokenizer" if modality == "text" else "image_processor"
        raise ValueError(
            f"{type(model).__name__} has no {argument} (none was given, and none was saved with it or its base "
            f"model): pass {argument}= (or set model.processor)."
        )
    if modality == "text":
        return extract_features(inner, dataset, given, **kwargs)
    return extract_features(inner, dataset, None, image_processor=given, **kwargs)
