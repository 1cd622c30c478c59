"""Data and models the project makes itself, so the whole pipeline runs offline.

- `make_shortcut_sentiment`: a small sentiment dataset written from the project's own templates, with a planted
  shortcut (an innocuous word that goes with the positive label in training and with both labels in test);
- `make_patched_images`: real images (MNIST, CIFAR-10 from the shared data folder: `load_mnist`, `load_cifar10`)
  with a planted patch, a small mark that goes with one class in training and with every class in test;
- `plant_word`: plant a shortcut word in any labelled texts (a share of each label's rows carry it);
- `finetune_text_classifier`: fine-tune the packaged MiniLM encoder (or any encoder folder) into a transformers
  sequence classifier in seconds on a CPU.
"""

from .quick_classifier import finetune_text_classifier
from .planted_patch import load_cifar10, load_mnist, make_patched_images, patch_box, stamp_patch
from .planted_word import plant_word
from .shortcut_sentiment import SHORTCUT_WORD, make_shortcut_sentiment

__all__ = [
    "SHORTCUT_WORD",
    "finetune_text_classifier",
    "load_cifar10",
    "load_mnist",
    "make_patched_images",
    "make_shortcut_sentiment",
    "patch_box",
    "plant_word",
    "stamp_patch",
]
