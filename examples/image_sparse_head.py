"""Fit a sparse head (5 features per class) on a small CIFAR-10 image classifier and compare it with the dense head.

Loads the classifier made by `examples/train_small_image_classifier.py` (or any transformers image classifier
with CIFAR-10's ten labels) with `SparseHeadForImageClassification.from_pretrained`, fits the elastic-net path on
the features of the 8,000 training images, installs the point with `--features-per-class` features per class
and prints dense versus sparse accuracy on the 2,000 validation images.

Usage:
    python examples/image_sparse_head.py --model runs/convnext-cifar10 --out runs/convnext-cifar10-sparse
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _shared import load_cifar10


def to_dataset(x, y, classes):
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature
    from PIL import Image

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=classes)})
    return Dataset.from_dict({"image": [Image.fromarray(a) for a in x], "label": y.tolist()}, features=features)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="runs/convnext-cifar10")
    parser.add_argument("--out", default="runs/convnext-cifar10-sparse")
    parser.add_argument("--features-per-class", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)

    from hf_sparse import SparseHeadForImageClassification

    x_tr, y_tr, x_va, y_va, classes = load_cifar10()
    train, val = to_dataset(x_tr, y_tr, classes), to_dataset(x_va, y_va, classes)
    started = time.time()
    model = SparseHeadForImageClassification.from_pretrained(args.model)
    path = model.fit_sparse_head(
        train, eval_dataset=val, image_column="image", features_per_class=args.features_per_class,
        batch_size=args.batch_size, cache_dir=args.cache_dir, progress=True,
    )
    seconds = time.time() - started
    dense, sparse = model.config.dense_metrics, model.config.sparse_metrics
    summary = model.head_summary()
    print()
    print(f"path: {len(path)} points; selected lambda {model.config.selected_lambda:.4g}; head: {summary['nnz']} "
          f"nonzeros, {summary['n_features']} distinct features of {summary['num_features']}")
    print("CIFAR-10 validation (2,000 images)   dense     sparse   features/class")
    print(f"  small ConvNeXt, 2-core CPU        {dense['accuracy']:.2%}    {sparse['accuracy']:.2%}   "
          f"{sparse['features_per_class']:.2f} (dense: {dense['features_per_class']:.0f})")
    print(f"[{seconds:.0f} s for features + path + selection]")
    model.save_pretrained(args.out)
    result = {
        "dense_accuracy": dense["accuracy"], "sparse_accuracy": sparse["accuracy"],
        "features_per_class": sparse["features_per_class"], "n_features": summary["n_features"],
        "num_features": summary["num_features"], "selected_lambda": model.config.selected_lambda, "seconds": seconds,
    }
    (Path(args.out) / "image_results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved to {args.out}")
    return result


if __name__ == "__main__":
    main()
