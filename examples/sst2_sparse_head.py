"""Fit a sparse head (5 features per class) on a fine-tuned SST-2 classifier and compare it with the dense head.

Loads the classifier made by `examples/finetune_minilm_sst2.py` (or any fine-tuned transformers text classifier
with SST-2's labels 0 = negative, 1 = positive) with `SparseHeadForSequenceClassification.from_pretrained`, fits
the elastic-net path on the features of `--train-size` SST-2 training phrases, installs the point with
`--features-per-class` features per class and prints dense versus sparse accuracy on the 872 validation
sentences, next to the paper's SST-2 figures (Wong, Santurkar & Madry 2021, BERT-base: 92.20% dense, 90.25%
sparse at 5.00 features per class). The features are cached, so a second run skips the encoder.

Usage:
    python examples/sst2_sparse_head.py --model runs/minilm-sst2 --out runs/minilm-sst2-sparse
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _shared import read_sst2

PAPER = {"dense": 0.9220, "sparse": 0.9025, "features_per_class": 5.00}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="runs/minilm-sst2", help="fine-tuned classifier folder or id")
    parser.add_argument("--out", default="runs/minilm-sst2-sparse", help="where to save the sparse model")
    parser.add_argument("--train-size", type=int, default=20000, help="SST-2 phrases to fit the head on (0: all)")
    parser.add_argument("--features-per-class", type=int, default=5)
    parser.add_argument("--no-relax", dest="relax", action="store_false",
                        help="keep the path point's shrunken weights (by default the selected features are "
                             "refit with a light penalty, which recovers the accuracy shrinkage costs)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cache-dir", default=None, help="feature cache (default: the datasets cache)")
    parser.add_argument("--base-model", default="sentence-transformers/all-MiniLM-L6-v2",
                        help="the card's base_model: the Hub id of the pretrained model --model was fine-tuned from")
    parser.add_argument("--dataset-id", default="stanfordnlp/sst2", help="the card's dataset (a Hub dataset id)")
    parser.add_argument("--license", default="apache-2.0", help="the card's license (a Hub license id)")
    parser.add_argument("--language", default="en", help="the card's language (an ISO 639 code)")
    parser.add_argument("--model-id", default=None,
                        help="the Hub repo id the model will be pushed to, for the card's usage example (default: "
                             "none; the card then says how to load it from its folder)")
    parser.add_argument("--card-copy", default=None,
                        help="also write the model card alone (README.md + pictures) into this folder, e.g. "
                             "model_cards/examples/minilm-sst2")
    args = parser.parse_args(argv)

    from datasets import Dataset

    from hf_sparse import SparseHeadForSequenceClassification

    train_texts, train_labels = read_sst2("train")
    if args.train_size:
        order = torch.randperm(len(train_texts), generator=torch.Generator().manual_seed(1))[: args.train_size]
        train_texts = [train_texts[i] for i in order.tolist()]
        train_labels = [train_labels[i] for i in order.tolist()]
    val_texts, val_labels = read_sst2("validation")
    train = Dataset.from_dict({"sentence": train_texts, "label": train_labels})
    val = Dataset.from_dict({"sentence": val_texts, "label": val_labels})

    started = time.time()
    model = SparseHeadForSequenceClassification.from_pretrained(args.model)
    path = model.fit_sparse_head(
        train, eval_dataset=val, text_column="sentence", label_column="label",
        features_per_class=args.features_per_class, relax=args.relax, batch_size=args.batch_size,
        cache_dir=args.cache_dir, progress=True,
    )
    seconds = time.time() - started
    dense, sparse = model.config.dense_metrics, model.config.sparse_metrics
    summary = model.head_summary()
    print()
    print(f"path: {len(path)} points, lambda {path.lambdas.max():.3g} .. {path.lambdas.min():.3g}; selected "
          f"lambda {model.config.selected_lambda:.4g} ({model.config.selection['method']}={model.config.selection['value']})")
    print(f"head: {summary['nnz']} nonzero weights, {summary['n_features']} distinct features of {summary['num_features']}")
    print()
    print("SST-2 validation (872 sentences)     dense     sparse   features/class")
    print(f"  this run (MiniLM-L6, 2-core CPU)  {dense['accuracy']:.2%}    {sparse['accuracy']:.2%}   "
          f"{sparse['features_per_class']:.2f} (dense: {dense['features_per_class']:.0f})")
    print(f"  paper (BERT-base)                 {PAPER['dense']:.2%}    {PAPER['sparse']:.2%}   {PAPER['features_per_class']:.2f}")
    drop = dense["accuracy"] - sparse["accuracy"]
    print(f"  sparse - dense: {-drop:+.2%} (paper {PAPER['sparse'] - PAPER['dense']:+.2%}); "
          f"target |drop| <= 1 point: {'met' if drop <= 0.01 else 'NOT met'}")
    print(f"[{seconds:.0f} s for features + path + selection]")
    model.describe_features(progress=True)  # words and examples behind each feature, for the card
    print(model.explain("a gorgeous, witty, moving film"))
    # the card's metadata, saved in the model's config (so a later card refresh keeps it)
    model.model_card_data.update(
        base_model=args.base_model, datasets=[args.dataset_id], license=args.license, language=args.language,
        model_id=args.model_id, eval_split="validation",
        widget=["a gorgeous, witty, moving film", "the plot is paper-thin and the jokes fall flat"])
    model.save_pretrained(args.out)
    if args.card_copy:
        from hf_sparse.card import write_model_card

        Path(args.card_copy).mkdir(parents=True, exist_ok=True)
        write_model_card(model, args.card_copy)
    result = {
        "dense_accuracy": dense["accuracy"], "sparse_accuracy": sparse["accuracy"],
        "features_per_class": sparse["features_per_class"], "n_features": summary["n_features"],
        "selected_lambda": model.config.selected_lambda, "train_size": len(train), "seconds": seconds,
        "relax": args.relax, "selection": model.config.selection,
    }
    (Path(args.out) / "sst2_results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved to {args.out}")
    return result


if __name__ == "__main__":
    main()
