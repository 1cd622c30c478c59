"""Which features of the sparse head carry a given word: a first look for a shortcut.

The score of a feature j is a label-stratified effect size of the word on it, in units of the feature's spread:

    effect_j = sum_s n_s,word * (mean of x_j on rows of stratum s with the word - mean on rows of s without it)
               / sum_s n_s,word / std(x_j over all rows)

where a stratum s is one label within one split (train or eval), and only strata holding rows with and rows without
the word count. Comparing rows of the same label removes what a shortcut plants on purpose: in the training data the
word goes with one label, so a pure sentiment feature would differ between rows with and without it; within a label
it does not. Dividing by the feature's whole spread (not the within-group one) measures how much of what the feature
does is the word: a feature that fires on the word alone scores higher than one that fires on the word and on
sentiment, although the word moves both by the same amount. `score = |effect|`: a feature the word lowers is as
much a carrier.

Each result also gives `top_share`, the older measure: the largest share, over the directions in which the head
reads the feature, of its top examples (`hf_sparse.explain.top_examples`, the definition `describe_features`
uses) that contain the word. On a planted shortcut it reaches 1.0 for several features and cannot single one out.

Example:
    >>> found = features_with_word(model, "tuesday")      # after fit_sparse_head; train and eval texts
    >>> found[0].feature, round(found[0].score, 2), found[0].top_share, found[0].n_with_word
    (209, 1.12, 0.85, {'train': 381, 'eval': 310})
    >>> for j, score in found: ...                        # iterates as (feature, score) pairs
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from ..explain.top_examples import SPLITS, TopExamples, cached_rows, top_examples


@dataclass
class WordFeature:
    """One feature's link to a word. `score`: |effect|; `effect`: the signed label-stratified effect size (module
    docstring); `top_share`: the largest share of its `n_examples` top examples that contain the word (over the
    directions the head reads it in); `top`: those top examples, one `TopExamples` per direction; `n_with_word`:
    rows containing the word per split; `n_rows`: rows searched per split. Unpacks as `(feature, score)`."""

    feature: int
    score: float
    effect: float
    top_share: float
    n_with_word: dict = field(default_factory=dict)
    n_rows: dict = field(default_factory=dict)
    top: list[TopExamples] = field(default_factory=list, repr=False)

    def __iter__(self):
        return iter((self.feature, self.score))


def _word_pattern(word: str) -> re.Pattern:
    words = str(word).split()
    if not words:
        raise ValueError("features_with_word needs a non-empty word, e.g. features_with_word(model, 'tuesday')")
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)", re.IGNORECASE)


def word_effect_sizes(X: torch.Tensor, has_word: torch.Tensor, strata: torch.Tensor | None = None) -> torch.Tensor:
    """The label-stratified effect size of a 0/1 `has_word` on every column of `X` (n, d), see the module docstring.

    `strata`: an integer group per row (e.g. label, or split and label); None is one group. NaN for a column with
    no spread; raises when no stratum holds rows both with and without the word.

    Example:
        >>> word_effect_sizes(torch.tensor([[1.0], [0.0], [3.0], [2.0]]), torch.tensor([1, 0, 1, 0]),
        ...                   torch.tensor([0, 0, 1, 1]))      # shift 1 in both strata / std 1.29
        tensor([0.7746], dtype=torch.float64)
    """
    X = X.double()
    has_word = has_word.bool()
    strata = torch.zeros(len(X), dtype=torch.long) if strata is None else strata.long()
    shift, weight = torch.zeros(X.shape[1], dtype=torch.float64), 0
    for s in torch.unique(strata).tolist():
        inside = strata == s
        with_word, without = inside & has_word, inside & ~has_word
        n_with = int(with_word.sum())
        if n_with == 0 or int(without.sum()) == 0:
            continue
        shift += n_with * (X[with_word].mean(0) - X[without].mean(0))
        weight += n_with
    if weight == 0:
        raise ValueError("no label holds rows both with and without the word, so its effect cannot be told apart "
                         "from the label's; search more data (split='both') or check the word")
    std = X.std(0) if len(X) > 1 else torch.zeros(X.shape[1], dtype=torch.float64)
    return torch.where(std > 0, shift / weight / std.clamp_min(1e-300), torch.full_like(std, math.nan))


def features_with_word(
    model,
    word: str,
    *,
    n_examples: int = 20,
    split: str = "both",
    features: list[int] | None = None,
) -> list[WordFeature]:
    """The head's features (or `features`) ranked by how specifically they carry `word`, highest score first.

    `split`: the cached texts searched, "both" (train and eval, default), "train" or "eval". Whole-word,
    case-insensitive match. See the module docstring for the score; `top_share` is the older top-example share.

    Example:
        >>> [(f.feature, round(f.score, 2), f.top_share) for f in features_with_word(model, "tuesday")[:2]]
        [(209, 1.12, 0.85), (46, 1.05, 1.0)]
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    data = cached_rows(model, split, caller="features_with_word")
    if model.modality != "text":
        raise TypeError("features_with_word needs a text model")
    pattern = _word_pattern(word)
    text_column = model.fit_data.text_column
    has_word = torch.tensor([bool(pattern.search(str(t))) for t in data.column(text_column)], dtype=torch.bool)
    names = list(data.datasets)
    n_rows = {s: data.count(s) for s in names}
    n_with = {s: int(sum(bool(h) for h, sp in zip(has_word.tolist(), data.splits) if sp == s)) for s in names}
    if not has_word.any():
        raise ValueError(f"{word!r} occurs in none of the {len(data)} cached texts ({split} split"
                         f"{'s' if split == 'both' else ''}); check the spelling, or search split='both'")
    used = model.sparse_head.active_features.tolist() if features is None else [int(j) for j in features]
    bad = [j for j in used if not 0 <= j < data.X.shape[1]]
    if bad:
        raise ValueError(f"feature indices {bad} are outside 0..{data.X.shape[1] - 1}")
    if not used:
        return []
    split_id = torch.tensor([names.index(s) for s in data.splits])
    labels = data.labels
    if labels is not None and labels.dim() == 1 and not labels.is_floating_point():
        strata = torch.unique(torch.stack([split_id, labels.long()], 1), dim=0, return_inverse=True)[1]
    else:  # no class labels (regression, multi-label): strata by split only
        strata = split_id
    effects = word_effect_sizes(data.X[:, used], has_word, strata)
    results = []
    for k, j in enumerate(used):
        tops = top_examples(model, j, n=n_examples, data=data)
        share = max(float(has_word[t.positions].double().mean()) if t.positions else 0.0 for t in tops)
        effect = float(effects[k])
        results.append(WordFeature(feature=j, score=0.0 if math.isnan(effect) else abs(effect), effect=effect,
                                   top_share=share, n_with_word=dict(n_with), n_rows=dict(n_rows), top=tops))
    return sorted(results, key=lambda r: (-r.score, -r.top_share, r.feature))
