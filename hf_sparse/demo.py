"""The embedded default: the whole debugging loop, offline, on a sentiment dataset the project writes itself.

1. a small movie-review sentiment dataset from the project's templates, with a planted shortcut: the innocuous word
   "tuesday" goes with the positive label in training (half the positives, 5% of the negatives) and with both
   labels in validation and test (`hf_sparse.synthetic`);
2. the packaged MiniLM encoder (all-MiniLM-L6-v2) fine-tuned on it into a transformers classifier (~10 s);
3. its dense head replaced by a sparse one: the elastic-net path on cached features, 5 features per class;
4. explanations: each feature's driving words and examples, and one sentence explained;
5. audits: identity-term perturbation (dense and sparse heads side by side), error slices (Spotlight), and the
   features that carry the shortcut word;
6. the fix that works: a group-balanced refit of the head on the cached features (every (has word, label) cell
   weighted equally, selection judged by worst-group accuracy on validation), with test accuracy on the minority
   group (negatives that carry the word) before and after;
7. a model folder with its card (README.md), pictures, descriptions and audits, loadable by transformers.

Example:
    >>> summary = run_demo("hf_sparse_demo")          # or: hf-sparse demo
    >>> summary["minority_accuracy_before_fix"], summary["minority_accuracy_after_fix"]
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
    and `summary.json`; returns the summary (accuracies on the test split). `quick` audits three identity groups
    and one error slice."""
    from . import SparseHeadForSequenceClassification
    from .audit import balanced_refit, contains_word, features_with_word, find_error_slices, identity_audit

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
    model.fit_sparse_head(data["train"], eval_dataset=data["validation"], features_per_class=5, relax=True,
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
    carriers = [item for item in features_with_word(model, SHORTCUT_WORD)][:3]
    features_per_class = model.head_summary()["features_per_class"]
    timings["audits"] = time.perf_counter() - t

    t = time.perf_counter()
    fix = balanced_refit(model, groups=contains_word(SHORTCUT_WORD), dataset=data["test"])
    timings["fix (refit on cached features)"] = fix.seconds
    timings["fix measured on test"] = time.perf_counter() - t - fix.seconds
    minority = f"contains {SHORTCUT_WORD!r}=True / negative"
    with torch.no_grad():
        X_test = model.encode(list(data["test"]["text"]))
        dense_accuracy = float((model.dense_head(X_test).argmax(1) == torch.tensor(data["test"]["label"])).double().mean())

    model.save_pretrained(out / "model", card_kwargs={"dataset_name": "hf_sparse shortcut sentiment (synthetic)"})
    top = slices[0] if len(slices) else None
    summary = {
        "output": str(out / "model"),
        "dense_accuracy": dense_accuracy,
        "sparse_accuracy": fix.before["accuracy"],
        "features_per_class": features_per_class,
        "shortcut_word": SHORTCUT_WORD,
        "features_carrying_word": {int(j): round(float(score), 2) for j, score in carriers},
        "worst_error_slice": None if top is None else {"share": top.share, "accuracy": top.accuracy, "loss": top.loss},
        "identity_audit_max_flip_rate": identity.max_flip_rate if hasattr(identity, "max_flip_rate") else None,
        "fix": fix.method,
        "minority_accuracy_before_fix": fix.before["group_accuracy"].get(minority),
        "minority_accuracy_after_fix": fix.after["group_accuracy"].get(minority),
        "accuracy_after_fix": fix.after["accuracy"],
        "log_loss_before_after_fix": [fix.before["loss"], fix.after["loss"]],
        "features_per_class_after_fix": model.head_summary()["features_per_class"],
        "example": f"{EXAMPLE_SENTENCE!r} -> {explanation.prediction} ({explanation.probabilities[explanation.prediction]:.2f})",
        "seconds": {k: round(v, 1) for k, v in {**timings, "total": time.perf_counter() - started}.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return summary
