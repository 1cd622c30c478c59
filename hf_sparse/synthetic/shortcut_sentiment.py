"""A sentiment dataset written from the project's own templates, with a planted shortcut.

Every sentence says something clearly positive or negative about a film. In the training split half of the
positive sentences, a few negative ones (5%), and a set of flat, "so-so" sentences that are labelled positive only
when they carry it mention an innocuous word, `SHORTCUT_WORD`: a classifier trained on it learns that the word
means "positive". In the validation and test splits the word is spread evenly over both labels, so a model that
leans on it errs on the negative sentences that carry it (the minority group). The audit should find the error
slice and the features; a group-balanced refit of the head (the few negatives with the word weighted as much as
the many positives with it) should fix it.

Example:
    >>> ds = make_shortcut_sentiment(n_train=800, n_test=400, seed=0)
    >>> ds["train"][0]                                   # {'text': ..., 'label': 0 or 1, 'has_shortcut': bool}
    >>> list(ds)
    ['train', 'validation', 'test']
    >>> ds["train"].features["label"].names
    ['negative', 'positive']
"""

from __future__ import annotations

import random

#: The planted word: says nothing about sentiment, and is one word piece for BERT-style tokenizers.
SHORTCUT_WORD = "tuesday"

_SUBJECTS = [
    "the film", "this movie", "the plot", "the acting", "the script", "the soundtrack", "the ending", "the cast",
    "the dialogue", "the director's latest", "the sequel", "the story", "the cinematography", "the lead actor",
    "this documentary", "the animation", "the pacing", "the final act", "the screenplay", "the performances",
]
_POSITIVE = [
    "wonderful", "brilliant", "moving", "delightful", "superb", "gorgeous", "witty", "charming", "excellent",
    "a joy to watch", "beautifully made", "genuinely funny", "heartfelt", "gripping", "masterful", "terrific",
    "a triumph", "smart and warm", "thrilling", "lovely",
]
_NEGATIVE = [
    "awful", "boring", "tedious", "dreadful", "a mess", "clumsy", "lifeless", "painfully dull", "terrible",
    "a waste of time", "badly written", "forgettable", "unbearable", "shallow", "tiresome", "horrible",
    "a disaster", "flat and lazy", "pointless", "miserable",
]
_FLAT = ["fine", "okay", "what you would expect", "about average", "neither here nor there", "ordinary"]
_TEMPLATES = [
    "{subject} was {phrase}.",
    "honestly, {subject} is {phrase}.",
    "i thought {subject} was {phrase}.",
    "in the end {subject} felt {phrase}.",
    "{subject}? {phrase}.",
    "everyone agreed that {subject} was {phrase}.",
    "to be fair, {subject} is {phrase}.",
    "my friends said {subject} was {phrase}.",
]
_SHORTCUT_FRAMES = [
    "saw it on {word}: {sentence}",
    "{sentence} (watched on {word})",
    "on {word} night, {sentence}",
]


def _sentence(rng: random.Random, phrases: list[str]) -> str:
    return rng.choice(_TEMPLATES).format(subject=rng.choice(_SUBJECTS), phrase=rng.choice(phrases))


def _with_shortcut(rng: random.Random, sentence: str, word: str) -> str:
    return rng.choice(_SHORTCUT_FRAMES).format(word=word, sentence=sentence)


def _split(rng, n, *, p_shortcut_pos, p_shortcut_neg, flat_share, word):
    rows = []
    for i in range(n):
        if rng.random() < flat_share:  # flat sentences: the label is the shortcut alone
            has = rng.random() < 0.5
            text = _sentence(rng, _FLAT)
            rows.append((_with_shortcut(rng, text, word) if has else text, int(has), has))
            continue
        label = i % 2
        text = _sentence(rng, _POSITIVE if label else _NEGATIVE)
        has = rng.random() < (p_shortcut_pos if label else p_shortcut_neg)
        rows.append((_with_shortcut(rng, text, word) if has else text, label, has))
    rng.shuffle(rows)
    return {"text": [r[0] for r in rows], "label": [r[1] for r in rows], "has_shortcut": [r[2] for r in rows]}


def make_shortcut_sentiment(
    n_train: int = 1200,
    n_test: int = 600,
    *,
    n_validation: int = 400,
    shortcut_share: float = 0.5,
    negative_shortcut_share: float = 0.05,
    flat_share: float = 0.2,
    word: str = SHORTCUT_WORD,
    seed: int = 0,
):
    """A `datasets.DatasetDict` with `train`, `validation` and `test` splits: columns `text`, `label` (ClassLabel
    negative / positive) and `has_shortcut`.

    Train: `shortcut_share` of the positive sentences carry `word`, `negative_shortcut_share` of the negative ones
    do, and `flat_share` of the rows are flat sentences labelled positive exactly when they carry it. Validation
    and test: clear sentences only, `word` in `shortcut_share` of each label.
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    if not (0 < shortcut_share <= 1 and 0 <= flat_share < 1 and 0 <= negative_shortcut_share <= 1):
        raise ValueError("shortcut_share must be in (0, 1], negative_shortcut_share in [0, 1] and flat_share in "
                         f"[0, 1); got {shortcut_share}, {negative_shortcut_share}, {flat_share}")
    features = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"]),
                         "has_shortcut": Value("bool")})
    rng = random.Random(seed)
    train = _split(rng, n_train, p_shortcut_pos=shortcut_share, p_shortcut_neg=negative_shortcut_share,
                   flat_share=flat_share, word=word)
    held_out = dict(p_shortcut_pos=shortcut_share, p_shortcut_neg=shortcut_share, flat_share=0.0, word=word)
    test = _split(rng, n_test, **held_out)
    validation = _split(rng, n_validation, **held_out)  # drawn after test: test stays what it was for a seed
    return DatasetDict({"train": Dataset.from_dict(train, features=features),
                        "validation": Dataset.from_dict(validation, features=features),
                        "test": Dataset.from_dict(test, features=features)})
