"""Plant a shortcut word in any labelled text data: the test bed for finding and fixing a shortcut.

`plant_word` appends a neutral word to a share of each label's texts (e.g. 80% of the positives and 5% of the
negatives in training, half of each in test), and records which rows carry it in a `has_shortcut` column. A
classifier fine-tuned on the training split learns the word as a cue for the label it goes with.

Example:
    >>> ds = plant_word(texts, labels, word="kowalski", share_by_label={1: 0.8, 0: 0.05}, seed=0)
    >>> ds.column_names
    ['text', 'label', 'has_shortcut']
"""

from __future__ import annotations

import random

#: How the word joins a text: appended, as a token would be by a spurious data source.
FRAME = "{text} {word}"


def plant_word(texts, labels, *, word: str, share_by_label: dict, seed: int = 0, label_names=None,
               frame: str = FRAME):
    """A `datasets.Dataset` (`text`, `label`, `has_shortcut`) where each row of label c carries `word` with
    probability `share_by_label.get(c, 0)`."""
    from datasets import ClassLabel, Dataset, Features, Value

    texts, labels = list(texts), [int(v) for v in labels]
    if len(texts) != len(labels):
        raise ValueError(f"plant_word: {len(texts)} texts for {len(labels)} labels")
    for c, share in share_by_label.items():
        if not 0 <= share <= 1:
            raise ValueError(f"plant_word: the share for label {c} must be in [0, 1]; got {share}")
    rng = random.Random(seed)
    out_texts, has = [], []
    for text, c in zip(texts, labels):
        carries = rng.random() < share_by_label.get(c, 0.0)
        out_texts.append(frame.format(text=text, word=word) if carries else text)
        has.append(carries)
    names = list(label_names) if label_names else [str(i) for i in range(max(labels) + 1)]
    features = Features({"text": Value("string"), "label": ClassLabel(names=names), "has_shortcut": Value("bool")})
    return Dataset.from_dict({"text": out_texts, "label": labels, "has_shortcut": has}, features=features)
