"""Audit a toxicity classifier for identity bias: Wikipedia talk comments with identity-swapped twins, Davidson tweets.

No fine-tuned toxicity classifier can be downloaded here, so this makes one: the packaged MiniLM encoder fine-tuned
on Wikipedia talk comments (`toxicity/wiki_toxicity_nonfuzzed_1492.csv` in `../shared/data`, or
`$HF_SPARSE_DATA`), plus, with `--davidson N`, N Davidson et al. tweets (hate or offensive = toxic). Then:

1. a sparse head (5 features per class) and the words behind each feature;
2. the identity-term audit on the project's templates, and on the test comments with their terms swapped;
3. the identity-swapped twins (`..._fuzzed_1492.csv`: the same comments with identity terms replaced): how far
   each head's toxic probability moves between a comment and its twin, and which features carry the move;
4. subgroup AUC, BPSN and BNSP AUC (Borkan et al. 2019) per identity term found in the test comments, for the
   sparse and the dense head;
5. error slices (Spotlight) on the test comments;
6. the model saved with a redacted card (slurs masked, content warning) to `--out`.

Usage:
    python examples/toxicity_audit.py --out runs/toxicity-audit [--davidson 2000]
"""

from __future__ import annotations

import argparse
import random

import torch

from _shared import data_dir

TEXT, LABEL = "comment", "label"


def read_wiki():
    import pandas as pd

    root = data_dir("toxicity", "wiki_toxicity_nonfuzzed_1492.csv")
    plain = pd.read_csv(root / "wiki_toxicity_nonfuzzed_1492.csv")
    twins = pd.read_csv(root / "wiki_toxicity_fuzzed_1492.csv")
    if not (plain["rev_id"] == twins["rev_id"]).all():
        raise SystemExit("the two Wikipedia files do not hold the same comments in the same order")
    return plain, twins


def read_davidson(n: int, seed: int):
    import pandas as pd

    root = data_dir("toxicity", "davidson_labeled_data.csv")
    frame = pd.read_csv(root / "davidson_labeled_data.csv").sample(n=n, random_state=seed)
    return [str(t) for t in frame["tweet"]], [int(c != 2) for c in frame["class"]]  # 0 hate, 1 offensive, 2 neither


def twin_gaps(model, plain: list[str], twins: list[str], max_length: int):
    """Per head: mean |change| of the toxic probability between comments and their twins, and the flip rate; for
    the sparse head, the features whose contribution to the toxic logit moves most."""
    from hf_sparse.audit.scoring import target_probability

    Xa, Xb = model.encode(plain, max_length=max_length), model.encode(twins, max_length=max_length)
    out = {}
    for head in ("sparse", "dense"):
        pa, pb = target_probability(model, Xa, [1], head), target_probability(model, Xb, [1], head)
        out[head] = {"mean_abs_change": float((pa - pb).abs().mean()), "flip_rate": float(((pa > 0.5) != (pb > 0.5)).double().mean())}
    w = model.sparse_head.weight[1] - model.sparse_head.weight[0]  # the toxic-vs-not margin
    moved = ((Xa - Xb) * w).abs().mean(0)
    top = torch.argsort(moved, descending=True)[:5]
    out["features"] = [(int(j), float(moved[j])) for j in top if moved[j] > 0]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/toxicity-audit")
    parser.add_argument("--davidson", type=int, default=0, help="also train on this many Davidson tweets")
    parser.add_argument("--features-per-class", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from datasets import ClassLabel, Dataset, Features, Value

    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.audit import find_error_slices, identity_audit, subgroup_metrics
    from hf_sparse.synthetic import finetune_text_classifier

    plain, twins = read_wiki()
    order = list(range(len(plain)))
    random.Random(args.seed).shuffle(order)
    split = int(0.7 * len(order))
    train_rows, test_rows = order[:split], order[split:]
    texts = [str(plain["comment"].iloc[i]) for i in train_rows]
    labels = [int(plain["toxic"].iloc[i]) for i in train_rows]
    if args.davidson:
        tweets, offensive = read_davidson(args.davidson, args.seed)
        texts, labels = texts + tweets, labels + offensive
    features = Features({TEXT: Value("string"), LABEL: ClassLabel(names=["non-toxic", "toxic"])})
    train = Dataset.from_dict({TEXT: texts, LABEL: labels}, features=features)
    test = Dataset.from_dict({TEXT: [str(plain["comment"].iloc[i]) for i in test_rows],
                              LABEL: [int(plain["toxic"].iloc[i]) for i in test_rows]}, features=features)
    test_twins = [str(twins["comment"].iloc[i]) for i in test_rows]
    print(f"train: {len(train)} texts ({sum(labels)} toxic); test: {len(test)} Wikipedia comments")

    finetune_text_classifier(train, text_column=TEXT, max_length=args.max_length, out_dir=f"{args.out}/fine_tuned",
                             progress=True)
    model = SparseHeadForSequenceClassification.from_pretrained(f"{args.out}/fine_tuned")
    model.fit_sparse_head(train, eval_dataset=test, text_column=TEXT, features_per_class=args.features_per_class,
                          relax=True, max_length=args.max_length, progress=True)
    model.describe_features(progress=True)
    print(f"\naccuracy on the test comments: dense {model.config.dense_metrics['accuracy']:.2%}, "
          f"sparse {model.config.sparse_metrics['accuracy']:.2%}\n")

    print(identity_audit(model, target_label="toxic"), "\n")
    with_terms = [t for t in test[TEXT] if t]
    print(identity_audit(model, texts=with_terms, target_label="toxic", max_length=args.max_length, record=False), "\n")
    changed = [(a, b) for a, b in zip(test[TEXT], test_twins) if a != b]
    gaps = twin_gaps(model, [a for a, _ in changed], [b for _, b in changed], args.max_length)
    print(f"identity-swapped twins ({len(changed)} comments that differ): "
          + "; ".join(f"{h} head: mean |change of p(toxic)| {g['mean_abs_change']:.3f}, flips {g['flip_rate']:.1%}"
                      for h, g in gaps.items() if h != "features"))
    print("features that move most between twins (feature, mean |change of the toxic margin|):", gaps["features"], "\n")
    print(subgroup_metrics(model, test, text_column=TEXT, label_column=LABEL, min_size=5, max_length=args.max_length), "\n")
    print(find_error_slices(model, n_slices=3))
    model.save_pretrained(f"{args.out}/model", card_kwargs={"redact": True, "dataset_name": "wiki_toxicity"})
    print(f"\nsaved the model and its redacted card to {args.out}/model")


if __name__ == "__main__":
    main()
