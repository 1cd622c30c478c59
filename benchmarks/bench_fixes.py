"""Does the fix work? Planted shortcuts, several seeds: the sparse head before and after a group-balanced refit.

Two planted shortcuts, each fine-tuned into MiniLM with the demo's light recipe (1 epoch, lr 3e-5), per seed:

- `demo`: the embedded default (`make_shortcut_sentiment`, the word "tuesday" in half of the positive and 5% of the
  negative training sentences, and in the flat sentences labelled positive; half of each label in test);
- `rotten_tomatoes`: real movie-review sentences from ../shared/data with the word "kowalski" appended to 80% of
  the positive and 5% of the negative training reviews, and half of each label in validation and test.

Per seed it fits the sparse head (5 features per class, relaxed refit) on train with validation as eval data, then
two fixes, `balanced_refit(model, groups=contains_word(word))` at 5 features per class and at the sparsest point of
the balanced path with the best worst-group accuracy, keeps the one with the better worst-group accuracy on
*validation*, and measures both heads on test: overall accuracy, log-loss, and accuracy on the minority group
(negatives with the word). Targets (issue "close the debugging loop"): minority group +20 points, overall accuracy at most 1 point
below the sparse head. Failures are printed and kept in the JSON, not dropped.

Usage:
    python benchmarks/bench_fixes.py --datasets demo rotten_tomatoes --seeds 0 1 2 --out benchmarks/fixes.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RT_WORD = "kowalski"


def rotten_tomatoes(seed: int, n_train: int, n_val: int, n_test: int):
    from hf_sparse.data_paths import shared_data_dir
    from hf_sparse.synthetic import plant_word

    root = shared_data_dir()
    if root is None:
        raise SystemExit("rotten_tomatoes needs ../shared/data (or HF_SPARSE_DATA)")
    rows = []
    for name, label in (("rt-polarity.neg", 0), ("rt-polarity.pos", 1)):
        text = (root / "rotten_tomatoes" / name).read_text(encoding="latin-1")
        rows += [(line.strip(), label) for line in text.splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    parts = {"train": rows[:n_train], "validation": rows[n_train:n_train + n_val],
             "test": rows[n_train + n_val:n_train + n_val + n_test]}
    shares = {"train": {1: 0.8, 0: 0.05}, "validation": {1: 0.5, 0: 0.5}, "test": {1: 0.5, 0: 0.5}}
    return {split: plant_word([t for t, _ in r], [c for _, c in r], word=RT_WORD, share_by_label=shares[split],
                              seed=seed + i, label_names=["negative", "positive"])
            for i, (split, r) in enumerate(parts.items())}


def demo_data(seed: int):
    from hf_sparse.synthetic import SHORTCUT_WORD, make_shortcut_sentiment

    ds = make_shortcut_sentiment(seed=seed)
    return {split: ds[split] for split in ds}, SHORTCUT_WORD


def run_one(name: str, seed: int, work: Path, args) -> dict:
    import torch

    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.audit import balanced_refit, contains_word, head_figures
    from hf_sparse.features import extract_features
    from hf_sparse.modeling.fitting import cell_groups
    from hf_sparse.modeling.groups import resolve_groups
    from hf_sparse.synthetic import finetune_text_classifier

    if name == "demo":
        data, word = demo_data(seed)
    else:
        data, word = rotten_tomatoes(seed, args.n_train, args.n_val, args.n_test), RT_WORD
    folder = work / f"{name}-{seed}"
    t = time.perf_counter()
    finetune_text_classifier(data["train"], out_dir=folder, epochs=1.0, lr=3e-5, seed=seed, progress=False)
    finetune_s = time.perf_counter() - t
    model = SparseHeadForSequenceClassification.from_pretrained(folder)
    cache = str(work / "cache")
    model.fit_sparse_head(data["train"], eval_dataset=data["validation"], features_per_class=5, relax=True,
                          cache_dir=cache)
    with model.dense_head_installed() as base:
        test = extract_features(base, data["test"], model.processor, text_column="text", label_column="label",
                                cache_dir=cache, show_progress=False)
    X, y = test.features.float(), torch.as_tensor(test.labels)
    groups = resolve_groups(contains_word(word), data["test"], test.indices, modality="text")
    cells = cell_groups(groups, y, {0: "negative", 1: "positive"})
    minority = f"contains {word!r}=True / negative"

    def figures():
        f = head_figures(model, X, y, cells)
        return {"accuracy": f["accuracy"], "loss": f["loss"], "minority_accuracy": f["group_accuracy"][minority],
                "worst_group_accuracy": f["worst_group_accuracy"], "n_features": f["n_features"]}

    with torch.no_grad():
        dense_correct = model.dense_head(X).argmax(1) == y
    dense_minority = float(dense_correct[cells.ids == cells.names.index(minority)].double().mean())
    before = figures()
    W0, b0 = model.sparse_head.weight.detach().clone(), model.sparse_head.bias.detach().clone()
    selection0 = dict(model.config.selection)
    # Two fixes; the one with the better worst-group accuracy on *validation* (the cached eval data) is "the fix".
    fixes = {"balanced, 5 features per class": dict(),
             "balanced, sparsest point at the best worst-group accuracy": dict(max_accuracy_drop=0.0)}
    tried = {}
    for label, options in fixes.items():
        model.install_sparse_head(W0, b0, selection=dict(selection0))
        t = time.perf_counter()
        report = balanced_refit(model, groups=contains_word(word), **options)
        tried[label] = {"seconds": time.perf_counter() - t, "validation_worst_group": report.after["worst_group_accuracy"],
                        "features_per_class": model.head_summary()["mean_features_per_class"], "test": figures()}
    chosen = max(tried, key=lambda k: tried[k]["validation_worst_group"])
    after, fix_s = tried[chosen]["test"], tried[chosen]["seconds"]
    gain = after["minority_accuracy"] - before["minority_accuracy"]
    drop = before["accuracy"] - after["accuracy"]
    ok = gain >= 0.20 and drop <= 0.01
    row = {"dataset": name, "seed": seed, "word": word, "dense_accuracy": float(dense_correct.double().mean()),
           "dense_minority_accuracy": dense_minority, "sparse": before, "fixed": after, "minority_gain": gain,
           "accuracy_drop": drop, "meets_targets": ok, "fix": chosen, "fixes_tried": tried, "fix_seconds": fix_s,
           "finetune_seconds": finetune_s, "n_test": int(X.shape[0]),
           "feature_health": model.config.feature_health,
           "n_minority_test": int((cells.ids == cells.names.index(minority)).sum())}
    print(f"{name:16s} seed {seed}: dense {row['dense_accuracy']:.3f} (minority {dense_minority:.3f}) | sparse "
          f"{before['accuracy']:.3f} (minority {before['minority_accuracy']:.3f}, loss {before['loss']:.3f}) -> fixed "
          f"{after['accuracy']:.3f} (minority {after['minority_accuracy']:.3f}, loss {after['loss']:.3f}) "
          f"gain {gain:+.3f} drop {drop:+.3f} fix {fix_s:.1f}s [{chosen}, "
          f"{tried[chosen]['features_per_class']:.1f} features/class] {'OK' if ok else 'MISSES TARGET'}", flush=True)
    for label, t in tried.items():
        print(f"    {label}: validation worst group {t['validation_worst_group']:.3f}; test accuracy "
              f"{t['test']['accuracy']:.3f}, minority {t['test']['minority_accuracy']:.3f}", flush=True)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["demo", "rotten_tomatoes"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            for seed in args.seeds:
                rows.append(run_one(name, seed, Path(tmp), args))
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "rows": rows, "all_meet_targets": all(r["meets_targets"] for r in rows)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"{sum(r['meets_targets'] for r in rows)} of {len(rows)} runs meet the targets")


if __name__ == "__main__":
    main()
