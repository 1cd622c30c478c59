"""Fixes that work: group-balanced weights, groups from columns/words/slices, worst-group selection, the
balanced refit on cached features, counterfactual augmentation, and the FixReport (JSON, card).

Fast tests: hand computations, the solver against a row-duplicated problem, and a tiny model whose cached
features are made by hand (a core feature and a shortcut feature that agrees with the label in 95% of training
rows and in half of the evaluation rows), so that the right answer is known. The MiniLM planted-shortcut checks
are in tests/test_audit.py and benchmarks/bench_fixes.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_sparse import SparseHeadForSequenceClassification  # noqa: E402
from hf_sparse.audit import (  # noqa: E402
    FixReport,
    balanced_refit,
    contains_word,
    find_error_slices,
    identity_swaps,
    reports_from_json,
    reports_to_json,
)
from hf_sparse.modeling.encode import FitData  # noqa: E402
from hf_sparse.modeling.fitting import cell_groups, fit_on_cached_features  # noqa: E402
from hf_sparse.modeling.groups import resolve_groups  # noqa: E402
from hf_sparse.solver import fit_path  # noqa: E402
from hf_sparse.solver.balance import group_accuracy, group_balanced_weights, worst_group_accuracy  # noqa: E402

from _tiny_models import save_text_classifier  # noqa: E402


# ----------------------------------------------------------------------------------------------- weights
def test_balanced_weights_give_every_cell_the_same_total():
    groups = [0, 0, 0, 0, 1, 1, 0, 1]
    labels = [1, 1, 1, 0, 1, 0, 0, 1]
    w = group_balanced_weights(groups, labels)
    # cells: (0,1) x3, (0,0) x2, (1,1) x2, (1,0) x1; n=8, 4 cells: each cell sums to 2.
    expected = [2 / 3, 2 / 3, 2 / 3, 1.0, 1.0, 2.0, 1.0, 1.0]
    assert w.tolist() == pytest.approx(expected)
    assert float(w.mean()) == pytest.approx(1.0)
    assert group_balanced_weights(groups, labels, balance="labels").tolist() == pytest.approx(
        [8 / 10] * 3 + [8 / 6, 8 / 10, 8 / 6, 8 / 6, 8 / 10])
    assert group_balanced_weights(groups, labels, balance="group").tolist() == pytest.approx(
        [0.8, 0.8, 0.8, 0.8, 4 / 3, 4 / 3, 0.8, 4 / 3])


def test_balanced_weights_keep_base_weights_in_proportion():
    # cells (0, 1): rows 0, 1 with base 1 and 3; (1, 1): row 2 with base 2. n=3, 2 cells: each cell totals 1.5.
    w = group_balanced_weights([0, 0, 1], [1, 1, 1], base_weight=[1.0, 3.0, 2.0])
    assert w.tolist() == pytest.approx([1.5 * 1 / 4, 1.5 * 3 / 4, 1.5])
    with pytest.raises(ValueError, match="3 non-negative weights"):
        group_balanced_weights([0, 0, 1], [1, 1, 1], base_weight=[1.0, -1.0, 1.0])


def test_balanced_weights_refuse_bad_input():
    with pytest.raises(ValueError, match="3 entries for 2 examples"):
        group_balanced_weights([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="balance must be one of"):
        group_balanced_weights([0, 1], [0, 1], balance="cells")
    with pytest.raises(ValueError, match="integer ids"):
        group_balanced_weights([0.5, 1], [0, 1])


def test_group_accuracy_by_hand():
    correct = [True, False, True, True, False]
    groups = [2, 2, 5, 5, 5]
    assert group_accuracy(correct, groups) == {2: 0.5, 5: pytest.approx(2 / 3)}
    assert worst_group_accuracy(correct, groups) == 0.5


def test_integer_weights_equal_duplicated_rows():
    """A row of weight 2 counts as the row twice: the weighted path equals the path on duplicated data."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(120, 6, generator=g)
    y = (X[:, 0] + 0.5 * torch.randn(120, generator=g) > 0).long()
    w = torch.ones(120, dtype=torch.float64)
    w[:30] = 2.0
    Xd, yd = torch.cat([X, X[:30]]), torch.cat([y, y[:30]])
    lambdas = [0.2, 0.05, 0.01]
    weighted = fit_path(X, y, sample_weight=w, lambdas=lambdas, n_classes=2, dtype=torch.float64, tol=1e-10)
    duplicated = fit_path(Xd, yd, lambdas=lambdas, n_classes=2, dtype=torch.float64, tol=1e-10)
    # The standardization differs (weighted vs duplicated statistics are the same only with weighted stats), so
    # compare what both must agree on: predictions of the raw-feature heads.
    for a, b in zip(weighted, duplicated):
        pa = torch.softmax(X.double() @ a.weight.double().T + a.bias.double(), 1)
        pb = torch.softmax(X.double() @ b.weight.double().T + b.bias.double(), 1)
        assert torch.allclose(pa, pb, atol=0.02), (a.lam, float((pa - pb).abs().max()))


# ----------------------------------------------------------------------------------------------- groups
def test_groups_from_a_column_a_function_and_values():
    from datasets import Dataset

    ds = Dataset.from_dict({"text": ["On Tuesday, fine", "dull", "tuesdays", "TUESDAY!"], "label": [1, 0, 1, 0],
                            "src": ["a", "b", "a", "b"]})
    by_column = resolve_groups("src", ds, [3, 0], modality="text")
    assert by_column.ids.tolist() == [1, 0] and by_column.names == ["src=a", "src=b"]
    by_word = resolve_groups(contains_word("tuesday"), ds, range(4), modality="text")
    assert by_word.ids.tolist() == [1, 0, 0, 1]
    assert by_word.names == ["contains 'tuesday'=False", "contains 'tuesday'=True"]
    by_values = resolve_groups([5, 5, 7, 7], ds, [2, 1], modality="text")
    assert by_values.ids.tolist() == [1, 0]
    with pytest.raises(ValueError, match="not a column of the dataset.*'label', 'src'"):
        resolve_groups("source", ds, range(4), modality="text")
    with pytest.raises(ValueError, match="3 entries for a dataset of 4"):
        resolve_groups([0, 1, 0], ds, range(4), modality="text")
    with pytest.raises(ValueError, match="same group"):
        resolve_groups([1, 1, 1, 1], ds, range(4), modality="text")
    cells = cell_groups(by_word, torch.tensor([1, 0, 1, 0]), {0: "neg", 1: "pos"})
    assert cells.names == ["contains 'tuesday'=True / pos", "contains 'tuesday'=False / neg",
                           "contains 'tuesday'=False / pos", "contains 'tuesday'=True / neg"]


def test_contains_word_and_identity_swaps():
    has = contains_word("new york")
    assert has("I love New York.") and not has("newyork") and not has("new yorker")
    with pytest.raises(ValueError, match="non-empty word"):
        contains_word(" ")
    swaps = identity_swaps({"religion": ["muslim", "christian", "jewish"]})
    assert swaps("My Muslim neighbour is kind.") == ["My Christian neighbour is kind.", "My Jewish neighbour is kind."]
    assert swaps("nothing to swap here") == []


def test_identity_swaps_across_groups_break_the_link_both_ways():
    groups = {"orientation": ["gay", "lesbian"]}
    others = {"religion": ["muslim", "christian", "jewish"], "age": ["old", "young"]}
    swaps = identity_swaps(groups, across_groups=True, others=others, per_group=2, seed=3)
    out = swaps("You are so gay.")
    assert len(out) == 2 and all(t.startswith("You are so ") and "gay" not in t for t in out)
    assert {t.split()[-1].rstrip(".") for t in out} <= {"muslim", "christian", "jewish", "old", "young"}
    assert swaps("You are so gay.") == out  # the same text always gets the same swaps
    back = swaps("My Christian neighbour")
    assert sorted(back) == ["My Gay neighbour", "My Lesbian neighbour"]  # both named terms, case kept
    assert swaps("nothing to swap") == []
    assert identity_swaps(groups, across_groups=True, others=others, per_group=5)("so gay") != []
    with pytest.raises(ValueError, match="needs groups="):
        identity_swaps(across_groups=True)
    with pytest.raises(ValueError, match="other groups to swap with"):
        identity_swaps(groups, across_groups=True, others=groups)
    with pytest.raises(ValueError, match="per_group must be at least 1"):
        identity_swaps(groups, across_groups=True, others=others, per_group=0)


# ----------------------------------------------------------------------------------------------- a known shortcut
@dataclass
class _Cached:
    """What fit_on_cached_features reads from a FeatureSet."""

    features: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


def _shortcut_split(n: int, agree: float, seed: int):
    """Feature 0: the label with noise (about 90% right alone); feature 1: a shortcut attribute that equals the
    label in `agree` of the rows; the other columns noise."""
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    a = torch.where(torch.rand(n, generator=g) < agree, y, 1 - y)
    X = torch.randn(n, 32, generator=g)
    X[:, 0] = (2 * y - 1).float() + 0.8 * torch.randn(n, generator=g)
    X[:, 1] = (2 * a - 1).float() + 0.3 * torch.randn(n, generator=g)
    texts = [("tuesday " if int(v) else "") + f"row {i}" for i, v in enumerate(a.tolist())]
    ds = Dataset.from_dict({"text": texts, "label": y.tolist(), "attribute": a.tolist()})
    return _Cached(X, y, torch.arange(n)), ds


@pytest.fixture()
def shortcut_model(tmp_path):
    model = SparseHeadForSequenceClassification.from_pretrained(
        save_text_classifier(tmp_path / "tiny", "bert", num_labels=2))
    train, train_ds = _shortcut_split(800, 0.95, seed=0)
    val, val_ds = _shortcut_split(400, 0.5, seed=1)
    fit = FitData(train, train_ds, val, val_ds, "text", "image", "label")
    fit_on_cached_features(model, fit, {"features_per_class": 1})
    return model


def test_plain_head_takes_the_shortcut_and_balanced_refit_removes_it(shortcut_model):
    model = shortcut_model
    assert model.sparse_head.active_features.tolist() == [1]  # the shortcut: it agrees with 95% of the labels
    report = balanced_refit(model, groups="attribute")
    assert model.sparse_head.active_features.tolist() == [0]
    assert report.features_added == [0] and report.features_removed == [1]
    assert report.before["worst_group_accuracy"] < 0.1  # rows whose attribute disagrees with the label
    assert report.after["worst_group_accuracy"] > 0.8
    assert report.after["accuracy"] > report.before["accuracy"] + 0.3
    assert report.after["loss"] < report.before["loss"]
    assert set(report.after["group_accuracy"]) == {"attribute=0 / label_0", "attribute=0 / label_1",
                                                   "attribute=1 / label_0", "attribute=1 / label_1"}
    assert report.method == "group-balanced refit" and report.seconds < 30
    assert model.config.selection["training"]["balance"] == "groups"
    assert model.config.edits[-1]["fix"] == "group-balanced refit"
    assert "worst-group accuracy" in str(report)


def test_refit_by_words_and_slices_needs_no_columns(shortcut_model):
    model = shortcut_model
    slices = find_error_slices(model, n_slices=1, n_components=None)
    top = slices[0]
    assert top.main_error is not None
    # Every member of the slice is assigned to it again from its features, and rows are put back after JSON.
    assigned = slices.assign(model.fit_data.eval_features.features)
    assert set(top.member_indices) <= set((assigned == 1).nonzero().flatten().tolist())
    back = reports_from_json(json.loads(json.dumps(reports_to_json(model.audit_reports))))
    assert torch.equal(back["error_slices"].assign(model.fit_data.eval_features.features), assigned)
    report = balanced_refit(model, groups=contains_word("tuesday"))
    assert report.after["worst_group_accuracy"] > report.before["worst_group_accuracy"] + 0.5


def test_worst_group_selection_scores_every_point(shortcut_model):
    model = shortcut_model
    path = model.refit_sparse_head(max_accuracy_drop=0.0, groups="attribute", balance="groups")
    scores = path.metric("val_worst_group_accuracy")
    assert all(s is not None for s in scores)
    chosen = model.config.selection["index"]
    assert scores[chosen] == max(scores)
    assert chosen == next(i for i, s in enumerate(scores) if s >= max(scores) - 1e-12)  # the sparsest such point


def test_fix_report_round_trips_and_reaches_the_card(shortcut_model, tmp_path):
    model = shortcut_model
    model.edit_features(remove=[1])
    report = balanced_refit(model, groups="attribute")
    history = model.audit_reports["edits"]
    assert [type(e).__name__ for e in history] == ["EditReport", "FixReport"] and report.index == 2
    again = reports_from_json(json.loads(json.dumps(reports_to_json(model.audit_reports))))["edits"]
    assert isinstance(again[1], FixReport) and again[1].after == report.after
    md = report.to_markdown("audit")
    assert "### Fix 2: group-balanced refit" in md and "worst-group accuracy" in md
    assert report.save_plots(tmp_path) == ["fix_2.png"] and (tmp_path / "fix_2.png").is_file()


def test_fix_errors_say_what_to_do(shortcut_model, tmp_path):
    model = shortcut_model
    with pytest.raises(ValueError, match="needs groups="):
        balanced_refit(model)
    with pytest.raises(ValueError, match="not a column"):
        balanced_refit(model, groups="nope")
    fresh = SparseHeadForSequenceClassification.from_pretrained(
        save_text_classifier(tmp_path / "tiny2", "bert", num_labels=2))
    with pytest.raises(ValueError, match="call model.fit_sparse_head"):
        balanced_refit(fresh, groups="attribute")


# ----------------------------------------------------------------------------------------------- command line
def test_cli_fit_with_a_group_column_runs_the_fix_and_records_it(tmp_path, capsys, monkeypatch):
    import csv
    import random

    from hf_sparse.cli import main

    monkeypatch.setenv("HF_SPARSE_FEATURES_CACHE", str(tmp_path / "cache"))
    folder = save_text_classifier(tmp_path / "tiny", "bert", num_labels=2)
    rng = random.Random(0)
    rows = []
    for i in range(120):
        label = i % 2
        shortcut = rng.random() < (0.9 if label else 0.1)
        words = rng.choices(["good", "fine", "great"] if label else ["bad", "dull", "poor"], k=3)
        rows.append({"text": " ".join(words + (["tuesday"] if shortcut else [])), "label": label,
                     "grp": "word" if shortcut else "none"})
    data = tmp_path / "train.csv"
    with data.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "grp"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    code = main(["fit", str(folder), str(data), "--validation-size", "0.3", "--features-per-class", "2",
                 "--group-word", "tuesday", "--no-describe", "--no-progress", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Fix 1: group-balanced refit" in printed and "contains 'tuesday'" in printed
    audit = json.loads((out / "audit.json").read_text())
    assert audit["edits"]["edits"][0]["type"] == "FixReport"
    assert "### Fix 1: group-balanced refit" in (out / "README.md").read_text()
    code = main(["fit", str(folder), str(data), "--features-per-class", "2", "--balance", "groups", "--no-describe",
                 "--no-progress", "-o", str(tmp_path / "out2")])
    assert code == 2 and not (tmp_path / "out2").exists()
    assert "--balance groups needs --groups COLUMN or --group-word WORD" in capsys.readouterr().err
    code = main(["fit", str(folder), str(data), "--features-per-class", "2", "--swap-across-groups", "--no-describe",
                 "--no-progress", "-o", str(tmp_path / "out3")])
    assert code == 2 and "add --augment-identity GROUPS" in capsys.readouterr().err

    with data.open("a", newline="") as f:  # a few texts that mention identity terms
        csv.writer(f).writerows([["my gay friend is good", 1, "none"], ["a christian film, dull", 0, "none"]] * 5)
    code = main(["fit", str(folder), str(data), "--validation-size", "0.3", "--features-per-class", "2",
                 "--augment-identity", "sexual_orientation", "--swap-across-groups", "--no-describe", "--no-progress",
                 "-o", str(tmp_path / "out4")])
    assert code == 0 and "counterfactual augmentation" in capsys.readouterr().out
    training = json.loads((tmp_path / "out4" / "config.json").read_text())["selection"]["training"]
    assert training["augmented_examples"] > 0


def test_counterfactual_augmentation_adds_encoded_twins_with_the_original_labels(shortcut_model, monkeypatch):
    """augment= encodes each training text's counterfactuals (here: the shortcut word added or removed) and adds
    them with the original label, which decorrelates the shortcut from the label in the training features."""
    model = shortcut_model
    fit = model.fit_data
    X_train, y_train = fit.train_features.features, fit.train_features.labels

    def encode(texts, batch_size=32, max_length=None):
        # The counterfactual of row i keeps its core feature and flips the shortcut attribute.
        out = []
        for text in texts:
            i = int(text.split()[-1])
            x = X_train[i].clone()
            x[1] = -x[1]
            out.append(x)
        return torch.stack(out)

    monkeypatch.setattr(model, "encode", encode)
    seen = []

    def flip_word(text):
        seen.append(text)
        return [text.replace("tuesday ", "")] if text.startswith("tuesday ") else ["tuesday " + text]

    report = balanced_refit(model, balance=None, augment=flip_word, eval_groups="attribute")
    assert len(seen) == len(y_train)
    assert model.config.selection["training"]["augmented_examples"] == len(y_train)
    assert model.sparse_head.active_features.tolist() == [0]  # the shortcut no longer predicts the label
    assert report.method == "counterfactual augmentation"
    assert report.after["worst_group_accuracy"] > 0.8 > 0.1 > report.before["worst_group_accuracy"]
    assert any("counterfactual training examples" in n for n in report.notes)


def test_counterfactuals_share_their_source_weight_and_are_encoded_once(shortcut_model, monkeypatch):
    """A text and its counterfactuals share the text's weight (versions of one example must not multiply it), and a
    second fix reuses the features of counterfactuals already encoded."""
    import hf_sparse.solver as solver

    model = shortcut_model
    X_train = model.fit_data.train_features.features
    n = X_train.shape[0]
    encoded = []

    def encode(texts, batch_size=32, max_length=None):
        encoded.extend(texts)
        return torch.stack([X_train[int(t.split()[-1])] * 0.5 for t in texts])

    monkeypatch.setattr(model, "encode", encode)
    seen_weights = []
    real_fit_path = solver.fit_path

    def spy(*args, **kwargs):
        seen_weights.append(kwargs.get("sample_weight"))
        return real_fit_path(*args, **kwargs)

    monkeypatch.setattr(solver, "fit_path", spy)

    def two_twins_for_even_rows(text):  # rows 0, 2, 4...: two counterfactuals each; odd rows: none
        i = int(text.split()[-1])
        return [f"twin a {i}", f"twin b {i}"] if i % 2 == 0 else []

    balanced_refit(model, balance=None, augment=two_twins_for_even_rows, eval_groups="attribute")
    rows = model.fit_data.train_features.indices.tolist()
    n_even = sum(1 for r in rows if int(model.fit_data.train_dataset[model.fit_data.text_column][r].split()[-1]) % 2 == 0)
    w = torch.as_tensor(seen_weights[-1], dtype=torch.float64)
    assert w.shape[0] == n + 2 * n_even
    # hand computation: each even row and its two twins weigh 1/3 each, each odd row 1; the total stays n
    assert sorted(set(round(v, 9) for v in w.tolist())) == [round(1 / 3, 9), 1.0]
    assert float(w.sum()) == pytest.approx(n)
    first = len(encoded)
    assert first == 2 * n_even
    balanced_refit(model, balance=None, augment=two_twins_for_even_rows, eval_groups="attribute", features_per_class=1)
    assert len(encoded) == first  # nothing encoded twice


def test_collapsed_features_are_recorded_and_named_in_the_card(shortcut_model):
    from hf_sparse.card.render import render_model_card

    model = shortcut_model
    health = model.config.feature_health
    assert health["collapsed"] is False and 0 < health["top_direction_share"] < 0.5  # 32 mostly independent columns
    model.config.feature_health = dict(health, collapsed=True, top_direction_share=0.93,
                                       near_duplicate_features=[[1, 3]])
    text, _ = render_model_card(model, images=False)
    assert "nearly rank one (the top direction holds 93% of their variance)" in text
    assert "Features 1, 3 are near duplicates" in text


def test_groups_without_evaluation_data_balance_the_training_rows(tmp_path):
    """A group column with no eval_dataset: the fit is balanced and selected on mean accuracy (no eval groups to
    take the worst group over), instead of asking for eval groups it cannot have."""
    model = SparseHeadForSequenceClassification.from_pretrained(
        save_text_classifier(tmp_path / "tiny", "bert", num_labels=2))
    train, train_ds = _shortcut_split(800, 0.95, seed=0)
    fit = FitData(train, train_ds, None, None, "text", "image", "label")
    fit_on_cached_features(model, fit, {"features_per_class": 1}, groups="attribute", balance="groups")
    assert model.sparse_head.active_features.tolist() == [0]  # the core feature, not the 95% shortcut
    assert model.config.selection["training"]["selection_metric"] == "accuracy"
