"""Data loading shared by the examples: SST-2 and CIFAR-10 from the shared data folder (never downloaded)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: CIFAR-10 ships here as its 10,000-image test set; the examples split it 8,000 / 2,000 with this seed.
CIFAR_SEED = 0
CIFAR_TRAIN = 8000


def data_dir(sub: str, needed: str) -> Path:
    """`$HF_SPARSE_DATA/<sub>` or `../shared/data/<sub>`; exits with a clear message if `needed` is absent."""
    from hf_sparse.data_paths import shared_data_dir

    root = shared_data_dir()
    if root is None or not (root / sub / needed).is_file():
        sys.exit(f"{sub}/{needed} not found: set HF_SPARSE_DATA to the folder that holds it.")
    return root / sub


def read_sst2(split: str) -> tuple[list[str], list[int]]:
    """Sentences and labels of SST-2 `train` (67,349 phrases) or `validation` (872 sentences)."""
    texts, labels = [], []
    with open(data_dir("sst2", f"{split}.tsv") / f"{split}.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            texts.append(row["sentence"].strip())
            labels.append(int(row["label"]))
    return texts, labels


def load_cifar10():
    """(x_train, y_train, x_val, y_val, class names): uint8 (N, 32, 32, 3) images, int64 labels."""
    import numpy as np

    with np.load(data_dir("cifar10", "test.npz") / "test.npz", allow_pickle=False) as z:
        x, y, classes = z["x"], z["y"].astype(np.int64), [str(c) for c in z["classes"]]
    order = np.random.default_rng(CIFAR_SEED).permutation(len(x))
    tr, va = order[:CIFAR_TRAIN], order[CIFAR_TRAIN:]
    return x[tr], y[tr], x[va], y[va], classes
