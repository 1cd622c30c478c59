"""Reports that show the dense head beside the sparse one, edits that say when a refit undoes a removal, and
snippets that keep the word they are about.

- subgroup metrics and error slices: a dense head set by hand to disagree with the sparse one gives WARNING lines
  (text and Markdown, kept through JSON); an agreeing one gives none;
- `edit_features(refit=True)`: the removal alone is measured (checked against logits computed by hand), removed
  features stay at zero, and a refit that does worse than the removal alone is named with both numbers;
- `describe_features` and the model card cut long example texts around the feature's top word.

Fast: a tiny BERT with hand-set heads and bag-of-words features, and one tiny fit on long word texts.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from sklearn.metrics import roc_auc_score

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_sparse import SparseHeadForSequenceClassification  # noqa: E402
from hf_sparse.audit import ErrorSliceReport, SubgroupReport, find_error_slices, subgroup_metrics  # noqa: E402
from hf_sparse.audit.subgroup import DISAGREEMENT_MARGIN, find_subgroup_disagreements  # noqa: E402
from hf_sparse.explain.descriptions import FeatureDescription, FeatureExample, _snippet  # noqa: E402

from _tiny_models import bag_of_words_encoder, planted_cluster, save_text_classifier, word_dataset  # noqa: E402
from _tiny_models import tiny_sparse_model as tiny_model  # noqa: E402






def set_dense(model, W, b):
    with torch.no_grad():
        model.dense_head.weight.copy_(W)
        model.dense_head.bias.copy_(b)


# ----------------------------------------------------------------------------------------------- subgroup metrics
TEXTS = ["good film", "bad film", "good gay film", "bad gay film", "good day", "bad day"]
LABELS = [1, 0, 1, 0, 1, 0]


@pytest.fixture()
def word_model(tmp_path):
    """Sparse head: logit(label 1) = 2 * good - 2 * bad on bag-of-words features."""
    model = tiny_model(tmp_path)
    model.encode = bag_of_words_encoder(model, {"good": 0, "bad": 1, "gay": 2})
    d = model.sparse_head.in_features
    W = torch.zeros(2, d)
    W[1, 0], W[1, 1] = 2.0, -2.0
    model.install_sparse_head(W, torch.zeros(2))
    return model, W


def test_subgroup_report_warns_where_a_hand_set_dense_head_disagrees(word_model):
    model, W = word_model
    data = {"text": TEXTS, "label": LABELS}
    gay = [("gay" in t) for t in TEXTS]
    # Agreeing: the dense head is the sparse one.
    set_dense(model, W, torch.zeros(2))
    same = subgroup_metrics(model, data, subgroups={"gay": gay}, min_size=1, record=False)
    assert same.disagreements == [] and same.disagreement_margin == DISAGREEMENT_MARGIN
    assert "WARNING" not in str(same) and "WARNING" not in same.to_markdown(None)

    # Disagreeing: the dense head also pushes every text with "gay" towards label 0 (logit -5).
    Wd = W.clone()
    Wd[1, 2] = -5.0
    set_dense(model, Wd, torch.zeros(2))
    report = subgroup_metrics(model, data, subgroups={"gay": gay}, min_size=1, record=False)
    # By hand, logits of label 1 vs 0: sparse [2, -2, 2, -2, 2, -2]; dense [2, -2, -3, -7, 2, -2].
    dense_logit = [2, -2, -3, -7, 2, -2]
    bnsp = [i for i in range(6) if (gay[i] and LABELS[i] == 1) or (not gay[i] and LABELS[i] == 0)]
    assert report.rows[0]["bnsp_auc"]["dense"] == pytest.approx(
        roc_auc_score([LABELS[i] for i in bnsp], [dense_logit[i] for i in bnsp]))          # 0.0: -3 < -2, -2
    assert report.overall_auc["dense"] == pytest.approx(roc_auc_score(LABELS, dense_logit))  # 7/9: -3 < -2 twice
    found = {(d["measure"], d["subgroup"]): d for d in report.disagreements}
    bnsp_d = found[("bnsp_auc", "gay")]
    assert bnsp_d["reason"] == "side" and bnsp_d["values"] == {"sparse": 1.0, "dense": 0.0}
    assert found[("overall_auc", None)]["reason"] == "margin"
    assert found[("overall_auc", None)]["values"]["dense"] == pytest.approx(7 / 9)
    assert ("subgroup_auc", "gay") not in found and ("bpsn_auc", "gay") not in found   # 1.0 for both heads
    message = ("the sparse and dense heads disagree on the BNSP AUC of subgroup gay: sparse 1.000, dense 0.000 "
               "(one above 0.5 (chance), the other below)")
    assert f"WARNING: {message}" in str(report)
    assert "WARNING: the sparse and dense heads disagree on the overall AUC: sparse 1.000, dense 0.778 (more than " \
           "0.05 apart)" in str(report)
    md = report.to_markdown(None)
    assert md.count("**WARNING**") == len(report.disagreements)
    # Kept through JSON; a report written before the field existed still loads, with no warnings.
    again = SubgroupReport.from_dict(json.loads(report.to_json()))
    assert again.disagreements == report.disagreements and str(again) == str(report)
    old = {k: v for k, v in report.to_dict().items() if k not in ("disagreements", "disagreement_margin")}
    assert SubgroupReport.from_dict(old).disagreements == []


def test_subgroup_disagreement_rules_by_hand():
    report = SubgroupReport(
        heads=["sparse", "dense"], target_label="toxic", source="given", power=-5.0,
        weights={"overall": 0.25, "subgroup_auc": 0.25, "bpsn_auc": 0.25, "bnsp_auc": 0.25},
        overall_auc={"sparse": 0.80, "dense": 0.84},                                   # 0.04 apart: agree
        rows=[{"subgroup": "x", "n": 5, "n_positive": 2,
               "subgroup_auc": {"sparse": 0.52, "dense": 0.49},                         # opposite sides of 0.5
               "bpsn_auc": {"sparse": 0.70, "dense": 0.76},                             # 0.06 apart
               "bnsp_auc": {"sparse": None, "dense": 0.9}},                              # undefined: skipped
              {"subgroup": "y", "n": 5, "n_positive": 2,
               "subgroup_auc": {"sparse": 0.505, "dense": 0.497},                       # both within 0.01 of 0.5
               "bpsn_auc": {"sparse": 0.6, "dense": 0.6}, "bnsp_auc": {"sparse": 0.6, "dense": 0.6}}],
        generalized_mean={"sparse": {"subgroup_auc": 0.6, "bpsn_auc": 0.6, "bnsp_auc": 0.6},
                          "dense": {"subgroup_auc": 0.6, "bpsn_auc": 0.6, "bnsp_auc": 0.45}},
        final_score={"sparse": 0.70, "dense": 0.70},
    )
    found = [(d["measure"], d["subgroup"], d["reason"]) for d in find_subgroup_disagreements(report)]
    assert found == [("subgroup_auc", "x", "side"), ("bpsn_auc", "x", "margin"),
                     ("generalized_mean.bnsp_auc", None, "side")]
    # A wider margin keeps the sign rule only; one head has no one to disagree with.
    assert [d["reason"] for d in find_subgroup_disagreements(report, margin=0.1)] == ["side", "side"]
    report.heads = ["sparse"]
    assert find_subgroup_disagreements(report) == []


# ----------------------------------------------------------------------------------------------- error slices


def test_error_slices_show_the_dense_head_and_warn_where_it_disagrees(tmp_path):
    model, W, X, y = planted_cluster(tmp_path)
    set_dense(model, W, torch.zeros(2))                                     # agreeing
    same = find_error_slices(model, features=X, labels=y, n_slices=1, spotlight_size=0.05, record=False)
    assert same.warnings == [] and same[0].dense_accuracy == pytest.approx(same[0].member_accuracy)
    assert "WARNING" not in same.to_text() and "WARNING" not in same.to_markdown(None)
    assert f"dense head accuracy {same.overall_accuracy:.3f}" in str(same)

    # Disagreeing: the dense head also calls rows with a large feature 1 class 0, which fixes the cluster.
    Wd = W.clone()
    Wd[0, 1] = 3.0
    set_dense(model, Wd, torch.zeros(2))
    report = find_error_slices(model, features=X, labels=y, n_slices=1, spotlight_size=0.05, record=False)
    top = report[0]
    dense_right = (X @ Wd.T).argmax(1) == y                                  # the dense head's predictions by hand
    assert top.dense_accuracy == pytest.approx(float(dense_right[top.member_indices].double().mean()))
    assert report.dense_overall_accuracy == pytest.approx(float(dense_right.double().mean()))
    assert top.dense_accuracy - top.member_accuracy > 0.5 and report.warnings and "Slice 1" in report.warnings[0]
    text = report.to_text()
    assert f"WARNING: {report.warnings[0]}" in text
    assert (f"Accuracy on its {top.n_members} members: sparse head {top.member_accuracy:.3f}, dense head "
            f"{top.dense_accuracy:.3f}") in text
    md = report.to_markdown(None)
    assert "**WARNING**: Slice 1" in md
    header = next(line for line in md.splitlines() if line.startswith("| slice"))
    row = next(line for line in md.splitlines() if line.startswith("| 1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    headers = [c.strip() for c in header.strip("|").split("|")]
    assert cells[headers.index("member accuracy (dense)")] == f"{top.dense_accuracy:.3f}"
    assert cells[headers.index("member accuracy (sparse)")] == f"{top.member_accuracy:.3f}"
    again = ErrorSliceReport.from_dict(json.loads(report.to_json()))
    assert again.to_text() == text and again.to_markdown(None) == md


# ----------------------------------------------------------------------------------------------- the long-text fit
LONG_PREFIX = "so " * 90


@pytest.fixture(scope="module")
def long_fit(tmp_path_factory):
    """A tiny BERT (3 labels) fit at 2 features per class on word sentences behind a 270-character prefix, ending
    in "zebra"."""
    datasets = pytest.importorskip("datasets")
    tmp = tmp_path_factory.mktemp("report_heads")
    base = word_dataset(140)
    ds = datasets.Dataset.from_dict({"sentence": [LONG_PREFIX + t + " zebra" for t in base["sentence"]],
                                     "label": base["label"]})
    model = SparseHeadForSequenceClassification.from_pretrained(save_text_classifier(tmp / "m", "bert", num_labels=3))
    model.fit_sparse_head(ds.select(range(90)), eval_dataset=ds.select(range(90, 140)), text_column="sentence",
                          features_per_class=2, n_lambdas=10, cache_dir=tmp / "cache")
    return model


@pytest.fixture()
def restore(fitted_text):
    """The shared tiny fit of conftest (word sentences, 2 features per class), its head restored afterwards."""
    model = fitted_text[0]
    saved_reports = dict(getattr(model, "audit_reports", None) or {})
    W0, b0 = model.sparse_head.weight.clone(), model.sparse_head.bias.clone()
    selection, edits = dict(model.config.selection), list(model.config.edits or [])
    metrics = json.loads(json.dumps(model.config.sparse_metrics))
    yield model
    model.install_sparse_head(W0, b0, selection=selection)
    model.config.edits = edits
    model.audit_reports = saved_reports
    model.config.sparse_metrics = metrics


def _removal_alone(model, j):
    """Accuracy (and per-slice accuracy) on the cached eval features of the head with feature j held at its mean,
    from the logits computed by hand."""
    X = model.fit_data.eval_features.features.float()
    y = model.fit_data.eval_features.labels
    W0, mean = model.sparse_head.weight.detach(), model.feature_mean
    logits = model.sparse_head(X) - (X[:, j:j + 1] - mean[j]) * W0[:, j]
    right = logits.argmax(1) == y
    where = {int(r): i for i, r in enumerate(model.fit_data.eval_features.indices.tolist())}
    slices = {str(s.rank): float(right[[where[r] for r in s.member_indices]].double().mean())
              for s in model.audit_reports.get("error_slices", [])}
    return float(right.double().mean()), slices


def test_refit_keeps_removed_features_at_zero_and_measures_the_removal_alone(restore):
    model = restore
    find_error_slices(model, n_slices=2, spotlight_size=0.1)            # recorded: the edit reports slice accuracy
    j = int(model.sparse_head.active_features[0])
    alone, alone_slices = _removal_alone(model, j)
    report = model.edit_features(remove=[j], refit=True)
    assert bool((model.sparse_head.weight[:, j] == 0).all())
    assert report.after["nnz"] == model.sparse_head.nnz
    assert report.no_refit["accuracy"] == pytest.approx(alone)
    assert report.no_refit["slice_accuracy"] == pytest.approx(alone_slices)
    assert report.no_refit["worst_slice_accuracy"] == pytest.approx(min(alone_slices.values()))
    assert model.config.edits[-1]["accuracy_no_refit"] == pytest.approx(alone)
    worse = report.after["accuracy"] < alone - 1e-12
    assert any("accuracy:" in n and "after the removal without refit" in n for n in report.notes) == worse
    assert "removal alone (no refit)" in str(report) and "removal alone (no refit)" in report.to_markdown(None)


@pytest.fixture()
def film_model(tmp_path):
    """Bag-of-words features good, bad, film; logit(label 1) = 2 good - 2 bad + film - 0.5, features of mean 0.
    On FILM_DATA it errs only on "film film" (logit 1.5, label 0): accuracy 4/5; without "film" it is right on all."""
    datasets = pytest.importorskip("datasets")
    model = tiny_model(tmp_path)
    model.encode = bag_of_words_encoder(model, {"good": 0, "bad": 1, "film": 2})
    d = model.sparse_head.in_features
    W = torch.zeros(2, d)
    W[1, 0], W[1, 1], W[1, 2] = 2.0, -2.0, 1.0
    model.install_sparse_head(W, torch.tensor([0.0, -0.5]), feature_mean=torch.zeros(d), feature_std=torch.ones(d))
    data = datasets.Dataset.from_dict({"text": ["good film", "bad film", "good", "bad", "film film"],
                                       "label": [1, 0, 1, 0, 0]})
    return model, data


def test_a_refit_that_undoes_the_removal_is_named_with_both_numbers(film_model, monkeypatch):
    from hf_sparse.modeling import editing

    model, data = film_model
    # A "refit" that flips every weight: it keeps the support (film stays at zero) but gets every example wrong:
    # by hand, logit(label 1) = -2 good + 2 bad + 0.5 -> -1.5, 2.5, -1.5, 2.5, 0.5 against labels 1, 0, 1, 0, 0.
    monkeypatch.setattr(editing, "_refit", lambda model, W, b: (-W, -b, 0.5))
    report = model.edit_features(remove=[2], refit=True, dataset=data, text_column="text", record=False)
    assert bool((model.sparse_head.weight[:, 2] == 0).all())
    assert (report.before["accuracy"], report.no_refit["accuracy"], report.after["accuracy"]) == (0.8, 1.0, 0.0)
    note = ("The refit undid part of the removal's gain on accuracy: 0.800 before the edit, 1.000 after the removal "
            "without refit, 0.000 after the refit. The refit is kept; to keep the removal alone, make this edit with "
            "refit=False instead.")
    assert report.notes[-1] == note and f"note: {note}" in str(report) and note in report.to_markdown(None)
    table = str(report).splitlines()
    assert table[1].split() == ["metric", "before", "after", "removal", "alone", "(no", "refit)"]
    assert table[3].split()[:4] == ["accuracy", "0.800", "0.000", "1.000"]


def test_a_refit_no_worse_than_the_removal_alone_gets_no_note(film_model, monkeypatch):
    from hf_sparse.modeling import editing

    model, data = film_model
    monkeypatch.setattr(editing, "_refit", lambda model, W, b: (W.clone(), b.clone(), 0.5))  # the removal alone
    report = model.edit_features(remove=[2], refit=True, dataset=data, text_column="text", record=False)
    assert report.after["accuracy"] == report.no_refit["accuracy"] == 1.0
    assert report.notes == ["The remaining weights were refit on the cached training features at lambda 0.5 "
                            "(support fixed)."]
    # Without refit there is no removal-alone column to show.
    plain = model.edit_features(reweight={0: 1.0}, dataset=data, text_column="text", record=False)
    assert plain.no_refit is None and "removal alone" not in str(plain)


# ----------------------------------------------------------------------------------------------- snippets
def test_snippet_keeps_the_first_top_word_it_holds():
    text = "a long review " * 30 + "but the ending was dull."
    assert _snippet(text, ["dull", "long"], width=40) == "…a long review but the ending was dull."
    assert _snippet(text, ["absent", "ending"], width=40).count("ending") == 1
    assert _snippet(text, [], width=40) == text[:39].rstrip() + "…"                # no word: the start, as before
    assert _snippet("short", ["x"]) == "short"


def test_describe_features_cuts_example_texts_around_the_top_word(long_fit, monkeypatch):
    from hf_sparse.explain import descriptions

    def words(model, out, order, dataset, rows, column, n_examples, method, progress=False):  # stand-in: "zebra"
        for d in out.values():
            d.top_words = [("zebra", 1.0, 3)]

    monkeypatch.setattr(descriptions, "_add_words", words)
    saved = getattr(long_fit, "feature_descriptions", None)
    try:
        out = long_fit.describe_features(n_examples=2, n_attribution_examples=2)
    finally:
        long_fit.feature_descriptions = saved
    texts = [e.text for d in out.values() for e in d.top_examples + d.bottom_examples]
    assert texts and len(LONG_PREFIX) > descriptions.SNIPPET_CHARS   # "zebra" lies beyond a cut from the start
    for t in texts:
        assert t.startswith("…so so") and t.endswith(" zebra") and len(t) <= descriptions.SNIPPET_CHARS


def test_model_card_cuts_example_texts_around_the_top_word(long_fit):
    model = long_fit
    saved = getattr(model, "feature_descriptions", None)
    j = int(model.sparse_head.active_features[0])
    long_text = "so " * 60 + "what a bastard"
    try:
        model.feature_descriptions = {j: FeatureDescription(
            feature=j, top_words=[("bastard", 1.0, 1)],
            top_examples=[FeatureExample(row=0, activation=1.0, text=long_text)])}
        plain = model.create_model_card().content
        masked = model.create_model_card(redact=True).content
    finally:
        model.feature_descriptions = saved
    assert "so so what a bastard”" in plain and "“…so so" in plain
    assert "what a b\\*\\*\\*\\*\\*\\*”" in masked and "bastard" not in masked
    snippet = re.search(r"“(…[^”]*)”", plain).group(1)
    assert len(snippet) <= 90
