"""Data and models the project makes itself, so the whole pipeline runs offline.

- `make_shortcut_sentiment`: a small sentiment dataset written from the project's own templates, with a planted
  shortcut (an innocuous word that goes with the positive label in training and with both labels in test);
- `finetune_text_classifier`: fine-tune the packaged MiniLM encoder (or any encoder folder) into a transformers
  sequence classifier in seconds on a CPU.
"""

from .quick_classifier import finetune_text_classifier
from .shortcut_sentiment import SHORTCUT_WORD, make_shortcut_sentiment

__all__ = ["SHORTCUT_WORD", "finetune_text_classifier", "make_shortcut_sentiment"]
