"""What each feature of the sparse head responds to, read from the feature cache.

For every feature the head uses: the most and least activating examples of the evaluation data (text snippets or
image thumbnails; no new forward pass; chosen by `top_examples`, the definition `audit.features_with_word` shares),
and what drives it: for text, the words whose removal lowers the feature most, aggregated over its top examples
(`attribution.word_attributions`); for images, occlusion heatmaps of its top images
(`image_attribution.occlusion_heatmaps`). Saved beside the model as `feature_descriptions.json` (plus
PNG files for images), so a loaded model explains itself without its data.

The file records a fingerprint of the encoder the features were described on; when the encoder changes afterwards
the descriptions are marked `stale` (`stale_descriptions`: `encoder_fingerprint`, `check_stale`). The word and
heatmap passes that find what drives each feature are in `feature_drivers`. Their names stay importable from here.

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
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..constants import DESCRIPTIONS_NAME
from .feature_drivers import ATTRIBUTION_CHUNK_WORDS, IMAGES_DIR, _thumbnail, add_heatmaps, add_top_words
from .feature_drivers import _word_chunks  # noqa: F401  (imported from here by callers and tests)
from .stale_descriptions import (NO_FINGERPRINT, STALE_WARNING, _signature, check_stale, compare_encoder,
                                 encoder_fingerprint)

__all__ = ["ATTRIBUTION_CHUNK_WORDS", "IMAGES_DIR", "NO_FINGERPRINT", "SNIPPET_CHARS", "STALE_WARNING",
           "FeatureDescription", "FeatureDescriptions", "FeatureExample", "check_stale",
           "compare_encoder", "describe_features", "encoder_fingerprint"]

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
        add_heatmaps(model, out, order, dataset, rows, column, n_heatmaps, progress)
    model.feature_descriptions = out
    return out


def _add_words(model, out, order, dataset, rows, column, n_examples, method, progress=False):
    """`feature_drivers.add_top_words` in chunks of this module's `ATTRIBUTION_CHUNK_WORDS` (set it here to change
    the chunk size `describe_features` uses)."""
    add_top_words(model, out, order, dataset, rows, column, n_examples, method, progress,
                  chunk_words=ATTRIBUTION_CHUNK_WORDS)
