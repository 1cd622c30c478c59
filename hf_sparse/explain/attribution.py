"""Which words drive a sparse head's features: word-level attributions for text models.

A *feature* is one column of the sparse head's input (`model.encode(texts)[:, j]`). For each text and each
requested feature, every word gets a score:

- `method="occlusion"` (default): activation of the feature on the full text minus its activation with the word
  deleted; all the variants of many texts run batched, in one forward pass per batch.
- `method="gradient"`: gradient x input on the word embeddings, summed over the embedding dimension and over the
  word's pieces (one backward pass per feature and batch). About twice as fast, but only a first-order estimate:
  on a fine-tuned MiniLM it did not agree with occlusion or LIME (benchmarks/RESULTS.md, "Word attribution vs
  LIME"), so use occlusion to explain a feature and the gradient only for a quick look.

A word is a whole word as the (fast) tokenizer's pre-tokenizer splits it (`word_ids()`), never a word piece: the
pieces "un", "##fl", "##in", "##ching", "##ly" form the single word "unflinchingly".

Example:
    ```python
    >>> from hf_sparse.explain import word_attributions, top_words
    >>> attrs = word_attributions(model, ["a charming and often affecting journey"], features=[12, 301])
    >>> attrs[0].words, attrs[0].scores.shape            # ['a', 'charming', ...], (6, 2)
    >>> attrs[0].ranked(12)[:3]                          # [('charming', 0.81), ...]
    >>> top_words(word_attributions(model, many_texts, [12]), feature=12, k=5)   # [(word, mean score, count)]
    ```
"""

from __future__ import annotations

import contextlib
import operator
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from hf_sparse.features.extract import preprocessor_lock

__all__ = ["WordAttribution", "check_features", "top_words", "word_attributions"]

METHODS = ("occlusion", "gradient")


@dataclass
class WordAttribution:
    """The word attributions of one text.

    `scores[w, i]` is word `w`'s attribution for feature `features[i]`; `activation[i]` is that feature's value on
    the full text; `spans[w]` is the (start, end) character span of `words[w]` in `text`.
    """

    text: str
    words: list[str]
    spans: list[tuple[int, int]]
    scores: torch.Tensor
    activation: torch.Tensor
    features: list[int]
    method: str = "occlusion"

    def column(self, feature: int) -> int:
        """The column of `scores` that holds `feature`."""
        try:
            return self.features.index(int(feature))
        except ValueError:
            raise ValueError(
                f"feature {feature} was not attributed here; these attributions cover {self.features}"
            ) from None

    def ranked(self, feature: int) -> list[tuple[str, float]]:
        """(word, score) pairs for `feature`, highest score first."""
        col = self.scores[:, self.column(feature)].tolist()
        order = sorted(range(len(self.words)), key=lambda w: -col[w])
        return [(self.words[w], col[w]) for w in order]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists and floats only)."""
        return {
            "text": self.text,
            "words": list(self.words),
            "spans": [list(s) for s in self.spans],
            "scores": self.scores.tolist(),
            "activation": self.activation.tolist(),
            "features": list(self.features),
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordAttribution:
        """The inverse of `to_dict`."""
        features = [int(f) for f in data["features"]]
        scores = torch.tensor(data["scores"], dtype=torch.float32).reshape(len(data["words"]), len(features))
        return cls(
            text=data["text"],
            words=list(data["words"]),
            spans=[(int(a), int(b)) for a, b in data["spans"]],
            scores=scores,
            activation=torch.tensor(data["activation"], dtype=torch.float32),
            features=features,
            method=data.get("method", "occlusion"),
        )


# ----------------------------------------------------------------------------- checks shared with image_attribution
def check_features(model, features: int | Iterable[int]) -> list[int]:
    """`features` as a list of ints, each a valid column of `model`'s sparse head input (else a ValueError)."""
    n = model.sparse_head.in_features
    if isinstance(features, int) or (isinstance(features, torch.Tensor) and features.ndim == 0):
        features = [features]
    try:
        out = [operator.index(f) for f in features]
    except TypeError:
        raise TypeError(f"features must be feature indices (ints); got {features!r}") from None
    if not out:
        raise ValueError("features is empty: pass one or more feature indices")
    bad = [f for f in out if not 0 <= f < n]
    if bad:
        raise ValueError(
            f"feature index {bad[0] if len(bad) == 1 else bad} out of range: this model's sparse head has {n} input "
            f"features, so valid indices are 0..{n - 1}"
        )
    return out


@contextlib.contextmanager
def eval_mode(model):
    """Dropout off for the duration (attributions of a model in training mode would be random)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def head_input(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sparse head's input (batch, num_features) for already-prepared model inputs."""
    return model(**inputs, output_contributions=True).features


def model_device(model) -> torch.device:
    return model.sparse_head.values.device


# ----------------------------------------------------------------------------- words
def _check_texts(model, texts) -> list[str]:
    if getattr(model, "modality", "text") != "text":
        raise TypeError(
            f"word_attributions needs a text model (SparseHeadForSequenceClassification); {type(model).__name__} "
            "is an image model: use hf_sparse.explain.occlusion_heatmaps"
        )
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, dict, torch.Tensor)) or hasattr(texts, "convert") or not isinstance(texts, Iterable):
        raise TypeError(f"word_attributions takes a string or a list of strings; got {type(texts).__name__}")
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"word_attributions takes a string or a list of strings; got a {type(t).__name__} in the list")
    return texts


def _tokenize(tokenizer, texts: list[str], max_length: int):
    """Per text: the token rows (dict of per-token lists) and the words (token positions, span, string)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer: word attributions need word_ids() and offsets. "
            "Load the tokenizer with AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    with preprocessor_lock(tokenizer):  # a fast tokenizer keeps its padding/truncation settings on itself
        enc = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
    keys = [k for k in enc.keys() if k != "offset_mapping"]
    rows, words = [], []
    for i, text in enumerate(texts):
        rows.append({k: list(enc[k][i]) for k in keys})
        groups: dict[int, list[int]] = {}
        for pos, wid in enumerate(enc.word_ids(i)):
            if wid is not None:
                groups.setdefault(wid, []).append(pos)
        offsets = enc["offset_mapping"][i]
        text_words = []
        for positions in groups.values():
            start = min(offsets[p][0] for p in positions)
            end = max(offsets[p][1] for p in positions)
            # byte-level BPE tokenizers (RoBERTa) may count the leading space in the offsets
            while start < end and text[start].isspace():
                start += 1
            text_words.append((positions, (start, end), text[start:end]))
        words.append(text_words)
    return rows, words


def _pad(rows: list[dict[str, list[int]]], tokenizer, device) -> dict[str, torch.Tensor]:
    """Right-pad token rows into tensors (right padding keeps RoBERTa/MPNet position ids those of `input_ids`)."""
    width = max(len(r["input_ids"]) for r in rows)
    pad_value = {
        "input_ids": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
        "attention_mask": 0,
    }
    out = {}
    for key in rows[0]:
        fill = pad_value.get(key, 0)
        out[key] = torch.tensor([r[key] + [fill] * (width - len(r[key])) for r in rows], dtype=torch.long, device=device)
    return out


@torch.no_grad()
def _occlusion(model, tokenizer, rows, words, features, batch_size):
    # A word is occluded by deleting its tokens, not by [MASK] or [PAD]: the classifier was fine-tuned on text
    # without masks, so a [MASK] is itself a signal that moves features, whereas the text without the word is an
    # ordinary input. Deletion is also what LIME does to a text ("word absent"), so the two compare directly.
    variants = []  # (text index, word index or -1 for the full text, token row)
    for i, (row, text_words) in enumerate(zip(rows, words)):
        variants.append((i, -1, row))
        for w, (positions, _, _) in enumerate(text_words):
            drop = set(positions)
            variants.append((i, w, {k: [v for p, v in enumerate(vals) if p not in drop] for k, vals in row.items()}))
    variants.sort(key=lambda v: len(v[2]["input_ids"]))  # similar lengths together: little padding
    device = model_device(model)
    full = [None] * len(rows)
    without = [torch.empty(len(w), len(features)) for w in words]
    for start in range(0, len(variants), batch_size):
        chunk = variants[start : start + batch_size]
        acts = head_input(model, _pad([v[2] for v in chunk], tokenizer, device))[:, features].float().cpu()
        for (i, w, _), act in zip(chunk, acts):
            if w < 0:
                full[i] = act
            else:
                without[i][w] = act
    return full, [full[i].unsqueeze(0) - without[i] for i in range(len(rows))]


def _gradient(model, tokenizer, rows, words, features, batch_size):
    embedding = model.model.get_input_embeddings()
    device = model_device(model)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    full = [None] * len(rows)
    scores = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        inputs = _pad([rows[i] for i in idx], tokenizer, device)
        with torch.no_grad():
            embeds = embedding(inputs.pop("input_ids"))
        embeds.requires_grad_(True)
        with torch.enable_grad():
            acts = head_input(model, {**inputs, "inputs_embeds": embeds})[:, features]
            # texts in a batch do not interact (eval mode), so the gradient of the batch sum is each text's own
            token_scores = torch.stack(
                [
                    (torch.autograd.grad(acts[:, j].sum(), embeds, retain_graph=j + 1 < len(features))[0] * embeds)
                    .sum(-1)
                    .detach()
                    for j in range(len(features))
                ],
                dim=-1,
            ).float().cpu()  # (batch, tokens, features)
        for b, i in enumerate(idx):
            full[i] = acts[b].detach().float().cpu()
            per_word = [token_scores[b, positions].sum(0) for positions, _, _ in words[i]]
            scores[i] = torch.stack(per_word) if per_word else torch.empty(0, len(features))
    return full, scores


def word_attributions(
    model,
    texts: str | Sequence[str],
    features: int | Sequence[int],
    *,
    method: str = "occlusion",
    batch_size: int = 64,
    max_length: int = 128,
    processor=None,
) -> list[WordAttribution]:
    """Attribute each requested feature of the sparse head's input to the words of each text.

    `features` are column indices of the head's input; `batch_size` counts forward rows (occluded variants, or texts
    for the gradient); texts are truncated to `max_length` tokens and words past it get no score. `processor`
    defaults to `model.processor` and must be a fast tokenizer. Returns one `WordAttribution` per text, in order.

    Example:
        ```python
        >>> [a] = word_attributions(model, "a dull , lifeless film", features=[7], method="gradient")
        >>> a.ranked(7)[0]        # ('dull', 0.42)
        ```
    """
    texts = _check_texts(model, texts)
    features = check_features(model, features)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    tokenizer = processor if processor is not None else model.processor
    if tokenizer is None:
        raise ValueError("This model has no tokenizer: pass processor=<tokenizer> or set model.processor first.")
    if not texts:
        return []
    rows, words = _tokenize(tokenizer, texts, max_length)
    with eval_mode(model):
        run = _occlusion if method == "occlusion" else _gradient
        full, scores = run(model, tokenizer, rows, words, features, batch_size)
    return [
        WordAttribution(
            text=text,
            words=[w[2] for w in text_words],
            spans=[w[1] for w in text_words],
            scores=score,
            activation=act,
            features=list(features),
            method=method,
        )
        for text, text_words, act, score in zip(texts, words, full, scores)
    ]


def top_words(
    attributions: WordAttribution | Iterable[WordAttribution], feature: int, k: int = 10, min_count: int = 1
) -> list[tuple[str, float, int]]:
    """The `k` words that drive `feature` most, over many texts: (lower-cased word, mean score, count).

    Every occurrence counts; words seen fewer than `min_count` times are left out. Sorted by mean score, highest
    first (the words whose presence raises the feature), ties broken by count.

    Example:
        ```python
        >>> top_words(word_attributions(model, texts, [12]), feature=12, k=3, min_count=2)
        [('charming', 0.74, 5), ('delight', 0.61, 3), ('fun', 0.40, 9)]
        ```
    """
    if isinstance(attributions, WordAttribution):
        attributions = [attributions]
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for a in attributions:
        col = a.scores[:, a.column(feature)].tolist()
        for word, score in zip(a.words, col):
            key = word.lower()
            totals[key] += score
            counts[key] += 1
    rows = [(w, totals[w] / counts[w], counts[w]) for w in totals if counts[w] >= min_count]
    rows.sort(key=lambda r: (-r[1], -r[2], r[0]))
    return rows[:k]
