"""What each feature of the sparse head responds to, read from the feature cache.

For every feature the head uses: the most and least activating examples of the evaluation data (text snippets or
image thumbnails; no new forward pass; chosen by `top_examples`, the definition `audit.features_with_word` shares),
and what drives it: for text, the words whose removal lowers the feature most, aggregated over its top examples
(`attribution.word_attributions`); for images, occlusion heatmaps of its top images
(`image_attribution.occlusion_heatmaps`). Saved beside the model as `feature_descriptions.json` (plus
PNG files for images), so a loaded model explains itself without its data.

The file records a fingerprint of the encoder the features were described on (`encoder_fingerprint`: sha256 of
every tensor of the wrapped model except its final layer, the head). When the encoder changes afterwards (trained
further, e.g. by `Trainer`, or a checkpoint whose encoder weights differ), `check_stale` marks the descriptions
`stale = True` with a `stale_reason` and warns once; it runs when a model is loaded and whenever
`model.feature_descriptions` is read after a weight of the encoder changed (explanations, the model card).
`stale` is False when the encoder is the described one, and None when that is unknown: a file from an older
hf_sparse without a fingerprint, or an encoder loaded in a dtype its fingerprint cannot be compared in.

Example:
    >>> descriptions = model.describe_features()          # after fit_sparse_head
    >>> d = descriptions[17]
    >>> d.top_words[:3], d.top_examples[0].text, d.summary
    ([('witty', 0.82, 6), ...], 'a witty, gorgeous film', "words: witty, gorgeous, charming")
    >>> descriptions.stale, descriptions.stale_reason      # (False, None) until the encoder changes
"""

from __future__ import annotations

import json
import os
import re
import warnings
from itertools import chain
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..constants import DESCRIPTIONS_NAME

IMAGES_DIR = "feature_images"
SNIPPET_CHARS = 240


@dataclass
class FeatureExample:
    """One example of the evaluation data: its row in the source dataset, the feature's activation on it, and the
    text (truncated) or the file name of its thumbnail (relative to the model folder)."""

    row: int
    activation: float
    text: str | None = None
    image: str | None = None
    heatmap: str | None = None
    label: str | None = None


@dataclass
class FeatureDescription:
    """What one feature responds to. `top_words`: (word, mean attribution, count) over the top examples."""

    feature: int
    top_examples: list[FeatureExample] = field(default_factory=list)
    bottom_examples: list[FeatureExample] = field(default_factory=list)
    top_words: list[tuple[str, float, int]] = field(default_factory=list)
    mean: float | None = None
    std: float | None = None

    @property
    def summary(self) -> str:
        """A one-line description: its driving words (text) or its top example (images)."""
        if self.top_words:
            return "words: " + ", ".join(w for w, _, _ in self.top_words[:5])
        if self.top_examples and self.top_examples[0].text:
            return f"e.g. {self.top_examples[0].text[:60]!r}"
        if self.top_examples:
            return f"top image: row {self.top_examples[0].row}"
        return ""

    def to_dict(self) -> dict:
        return {
            "feature": self.feature, "mean": self.mean, "std": self.std,
            "top_words": [list(w) for w in self.top_words],
            "top_examples": [vars(e) for e in self.top_examples],
            "bottom_examples": [vars(e) for e in self.bottom_examples],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureDescription":
        return cls(
            feature=int(data["feature"]), mean=data.get("mean"), std=data.get("std"),
            top_words=[(str(w), float(s), int(n)) for w, s, n in data.get("top_words", [])],
            top_examples=[FeatureExample(**e) for e in data.get("top_examples", [])],
            bottom_examples=[FeatureExample(**e) for e in data.get("bottom_examples", [])],
        )


class FeatureDescriptions(dict):
    """`{feature index: FeatureDescription}`, with the PIL images of image models kept until saved.

    `save(directory)` writes `feature_descriptions.json` and the images under `feature_images/`;
    `load(directory)` reads them back (images stay files, referenced by relative path).
    """

    def __init__(self, *args, method: str | None = None, source: str | None = None, encoder: dict | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method
        self.source = source
        #: `encoder_fingerprint` of the encoder the features were described on (None in files of older versions)
        self.encoder = encoder
        #: True: the model's encoder is not the described one (`stale_reason` says how); False: it is; None: unknown
        #: (no fingerprint recorded, not compared in this dtype, or not checked against a model yet)
        self.stale: bool | None = None
        self.stale_reason: str | None = None
        self.pending_images: dict[str, object] = {}  # relative file name -> PIL image, written by save()
        self.image_root: Path | None = None  # folder the relative image names resolve against
        self._signature = None  # the encoder's tensors (identity and version) at the last check
        self._warned = False

    def to_dict(self) -> dict:
        return {"format": "hf_sparse.feature_descriptions", "version": 1, "method": self.method, "source": self.source,
                "encoder": self.encoder, "features": [d.to_dict() for _, d in sorted(self.items())]}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureDescriptions":
        if not isinstance(data, dict) or data.get("format") != "hf_sparse.feature_descriptions":
            got = f"a JSON {type(data).__name__}" if not isinstance(data, dict) else f"format {data.get('format')!r}"
            raise ValueError(f"not an hf_sparse feature_descriptions.json file: expected a JSON object with format "
                             f"'hf_sparse.feature_descriptions', got {got}")
        out = cls(method=data.get("method"), source=data.get("source"), encoder=data.get("encoder"))
        for item in data.get("features", []):
            d = FeatureDescription.from_dict(item)
            out[d.feature] = d
        return out

    def image_files(self) -> list[str]:
        """Relative names of every image the descriptions refer to."""
        names = []
        for d in self.values():
            for e in d.top_examples + d.bottom_examples:
                names += [n for n in (e.image, e.heatmap) if n]
        return names

    def save(self, directory: str | os.PathLike) -> list[str]:
        """Write the JSON (atomically) and the images; returns the relative names of the files written."""
        directory = Path(directory)
        written = []
        for name in self.image_files():
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if name in self.pending_images:
                self.pending_images[name].save(target)
            elif self.image_root is not None and (self.image_root / name).resolve() != target.resolve():
                source = self.image_root / name
                if not source.is_file():  # e.g. a checkpoint loaded from the Hub without its images
                    continue
                target.write_bytes(source.read_bytes())
            written.append(name)
        tmp = directory / (DESCRIPTIONS_NAME + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, directory / DESCRIPTIONS_NAME)
        self.pending_images.clear()
        self.image_root = directory
        return [DESCRIPTIONS_NAME] + written

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "FeatureDescriptions | None":
        """The descriptions saved in `directory`, or None when it has none."""
        path = Path(directory) / DESCRIPTIONS_NAME
        if not path.is_file():
            return None
        try:
            out = cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ValueError(f"{path} is not readable: {err}. Delete it (or describe the features again with "
                             "model.describe_features()) and save the model again.") from err
        out.image_root = Path(directory)
        return out


# ------------------------------------------------------------------------------------------ stale descriptions
STALE_WARNING = ("the feature descriptions were computed for a different encoder (it was trained further after "
                 "describe_features); run model.describe_features(...) again")
NO_FINGERPRINT = ("these feature descriptions record no fingerprint of the encoder they were computed for (written "
                  "by an older hf_sparse), so whether they still match it is unknown; run model.describe_features() "
                  "again to record one")


def _producer(model):
    """(the wrapped model, the name prefix of its final layer) or None when `model` is not a sparse-head model."""
    base, head = getattr(model, "model", None), getattr(getattr(model, "config", None), "head_module", None)
    if not isinstance(base, torch.nn.Module) or not head:
        return None
    return base, f"{head}."


def _encoder_tensors(model) -> dict[str, torch.Tensor]:
    """The tensors that make the head's input features: the wrapped model's state dict without its final layer."""
    base, prefix = _producer(model)
    return {k: v for k, v in base.state_dict().items() if not k.startswith(prefix)}


def _signature(model) -> tuple | None:
    """Identity and in-place version of every encoder tensor: changes whenever one is replaced or written to (an
    optimizer step, `load_state_dict`), at the cost of a walk over the parameters, not a hash."""
    found = _producer(model)
    if found is None:
        return None
    base, prefix = found
    named = chain(base.named_parameters(remove_duplicate=False), base.named_buffers(remove_duplicate=False))
    return tuple((name, id(t), t._version) for name, t in named if not name.startswith(prefix))


def encoder_fingerprint(model) -> dict | None:
    """The fingerprint of the encoder that produces `model`'s features (every tensor of the wrapped model but its
    final layer): the whole-base fingerprint of `hf_sparse.modeling.saving.base_fingerprint` (sha256 in float32,
    bfloat16 and float16, and the dtype). About 0.1 s for all-MiniLM-L6-v2 (90 MB). None for a model without one
    (or whose weights are offloaded to the meta device).

    Example:
        >>> encoder_fingerprint(model)["sha256"]["float32"][:12]
        '3f1c0b2a9e4d'
    """
    from ..modeling.saving import base_fingerprint

    if _producer(model) is None:
        return None
    tensors = _encoder_tensors(model)
    if any(t.device.type == "meta" for t in tensors.values()):  # offloaded weights: nothing to hash
        return None
    return base_fingerprint(tensors)


def compare_encoder(recorded: dict | None, model) -> tuple[bool | None, str | None]:
    """(stale, reason) of descriptions whose encoder fingerprint is `recorded`, against `model`'s encoder now.

    Example:
        >>> compare_encoder(model.feature_descriptions.encoder, model)
        (False, None)
    """
    from ..modeling.saving import _floating_dtype, _hash_base

    if recorded is None:
        return None, NO_FINGERPRINT
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), dict):
        return None, (f"the recorded encoder fingerprint is malformed ({str(recorded)[:80]}), so whether the "
                      "descriptions match the encoder is unknown; run model.describe_features() again")
    if _producer(model) is None:
        return None, "this model has no encoder to compare the descriptions with"
    tensors = _encoder_tensors(model)
    if any(t.device.type == "meta" for t in tensors.values()):
        return None, "the encoder's weights are not loaded (meta device), so they could not be compared"
    saved, loaded = recorded.get("dtype"), _floating_dtype(tensors)
    target = "float32" if saved == loaded else next(
        (t for t in ("bfloat16", "float16") if {saved, loaded} <= {"float32", t}), None)
    if target is None or target not in recorded["sha256"]:
        return None, (f"the descriptions were computed on a {saved} encoder and this one is {loaded}: weights cannot "
                      f"be compared across these two types, so whether they match is unknown (load the model with "
                      f"dtype=torch.{saved} to check)")
    if len(tensors) != recorded.get("tensors"):
        return True, (f"{STALE_WARNING} (the encoder has {len(tensors)} tensors, the described one had "
                      f"{recorded.get('tensors')})")
    digest = _hash_base(tensors, [target])[target]
    if digest != recorded["sha256"][target]:
        return True, (f"{STALE_WARNING} (sha256 of the encoder's {len(tensors)} tensors in {target}: "
                      f"{digest[:12]}... instead of {recorded['sha256'][target][:12]}...)")
    return False, None


def check_stale(model, descriptions: "FeatureDescriptions | None" = None, *, force: bool = False):
    """Compare `descriptions` (default: the model's) with `model`'s encoder and set their `stale` and
    `stale_reason`; warn once (per descriptions) when they are stale. The hash is only recomputed when a tensor of
    the encoder was replaced or written to since the last check (or with `force=True`). Returns the descriptions.

    Example:
        >>> check_stale(model).stale          # True after the encoder was trained further
    """
    d = descriptions if descriptions is not None else getattr(model, "feature_descriptions", None)
    if not isinstance(d, FeatureDescriptions):
        return d
    signature = _signature(model)
    if signature is None or (signature == d._signature and not force):
        return d
    d.stale, d.stale_reason = compare_encoder(d.encoder, model)
    d._signature = signature
    if d.stale and not d._warned:
        d._warned = True
        warnings.warn(d.stale_reason, UserWarning, stacklevel=3)
    return d


def _snippet(text: str, words=(), width: int | None = SNIPPET_CHARS) -> str:
    """`text` with its whitespace collapsed, cut to `width` characters around the first of `words` (in their order,
    e.g. a feature's top words by attribution) that occurs in it as a whole word, so the word is never cut away;
    from the start when none occurs.

    Example:
        >>> _snippet("a long review " * 30 + "but the ending was dull.", words=["dull", "long"], width=40)
        '…a long review but the ending was dull.'
    """
    from ..text_safety import excerpt

    text = " ".join(str(text).split())
    around = next((w for w in words if w and re.search(r"(?<!\w)" + re.escape(str(w)) + r"(?!\w)", text, re.I)), None)
    return excerpt(text, around=around, width=width)


def _thumbnail(image, size: int = 96):
    image = image.convert("RGB")
    image.thumbnail((size, size))
    return image


@torch.no_grad()
def describe_features(
    model,
    features: list[int] | None = None,
    *,
    n_examples: int = 5,
    n_attribution_examples: int = 20,
    attribution: str = "occlusion",
    n_heatmaps: int = 3,
    progress: bool = False,
) -> FeatureDescriptions:
    """Describe the features the head uses (or `features`) from the cached data of the last `fit_sparse_head`.

    `n_examples` top and bottom examples each; for text, words from `attribution` ("occlusion" or "gradient") over
    the `n_attribution_examples` most activating examples; for images, `n_heatmaps` occlusion heatmaps. The result
    is stored as `model.feature_descriptions` and returned.
    """
    from .top_examples import cached_rows, top_examples

    fit = model.fit_data
    if fit is None:
        raise ValueError("describe_features reads the cached features of the last fit: call model.fit_sparse_head first.")
    data = cached_rows(model, None, caller="describe_features")  # the evaluation data, else the training data
    dataset = next(iter(data.datasets.values()))  # one split: the one fit.dataset names
    X = data.X
    rows = data.rows
    used = model.sparse_head.active_features.tolist() if features is None else [int(j) for j in features]
    bad = [j for j in used if not 0 <= j < X.shape[1]]
    if bad:
        raise ValueError(f"feature indices {bad} are outside 0..{X.shape[1] - 1}")
    labels = data.labels
    names = model.config.id2label or {}
    text_mode = model.modality == "text"
    column = fit.text_column if text_mode else fit.image_column
    if column not in dataset.column_names:
        raise ValueError(f"the fit's dataset has no column {column!r} (columns: {dataset.column_names})")

    out = FeatureDescriptions(method=attribution if text_mode else "occlusion", source=f"{len(X)} evaluation examples",
                              encoder=encoder_fingerprint(model))
    out._signature = _signature(model)
    out.stale = False if out.encoder is not None else None
    n_top = max(n_examples, n_attribution_examples if text_mode else n_heatmaps)
    order = {}
    for j in used:  # top: direction +1 (most activating), bottom: direction -1 (least activating)
        top, bottom = top_examples(model, j, n=n_top, directions=[1, -1], data=data)
        order[j] = (top.positions, bottom.positions[:n_examples])

    def example(j, i, role, rank):
        ex = FeatureExample(row=int(rows[i]), activation=float(X[i, j]))
        if labels is not None and labels.dim() == 1:
            label_id = int(labels[i])
            ex.label = str(names.get(label_id, label_id))
        value = dataset[int(rows[i])][column]
        if text_mode:
            ex.text = " ".join(str(value).split())  # shortened around the feature's top words once they are known
        else:
            ex.image = f"{IMAGES_DIR}/feature_{j}_{role}_{rank}.png"
            out.pending_images[ex.image] = _thumbnail(value)
        return ex

    from tqdm.auto import tqdm

    for j in tqdm(used, desc="describing features: top examples", disable=not progress):
        top, bottom = order[j]
        col = X[:, j]
        out[j] = FeatureDescription(
            feature=j, mean=float(col.mean()), std=float(col.std()) if len(col) > 1 else 0.0,
            top_examples=[example(j, i, "top", r) for r, i in enumerate(top[:n_examples])],
            bottom_examples=[example(j, i, "bottom", r) for r, i in enumerate(bottom)],
        )
    if text_mode:
        _add_words(model, out, order, dataset, rows, column, n_attribution_examples, attribution, progress)
        for d in out.values():
            words = [w for w, _, _ in d.top_words]
            for ex in d.top_examples + d.bottom_examples:
                ex.text = _snippet(ex.text, words)
    else:
        _add_heatmaps(model, out, order, dataset, rows, column, n_heatmaps, progress)
    model.feature_descriptions = out
    return out


#: The word-attribution pass of `describe_features` runs in chunks of texts holding about this many words (one
#: occluded variant per word: 8 batches of 64), so that its progress bar moves every few seconds.
ATTRIBUTION_CHUNK_WORDS = 512


def _word_chunks(texts: list[str], words: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) runs of consecutive `texts` of about `words` (default `ATTRIBUTION_CHUNK_WORDS`) words and
    texts (a text counts its whitespace-separated words plus one), at least one text each.

    Example:
        >>> _word_chunks(["a b", "c d e", "f"], words=4)
        [(0, 2), (2, 3)]
    """
    words = ATTRIBUTION_CHUNK_WORDS if words is None else words
    chunks, start, count = [], 0, 0
    for i, text in enumerate(texts):
        count += len(text.split()) + 1  # its words and the full text
        if count >= words:
            chunks.append((start, i + 1))
            start, count = i + 1, 0
    if start < len(texts):
        chunks.append((start, len(texts)))
    return chunks


def _add_words(model, out, order, dataset, rows, column, n_examples, method, progress=False):
    from tqdm.auto import tqdm

    from .attribution import top_words, word_attributions

    # One attribution run over the union of every feature's top examples, for all features at once, in chunks of
    # texts for the progress bar (each text is attributed on its own: chunking changes no score beyond rounding).
    wanted = sorted({i for top, _ in order.values() for i in top[:n_examples]})
    if not wanted:
        return
    texts = [str(dataset[int(rows[i])][column]) for i in wanted]
    features = sorted(order)
    attributions = []
    desc = f"describing features: word {method}"
    with tqdm(total=len(texts), desc=desc, unit="texts", disable=not progress) as bar, torch.enable_grad():
        for start, stop in _word_chunks(texts):
            attributions += word_attributions(model, texts[start:stop], features, method=method)
            bar.update(stop - start)
    position = {i: p for p, i in enumerate(wanted)}
    for j in features:
        mine = [attributions[position[i]] for i in order[j][0][:n_examples]]
        out[j].top_words = [(w, float(s), int(n)) for w, s, n in top_words(mine, j, k=10)]


def _add_heatmaps(model, out, order, dataset, rows, column, n_heatmaps, progress=False):
    from tqdm.auto import tqdm

    from .image_attribution import heatmap_overlay, occlusion_heatmaps

    total = sum(len(top[:n_heatmaps]) for top, _ in order.values())
    bar = tqdm(total=total, desc="describing features: occlusion heatmaps", unit="images", disable=not progress)
    for j, (top, _) in order.items():
        chosen = top[:n_heatmaps]
        if not chosen:
            continue
        images = [dataset[int(rows[i])][column].convert("RGB") for i in chosen]
        with torch.enable_grad():
            maps = occlusion_heatmaps(model, images, [j])
        bar.update(len(chosen))
        for rank, (image, heat) in enumerate(zip(images, maps[:, 0])):
            name = f"{IMAGES_DIR}/feature_{j}_heatmap_{rank}.png"
            out.pending_images[name] = _thumbnail(heatmap_overlay(image, heat), 128)
            if rank < len(out[j].top_examples):
                out[j].top_examples[rank].heatmap = name
    bar.close()
