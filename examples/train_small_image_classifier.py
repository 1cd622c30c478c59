"""Train a small transformers ConvNeXt (from a config, no pretrained weights) on CIFAR-10, on CPU.

No pretrained transformers vision model can be downloaded here, so this makes an image classifier to fit a sparse
head on: a `ConvNextForImageClassification` with three small stages, trained for a few epochs on 8,000 images of the
CIFAR-10 set in `../shared/data/cifar10/test.npz` (the other 2,000 are the validation split; see `_shared.py`).
Defaults take a few minutes on two CPU cores. The folder it writes holds the model (safetensors) and a
`ViTImageProcessor` (rescale + normalize at 32x32), so `pipeline("image-classification", ...)` works on it.

Usage:
    python examples/train_small_image_classifier.py --out runs/convnext-cifar10 [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from _shared import load_cifar10

MEAN = [0.4914, 0.4822, 0.4465]
STD = [0.2470, 0.2435, 0.2616]


def to_pixels(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) -> normalized float (N, 3, 32, 32), as the saved image processor computes it."""
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    return (t - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def make_model(num_labels: int, id2label: dict[int, str]):
    """A 3-stage ConvNeXt (32/64/128 channels) with a 2x2 patch stem, so 32x32 images keep 16x16 maps."""
    from transformers import ConvNextConfig, ConvNextForImageClassification

    config = ConvNextConfig(
        num_channels=3, patch_size=2, num_stages=3, hidden_sizes=[32, 64, 128], depths=[1, 1, 2],
        drop_path_rate=0.0, num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )
    return ConvNextForImageClassification(config)


@torch.no_grad()
def accuracy(model, pixels: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    for s in range(0, len(pixels), batch_size):
        correct += int((model(pixel_values=pixels[s : s + batch_size]).logits.argmax(-1) == labels[s : s + batch_size]).sum())
    return correct / len(pixels)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/convnext-cifar10")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from transformers import ViTImageProcessor

    torch.manual_seed(args.seed)
    x_tr, y_tr, x_va, y_va, classes = load_cifar10()
    id2label = dict(enumerate(classes))
    model = make_model(len(classes), id2label)
    pixels, labels = to_pixels(x_tr), torch.from_numpy(y_tr)
    val_pixels, val_labels = to_pixels(x_va), torch.from_numpy(y_va)
    steps = args.epochs * ((len(pixels) + args.batch_size - 1) // args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    print(f"training a {sum(p.numel() for p in model.parameters()) / 1e3:.0f}k-parameter ConvNeXt on {len(pixels)} "
          f"CIFAR-10 images for {args.epochs} epochs ({steps} steps)")
    started = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(pixels))
        for s in range(0, len(perm), args.batch_size):
            idx = perm[s : s + args.batch_size]
            batch = pixels[idx]
            flip = torch.rand(len(idx)) < 0.5  # horizontal flips
            batch[flip] = batch[flip].flip(-1)
            loss = model(pixel_values=batch, labels=labels[idx]).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        acc = accuracy(model, val_pixels, val_labels)
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, validation accuracy {acc:.4f} [{time.time() - started:.0f} s]",
              flush=True)

    out = Path(args.out)
    model.save_pretrained(out)
    ViTImageProcessor(do_resize=False, size={"height": 32, "width": 32}, image_mean=MEAN, image_std=STD).save_pretrained(out)
    (out / "train_metrics.json").write_text(json.dumps(
        {"validation_accuracy": acc, "epochs": args.epochs, "train_images": len(pixels), "seconds": time.time() - started}
    ) + "\n")
    print(f"saved to {out}")


if __name__ == "__main__":
    main()
