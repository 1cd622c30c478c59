"""Which features of the sparse head fire on examples that contain a given word: a first look for a shortcut.

For each feature the head uses, its top examples are the evaluation examples that push hardest towards a class it
weighs (largest value times the sign of that weight, for each sign the feature's weights take); the largest share of
them containing the word ranks it.

Example:
    >>> features_with_word(model, "tuesday")[:2]      # after fit_sparse_head
    [(46, 1.0), (214, 0.35)]
"""

from __future__ import annotations

import re

import torch


def features_with_word(model, word: str, *, n_examples: int = 20) -> list[tuple[int, float]]:
    """(feature, share of its `n_examples` top examples that contain `word`), highest share first."""
    fit = getattr(model, "fit_data", None)
    if fit is None:
        raise ValueError("features_with_word reads the cached features of the last fit: call model.fit_sparse_head first.")
    if model._modality != "text":
        raise TypeError("features_with_word needs a text model")
    cached, dataset = fit.features, fit.dataset
    X = cached.features.float()
    rows = cached.indices.tolist()
    pattern = re.compile(r"\b" + re.escape(word) + r"\b", re.IGNORECASE)
    texts = dataset[fit.text_column]
    has_word = torch.tensor([bool(pattern.search(str(texts[r]))) for r in rows])
    W = model.sparse_head.weight.float().cpu()
    ranked = []
    for j in model.sparse_head.active_features.tolist():
        shares = []
        for sign in {float(torch.sign(w)) for w in W[:, j] if w != 0}:  # towards each class it pushes up or down
            top = torch.argsort(sign * X[:, j], descending=True)[:n_examples]
            shares.append(float(has_word[top].double().mean()))
        ranked.append((j, max(shares)))
    return sorted(ranked, key=lambda item: -item[1])
