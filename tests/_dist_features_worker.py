"""Worker for the multi-process feature tests (not collected by pytest).

Loads a tiny saved classifier and a saved dataset, runs ``extract_features`` and
writes a JSON report per process. Run under torchrun for the distributed test
(``ACCELERATE_USE_CPU=1 python -m torch.distributed.run --nproc_per_node 2 ...``)
or as plain processes for the concurrency and kill tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--report", required=True, help="report file prefix; '-<rank or pid>.json' is added")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--sleep-per-batch", type=float, default=0.0)
    args = parser.parse_args()

    from datasets import load_from_disk
    from transformers import AutoModelForSequenceClassification

    from features_helpers import ForwardCounter, embeddings_of
    from hf_sparse.features import extract_features

    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir).eval()
    dataset = load_from_disk(args.data_dir)
    counter = ForwardCounter(embeddings_of(model))
    if args.sleep_per_batch:
        embeddings_of(model).register_forward_hook(lambda *_: time.sleep(args.sleep_per_batch))

    # No accelerator is passed: under torchrun, extract_features sets one up itself.
    feats = extract_features(model, dataset, cache_dir=args.cache_dir, batch_size=args.batch_size,
                             shard_size=args.shard_size, show_progress=False)

    rank = int(os.environ.get("RANK", "-1"))
    if rank >= 0:
        from accelerate.state import PartialState

        state = PartialState()
        world = state.num_processes
    else:
        world = 1
    report = {
        "rank": rank,
        "world": world,
        "key": feats.fingerprint,
        "num_rows": len(feats),
        "forward_calls": counter.calls,
        "forward_rows": counter.rows,
        "checksum": float(feats.features.double().sum()),
    }
    suffix = rank if rank >= 0 else os.getpid()
    Path(f"{args.report}-{suffix}.json").write_text(json.dumps(report))
    if rank >= 0:
        # Exiting with the gloo process group alive sometimes aborts a process
        # ("terminate called without an active exception").
        state.wait_for_everyone()
        state.destroy_process_group()


if __name__ == "__main__":
    main()
