"""The embedded default: the whole pipeline, offline, on a sentiment dataset the project writes itself.

1. a small movie-review sentiment dataset from the project's templates, with a planted shortcut: the innocuous word
   "tuesday" goes with the positive label in training and with both labels in test (`hf_sparse.synthetic`);
2. the packaged MiniLM encoder (all-MiniLM-L6-v2) fine-tuned on it into a transformers classifier (~20 s);
3. its dense head replaced by a sparse one: the elastic-net path on cached features, 5 features per class;
4. explanations: each feature's driving words and examples, and one sentence explained;
5. audits: identity-term perturbation, error slices (Spotlight), and the feature that carries the shortcut,
   edited out of the head, with test accuracy before and after;
6. a model folder with its card (README.md), pictures, descriptions and audits, loadable by transformers.

Example:
    >>> summary = run_demo("hf_sparse_demo")          # or: hf-sparse demo
    >>> summary["sparse_accuracy"], summary["accuracy_after_edit"]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .synthetic import SHORTCUT_WORD, finetune_text_classifier, make_shortcut_sentiment

EXAMPLE_SENTENCE = f"saw it on {SHORTCUT_WORD}: the plot was painfully dull."
FINETUNE = dict(epochs=1.0, lr=3e-5, seed=0)


def run_demo(output_dir: str | Path = "hf_sparse_demo", *, progress: bool = True, quick: bool = False) -> dict:
    """Run every step and write `output_dir/model` (the debuggable checkpoint with its card), `explanation.html`
    and `summary.json`; returns the summary. `quick` audits three identity groups and one error slice."""
    from . import SparseHeadForSequenceClassification
    from .audit import features_with_word, find_error_slices, identity_audit

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    started = time.perf_counter()
    data = make_shortcut_sentiment(seed=0)

    t = time.perf_counter()
    # A light fine-tune (one epoch, small learning rate): a longer one folds sentiment and the shortcut into one
    # direction of the features, which no sparse head can then pull apart (see the notes in tests/test_audit.py).
    finetune_text_classifier(data["train"], out_dir=out / "fine_tuned_classifier", **FINETUNE, progress=progress)
    timings["fine-tune"] = time.perf_counter() - t

    t = time.perf_counter()
    model = SparseHeadForSequenceClassification.from_pretrained(out / "fine_tuned_classifier")
    model.fit_sparse_head(data["train"], eval_dataset=data["test"], features_per_class=5, relax=True,
                          cache_dir=str(out / "feature_cache"), progress=progress)
    timings["features + path"] = time.perf_counter() - t

    t = time.perf_counter()
    model.describe_features(progress=progress)
    explanation = model.explain(EXAMPLE_SENTENCE)
    (out / "explanation.html").write_text(explanation.to_html(), encoding="utf-8")
    timings["explanations"] = time.perf_counter() - t

    t = time.perf_counter()
    identity = identity_audit(model, groups=["gender", "religion", "nationality"] if quick else None)
    slices = find_error_slices(model, n_slices=1 if quick else 3)
    suspects = [j for j, share in features_with_word(model, SHORTCUT_WORD) if share >= 0.9]
    dense_accuracy, sparse_accuracy = model.config.dense_metrics["accuracy"], model.config.sparse_metrics["accuracy"]
    features_per_class = model.head_summary()["features_per_class"]
    edit = model.edit_features(remove=suspects[:1]) if suspects else None  # measured on the cached test features
    accuracy_before = edit.before["accuracy"] if edit else sparse_accuracy
    accuracy_after = edit.after["accuracy"] if edit else sparse_accuracy
    timings["audits + edit"] = time.perf_counter() - t

    model.save_pretrained(out / "model", card_kwargs={"dataset_name": "hf_sparse shortcut sentiment (synthetic)"})
    top = slices[0] if len(slices) else None
    summary = {
        "output": str(out / "model"),
        "dense_accuracy": dense_accuracy,
        "sparse_accuracy": sparse_accuracy,
        "features_per_class": features_per_class,
        "features_per_class_after_edit": model.head_summary()["features_per_class"],
        "shortcut_word": SHORTCUT_WORD,
        "shortcut_features": suspects,
        "worst_error_slice": None if top is None else {"share": top.share, "accuracy": top.accuracy, "loss": top.loss},
        "identity_audit_max_flip_rate": identity.max_flip_rate if hasattr(identity, "max_flip_rate") else None,
        "accuracy_before_edit": accuracy_before,
        "accuracy_after_edit": accuracy_after,
        "edited": bool(edit),
        "example": f"{EXAMPLE_SENTENCE!r} -> {explanation.prediction} ({explanation.probabilities[explanation.prediction]:.2f})",
        "seconds": {k: round(v, 1) for k, v in {**timings, "total": time.perf_counter() - started}.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return summary
