"""Benchmark of hf_sparse.explain.word_attributions against LIME (not a test).

On real SST-2 validation sentences and a real model (the packaged all-MiniLM-L6-v2, fine-tuned here on SST-2
training phrases and wrapped in `SparseHeadForSequenceClassification`), for the features with the largest
dense-head weights, each method ranks the words of each sentence by how much they drive the feature's activation:

* ours, `method="occlusion"`: activation minus activation with the word deleted (batched over all sentences);
* ours, `method="gradient"`: gradient x input on the word embeddings;
* LIME (`lime.lime_text.LimeTextExplainer`, 1,000 samples): words removed at random, a weighted ridge regression of
  the activation on word presence. LIME's text explainer fits one regression per output column and never checks
  that the columns are probabilities, so it gets the raw activations of all features as its "labels": a LIME
  regression of each feature, on one shared set of samples. LIME is given our words (a callable splitter) so both
  sides rank the same words; it perturbs word types (bow=True), so our scores are summed over a word's occurrences.

Reported per method: Spearman rank correlation with LIME's coefficients over the words of a sentence, top-1 and
top-3 agreement with LIME, the activation drop when the method's top 1 / top 3 words are deleted (a faithfulness
check that needs no reference), and wall time per sentence. With `--lime-repeat`, LIME run again with another seed
gives the agreement LIME has with itself at this sample count.

    HF_HUB_OFFLINE=1 python benchmarks/bench_attribution.py --sentences 30 --features 5 --lime-repeat

The first run fine-tunes the model (63 steps, 2 to 6 minutes on 2 cores) into benchmarks/out/minilm-sst2-1000;
later runs reuse it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def read_tsv(split: str) -> tuple[list[str], list[int]]:
    from hf_sparse.data_paths import shared_data_dir

    root = shared_data_dir()
    if root is None:
        sys.exit("SST-2 not found: set HF_SPARSE_DATA or place the data at ../shared/data")
    lines = (root / "sst2" / f"{split}.tsv").read_text().splitlines()[1:]
    texts, labels = zip(*(line.rsplit("\t", 1) for line in lines))
    return [t.strip() for t in texts], [int(x) for x in labels]


def fine_tuned_model(model_dir: Path, n_train: int, seed: int) -> Path:
    """Fine-tune the packaged MiniLM on `n_train` SST-2 training phrases (once; reused when `model_dir` exists)."""
    if (model_dir / "config.json").exists():
        print(f"reusing the fine-tuned model in {model_dir}")
        return model_dir
    from datasets import ClassLabel, Dataset, Features, Value

    from hf_sparse.synthetic import finetune_text_classifier

    texts, labels = read_tsv("train")
    rows = random.Random(seed).sample([i for i, t in enumerate(texts) if len(t.split()) >= 3], n_train)
    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    ds = Dataset.from_dict({"sentence": [texts[i] for i in rows], "label": [labels[i] for i in rows]}, features=features)
    start = time.perf_counter()
    finetune_text_classifier(ds, text_column="sentence", epochs=2, out_dir=model_dir, progress=True, seed=seed)
    print(f"fine-tuned on {n_train} phrases in {time.perf_counter() - start:.0f} s -> {model_dir}")
    return model_dir


def type_scores(attr, col: int) -> dict[str, float]:
    """Per word type (as LIME's bow=True sees them): the sum of the scores of its occurrences."""
    out: dict[str, float] = {}
    for word, score in zip(attr.words, attr.scores[:, col].tolist()):
        out[word] = out.get(word, 0.0) + score
    return out


def delete_words(attr, words: set[str]) -> str:
    """The text with every occurrence of `words` cut out (by character span)."""
    text, pieces, pos = attr.text, [], 0
    for word, (s, e) in zip(attr.words, attr.spans):
        if word in words:
            pieces.append(text[pos:s])
            pos = e
    pieces.append(text[pos:])
    return " ".join("".join(pieces).split())


def top(scores: dict[str, float], k: int) -> list[str]:
    return sorted(scores, key=lambda w: -scores[w])[:k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=30)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--lime-samples", type=int, default=1000)
    parser.add_argument("--train-phrases", type=int, default=1000)
    parser.add_argument("--model-dir", type=Path, default=OUT / "minilm-sst2-1000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lime-repeat", action="store_true",
                        help="run LIME again with another seed: how much LIME agrees with itself (doubles LIME's time)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from lime.lime_text import LimeTextExplainer
    from scipy.stats import spearmanr

    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.explain import word_attributions

    folder = fine_tuned_model(args.model_dir, args.train_phrases, args.seed)
    model = SparseHeadForSequenceClassification.from_pretrained(folder).eval()
    val_texts, val_labels = read_tsv("validation")
    with torch.no_grad():
        logits = model.sparse_head(model.encode(val_texts, batch_size=64))
    accuracy = float((logits.argmax(-1) == torch.tensor(val_labels)).float().mean())
    print(f"validation accuracy of the fine-tuned model: {accuracy:.2%}")
    features = model.dense_head.weight.abs().amax(0).topk(args.features).indices.tolist()
    print(f"features with the largest dense-head weights: {features}")

    pool = [t for t in val_texts if 6 <= len(t.split()) <= 30]
    texts = random.Random(args.seed).sample(pool, args.sentences)

    def activations(batch: list[str]) -> np.ndarray:
        return model.encode(batch, batch_size=128)[:, features].double().numpy()

    # warm up every code path once; ours are timed before and after LIME (best of the two: the box is shared)
    word_attributions(model, texts[:2], features)
    word_attributions(model, texts[:2], features, method="gradient")
    results, seconds = {}, {}

    def time_ours() -> None:
        for method in ("occlusion", "gradient"):
            start = time.perf_counter()
            results[method] = word_attributions(model, texts, features, method=method)
            seconds[method] = min(seconds.get(method, float("inf")), time.perf_counter() - start)

    time_ours()
    words_of = {a.text: [w for w in a.words] for a in results["occlusion"]}

    def lime_run(seed: int) -> tuple[list[dict[int, dict[str, float]]], float]:
        explainer = LimeTextExplainer(split_expression=lambda t: words_of[t], bow=True, random_state=seed)
        out, start = [], time.perf_counter()
        for n, text in enumerate(texts, 1):
            exp = explainer.explain_instance(text, activations, labels=range(len(features)),
                                             num_features=len(words_of[text]), num_samples=args.lime_samples)
            vocab = exp.domain_mapper.indexed_string
            out.append({col: {vocab.word(i): c for i, c in exp.local_exp[col]} for col in range(len(features))})
            if n % 10 == 0:
                print(f"LIME (seed {seed}): {n}/{len(texts)} sentences, {time.perf_counter() - start:.0f} s", flush=True)
        return out, time.perf_counter() - start

    lime, seconds["lime"] = lime_run(args.seed)
    if args.lime_repeat:
        lime_again, seconds["lime (seed 1)"] = lime_run(args.seed + 1)
    time_ours()

    # every method as per-type scores: {method: [sentence][col] -> {word: score}}
    ranked = {m: [[type_scores(a, c) for c in range(len(features))] for a in results[m]] for m in results}
    ranked["lime"] = [[s[c] for c in range(len(features))] for s in lime]
    if args.lime_repeat:
        ranked["lime (seed 1)"] = [[s[c] for c in range(len(features))] for s in lime_again]
    ranked["random"] = [[{w: r.random() for w in ranked["lime"][i][c]} for c in range(len(features))]
                        for i, r in ((i, random.Random(1000 + i)) for i in range(len(texts)))]

    # faithfulness: delete each method's top-1 / top-3 word types and measure the drop of the feature
    deletions, keys = [], []
    for m in ranked:
        for i, a in enumerate(results["occlusion"]):
            for c in range(len(features)):
                for k in (1, 3):
                    deletions.append(delete_words(a, set(top(ranked[m][i][c], k))))
                    keys.append((m, i, c, k))
    with torch.no_grad():
        deleted = activations(deletions)
    full = np.stack([a.activation.double().numpy() for a in results["occlusion"]])
    drops: dict[tuple[str, int], list[float]] = {}
    for (m, i, c, k), act in zip(keys, deleted):
        drops.setdefault((m, k), []).append(full[i, c] - act[c])

    rows = []
    for m in ("occlusion", "gradient", "lime (seed 1)", "random", "lime"):
        if m not in ranked:
            continue
        rho, top1, top3 = [], [], []
        for i in range(len(texts)):
            for c in range(len(features)):
                ours, ref = ranked[m][i][c], ranked["lime"][i][c]
                words = sorted(ref)
                if m != "lime":
                    r = spearmanr([ours[w] for w in words], [ref[w] for w in words]).statistic
                    if np.isfinite(r):
                        rho.append(r)
                    top1.append(top(ours, 1) == top(ref, 1))
                    top3.append(len(set(top(ours, 3)) & set(top(ref, 3))) / min(3, len(words)))
        t = seconds.get(m)
        rows.append({
            "method": m,
            "spearman_vs_lime": float(np.mean(rho)) if rho else None,
            "spearman_median": float(np.median(rho)) if rho else None,
            "top1_agreement": float(np.mean(top1)) if top1 else None,
            "top3_overlap": float(np.mean(top3)) if top3 else None,
            "drop_top1": float(np.mean(drops[(m, 1)])),
            "drop_top3": float(np.mean(drops[(m, 3)])),
            "seconds_per_sentence": t / len(texts) if t is not None else None,
            "speedup_vs_lime": seconds["lime"] / t if t else None,
        })

    n_words = [len(words_of[t]) for t in texts]
    report = {
        "date": datetime.date.today().isoformat(),
        "command": "HF_HUB_OFFLINE=1 python benchmarks/bench_attribution.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads",
        "model": str(folder),
        "validation_accuracy": accuracy,
        "features": features,
        "sentences": len(texts),
        "words_per_sentence": {"mean": float(np.mean(n_words)), "min": min(n_words), "max": max(n_words)},
        "lime_samples": args.lime_samples,
        "seconds_total": seconds,
        "rows": rows,
        "activation_std_over_sentences": full.std(0).tolist(),
    }
    OUT.mkdir(exist_ok=True)
    path = OUT / f"bench_attribution_{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2))

    def fmt(x, spec):
        return "" if x is None else format(x, spec)

    print("activation std of each feature over the sentences:", np.round(full.std(0), 4).tolist())
    print(f"\n{len(texts)} sentences ({np.mean(n_words):.1f} words on average), features {features}, "
          f"LIME {args.lime_samples} samples; JSON {path.relative_to(OUT.parent)}\n")
    print("| method | Spearman vs LIME (mean / median) | top-1 agreement | top-3 overlap | drop, top-1 deleted | "
          "drop, top-3 deleted | s / sentence | speed vs LIME |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['method']} | {fmt(r['spearman_vs_lime'], '.3f')} / {fmt(r['spearman_median'], '.3f')} | "
              f"{fmt(r['top1_agreement'], '.0%')} | {fmt(r['top3_overlap'], '.0%')} | {r['drop_top1']:.4f} | "
              f"{r['drop_top3']:.4f} | {fmt(r['seconds_per_sentence'], '.4f')} | "
              f"{fmt(r['speedup_vs_lime'], '.0f')}{'x' if r['speedup_vs_lime'] else ''} |")


if __name__ == "__main__":
    main()
