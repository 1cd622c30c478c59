"""Identity audits over names and gendered nouns: per-set aggregates, contrasts, the dense head beside the sparse one.

A tiny BERT (two labels) with hand-set heads reads bag-of-words features (feature j counts the words mapped to j),
so every probability, contrast and interval is computed by hand here. Nothing touches the network.
"""

from __future__ import annotations

import json
import math
import os
import re

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_sparse import SparseHeadForSequenceClassification  # noqa: E402
from hf_sparse.audit import IdentityAuditReport, identity_audit  # noqa: E402
from hf_sparse.audit.identity import rescore  # noqa: E402
from hf_sparse.audit.report import DISAGREEMENT_MARGIN  # noqa: E402
from hf_sparse.audit.terms import (  # noqa: E402
    NAMES,
    PERSON_GROUPS,
    PERSON_TEMPLATES,
    TERM_SETS,
    fill_template,
    find_terms,
    flip_gender_nouns,
    resolve_groups,
    swap_terms,
    template_texts,
)

from _tiny_models import bag_of_words_encoder, save_text_classifier  # noqa: E402

T_975_DF2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (tables)
FEMALE_NAMES = NAMES["black_female"] + NAMES["white_female"]
MALE_NAMES = NAMES["black_male"] + NAMES["white_male"]
#: Three person templates whose other words move the logit by +1, 0 and -2 (see `names_model`).
NAME_TEMPLATES = ["{Person} is wonderful.", "{Person} is here.", "{Person} was rude."]
CONTEXT = [1.0, 0.0, -2.0]
FEMALE, WONDERFUL, RUDE = 7, 3, 4


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))




def set_dense(model, female_weight: float):
    """The dense head: the same context weights as the sparse head, `female_weight` on the female-name feature."""
    with torch.no_grad():
        model.dense_head.weight.zero_()
        model.dense_head.bias.zero_()
        model.dense_head.weight[1, FEMALE] = female_weight
        model.dense_head.weight[1, WONDERFUL] = 1.0
        model.dense_head.weight[1, RUDE] = -2.0


@pytest.fixture()
def names_model(tmp_path):
    """Sparse head: class-1 logit = 1 * (female name) + 1 * "wonderful" - 2 * "rude", class-0 logit 0; the dense head
    starts equal to it."""
    folder = save_text_classifier(tmp_path / "tiny", "bert", num_labels=2)
    model = SparseHeadForSequenceClassification.from_pretrained(folder)
    d = model.sparse_head.in_features
    W = torch.zeros(2, d)
    W[1, FEMALE], W[1, WONDERFUL], W[1, RUDE] = 1.0, 1.0, -2.0
    model.install_sparse_head(W, torch.zeros(2))
    set_dense(model, 1.0)
    vocabulary = {n.lower(): FEMALE for n in FEMALE_NAMES}
    vocabulary.update({"wonderful": WONDERFUL, "rude": RUDE})
    model.encode = bag_of_words_encoder(model, vocabulary)
    return model


def hand_contrast(female_weight: float):
    """Per template: P(female name) - P(male name); their mean and 95% t-interval (n = 3 templates)."""
    diffs = [sig(female_weight + c) - sig(c) for c in CONTEXT]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    half = T_975_DF2 * sd / math.sqrt(3)
    return mean, mean - half, mean + half, diffs


# ----------------------------------------------------------------------------------------------- groups and templates
def test_default_groups_hold_names_by_race_and_gender_and_gendered_nouns():
    groups = resolve_groups(None)
    assert {"names", "gender_nouns", "race_ethnicity", "gender"} <= set(groups)
    assert len(NAMES) == 4 and all(len(v) >= 8 for v in NAMES.values())
    assert set(groups["names"]) == {n for v in NAMES.values() for n in v}
    assert {"woman", "man", "girl", "boy", "mother", "father", "sister", "brother", "she", "he"} <= set(
        groups["gender_nouns"])
    # The sets that race and gender contrasts need exist and partition the names.
    assert set(TERM_SETS["names_black"]["terms"]) | set(TERM_SETS["names_white"]["terms"]) == set(groups["names"])
    assert set(TERM_SETS["names_female"]["terms"]) == set(FEMALE_NAMES)
    assert not set(TERM_SETS["names_female"]["terms"]) & set(TERM_SETS["names_male"]["terms"])
    assert "she" in TERM_SETS["gender_nouns_female"]["terms"] and "he" in TERM_SETS["gender_nouns_male"]["terms"]


def test_person_templates_make_grammatical_sentences_for_names_nouns_and_pronouns():
    assert fill_template("{Person} feels angry.", "mother") == "My mother feels angry."
    assert fill_template("{Person} feels angry.", "woman") == "This woman feels angry."
    assert fill_template("{Person} feels angry.", "she") == "She feels angry."
    assert fill_template("I think {person} is at the station.", "he") == "I think he is at the station."
    assert fill_template("I think {person} is at the station.", "Jamal") == "I think Jamal is at the station."
    assert fill_template("I am {a_term} person.", "Asian") == "I am an Asian person."  # adjective slots unchanged
    for _, template in PERSON_TEMPLATES:
        for term in PERSON_GROUPS["gender_nouns"] + PERSON_GROUPS["names"][:3]:
            text = fill_template(template, term)
            assert text[0].isupper() and text.endswith(".") and "{" not in text
            assert not re.search(r"\b(a|an) (my|this|she|he)\b", text, re.IGNORECASE), text
    with pytest.raises(ValueError, match="not both"):
        template_texts(["{term} and {person}"])


def test_default_template_audit_fills_person_groups_with_person_templates_only(names_model):
    report = identity_audit(names_model, groups=["names", "gender_nouns", "religion"], record=False)
    by_group = {g["group"]: g for g in report.groups}
    assert by_group["names"]["n_frames"] == by_group["gender_nouns"]["n_frames"] == len(PERSON_TEMPLATES)
    assert by_group["religion"]["n_frames"] == 24  # the adjective templates
    texts = set(report._cache.batch)
    assert "Lakisha lives in this town." in texts and "My father is wonderful." in texts
    assert "She is wonderful." in texts and "I am a Muslim person." in texts
    assert not any(re.search(r"\ba (Lakisha|mother|she)\b", t) for t in texts)
    assert {a["name"] for a in report.aggregates} >= {"names_black", "names_white", "names_female", "names_male",
                                                      "names_black_female", "gender_nouns_female", "gender_nouns_male"}
    assert [(c["a"], c["b"]) for c in report.contrasts] == [
        ("names_black", "names_white"), ("names_female", "names_male"), ("names_black_female", "names_white_female"),
        ("names_black_male", "names_white_male"), ("gender_nouns_female", "gender_nouns_male")]


# ----------------------------------------------------------------------------------------------- contrasts
def test_contrast_of_female_and_male_names_matches_the_hand_computation(names_model):
    report = identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, record=False)
    assert report.heads == ["sparse", "dense"] and report.head == "sparse"
    mean, low, high, diffs = hand_contrast(1.0)
    row = report.contrast("names_female", "names_male")
    assert row["n_frames"] == 3
    for head in ("sparse", "dense"):
        figures = row["by_head"][head]
        assert figures["difference"] == pytest.approx(mean)
        assert (figures["ci_low"], figures["ci_high"]) == (pytest.approx(low), pytest.approx(high))
        assert figures["mean_a"] == pytest.approx(sum(sig(1 + c) for c in CONTEXT) / 3)
        assert figures["mean_b"] == pytest.approx(sum(sig(c) for c in CONTEXT) / 3)
    assert "t-interval" in report.interval
    # The same contrast in words, reversed (negated), for one head, and among the reported defaults.
    assert report.contrast("female names", "male names")["difference"] == pytest.approx(mean)
    assert report.contrast("names_male", "names_female", head="dense")["difference"] == pytest.approx(-mean)
    default = {(c["a"], c["b"]): c for c in report.contrasts}[("names_female", "names_male")]
    assert default["difference"] == pytest.approx(mean) and default["n_frames"] == 3
    # Race: half of each race's names are female, so black - white is 0 by construction.
    assert report.contrast("names_black", "names_white")["difference"] == pytest.approx(0.0, abs=1e-12)
    # A list of terms: one female name against one male name.
    one = report.contrast(["Lakisha"], ["Jamal"], head="sparse")
    assert one["difference"] == pytest.approx(mean) and one["n_frames"] == 3
    # Per-set aggregates: the set's mean P, and its difference to the frame's mean (half the contrast here).
    sets = {a["name"]: a for a in report.aggregates}
    assert sets["names_female"]["mean_probability"] == pytest.approx(sum(sig(1 + c) for c in CONTEXT) / 3)
    assert sets["names_female"]["mean_delta"] == pytest.approx(mean / 2)
    assert sets["names_male"]["by_head"]["dense"]["mean_delta"] == pytest.approx(-mean / 2)
    names_row = report.groups[0]
    assert names_row["mean_probability"] == pytest.approx(sum(sig(1 + c) + sig(c) for c in CONTEXT) / 6)
    with pytest.raises(ValueError, match="not a term set, group or term of this audit.*names_female"):
        report.contrast("names_purple", "names_male")


def test_contrasts_argument_and_its_errors(names_model):
    report = identity_audit(names_model, groups=["names", "gender_nouns"], templates=NAME_TEMPLATES, record=False,
                            contrasts=[("female names", "female nouns"), (["Lakisha", "Amanda"], "names_male")])
    labels = [(c["a"], c["b"]) for c in report.contrasts]
    assert ("names_female", "gender_nouns_female") in labels and ("Lakisha+Amanda", "names_male") in labels
    with pytest.raises(ValueError, match="never appear in the same sentence frame"):
        identity_audit(names_model, groups=["names", "religion"], contrasts=[("names_female", "religion")],
                       record=False)
    with pytest.raises(ValueError, match="contrasts must be pairs"):
        identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, contrasts=["names_female"])


# ----------------------------------------------------------------------------------------------- both heads
def test_dense_head_that_reverses_the_sign_is_reported_as_a_disagreement(names_model):
    set_dense(names_model, -1.0)  # female names push P(label 1) down in the dense head
    report = identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, record=False)
    sparse_mean = hand_contrast(1.0)[0]
    dense_diffs = [sig(-1 + c) - sig(c) for c in CONTEXT]
    row = report.contrast("names_female", "names_male")
    assert row["by_head"]["sparse"]["difference"] == pytest.approx(sparse_mean)
    assert row["by_head"]["dense"]["difference"] == pytest.approx(sum(dense_diffs) / 3)
    flagged = {(d["what"], d["name"]): d for d in report.disagreements}
    d = flagged[("contrast", "names_female - names_male")]
    assert d["reason"] == "sign" and d["values"]["dense"] < 0 < d["values"]["sparse"]
    assert flagged[("term set", "names_female")]["reason"] == "sign"
    assert ("contrast", "names_black - names_white") not in flagged  # 0 in both heads
    text = str(report)
    warnings = [line for line in text.splitlines() if line.startswith("WARNING:")]
    assert len(warnings) == len(report.disagreements)
    assert any("names_female - names_male" in w and "in sign" in w for w in warnings)
    assert "difference [95% CI] (sparse)" in text and "difference [95% CI] (dense)" in text
    md = report.to_markdown(None)
    assert md.count("**WARNING**") == len(report.disagreements)
    assert "(sparse) |" in md and "(dense) |" in md


def test_heads_that_agree_raise_no_warning_and_a_margin_is_a_disagreement(names_model):
    agree = identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, record=False)
    assert agree.disagreements == [] and "WARNING" not in str(agree) and "WARNING" not in agree.to_markdown(None)
    set_dense(names_model, 1.5)  # same sign, larger effect
    report = identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, record=False)
    gap = hand_contrast(1.5)[0] - hand_contrast(1.0)[0]
    assert gap > DISAGREEMENT_MARGIN
    flagged = {(d["what"], d["name"]): d for d in report.disagreements}
    assert flagged[("contrast", "names_female - names_male")]["reason"] == "margin"
    # The term set's mean change is half the contrast: below the margin, and the same sign, so not flagged.
    assert gap / 2 < DISAGREEMENT_MARGIN and ("term set", "names_female") not in flagged


def test_one_head_audits_and_default_heads(names_model):
    dense = identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, head="dense", record=False)
    assert dense.heads == ["dense"] and dense.disagreements == [] and dense.contribution is None
    assert all(set(t["by_head"]) == {"dense"} for t in dense.terms)
    sparse = identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, heads=("sparse",), record=False)
    assert sparse.heads == ["sparse"] and "(dense)" not in str(sparse)
    assert identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, heads="dense",
                          record=False).heads == ["dense"]
    with pytest.raises(ValueError, match="disagree: pass only heads="):
        identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, heads=("sparse", "dense"), head="dense")
    with pytest.raises(ValueError, match="heads must be distinct names"):
        identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, heads=("sparse", "sparse"))
    with torch.no_grad():
        names_model.dense_head.weight.zero_()  # a bare encoder's placeholder head: nothing to compare with
    assert identity_audit(names_model, groups=["names"], templates=NAME_TEMPLATES, record=False).heads == ["sparse"]


# ----------------------------------------------------------------------------------------------- real texts
def test_ambiguous_adjectives_are_swapped_only_with_the_switch(names_model):
    texts = ["What a black comedy.", "Black people were wonderful."]
    default = identity_audit(names_model, groups=["race_ethnicity"], texts=texts, record=False)
    assert default.n_frames == 1 and default.swap_ambiguous is False
    assert default.ambiguous_unswapped["n_texts"] == 1 and default.ambiguous_unswapped["terms"] == {"Black": 1}
    assert "1 of the texts hold ambiguous adjectives left unswapped: Black (1)" in str(default)
    assert "swap_ambiguous=True" in str(default) and "swap\\_ambiguous=True" in default.to_markdown(None)
    assert "What a white comedy." not in default._cache.batch
    switched = identity_audit(names_model, groups=["race_ethnicity"], texts=texts, swap_ambiguous=True, record=False)
    assert switched.n_frames == 2 and switched.ambiguous_unswapped is None
    assert "What a white comedy." in switched._cache.batch
    with pytest.raises(ValueError, match=r"groups searched: race_ethnicity \(Black, White, Asian, \.\.\.\).*"
                                         r"1 of them hold ambiguous adjectives \(Black\).*swap_ambiguous=True.*groups="):
        identity_audit(names_model, groups=["race_ethnicity"], texts=["What a black comedy."])


def test_names_and_gendered_nouns_are_found_and_swapped_in_lowercase_text(names_model):
    assert [(m.term, m.group) for m in find_terms("lakisha and her sisters , she said")] == [
        ("Lakisha", "names"), ("sister", "gender_nouns")]  # pronouns are not searched in texts
    assert flip_gender_nouns("My father and his SONS.", "female") == "My mother and his DAUGHTERS."
    assert swap_terms("amanda loved it", "names", "Jamal") == "jamal loved it"
    texts = ["amanda and her sisters loved it .", "a dull film ."]
    report = identity_audit(names_model, texts=texts, record=False)  # the default groups
    assert report.mode == "texts" and {g["group"] for g in report.groups} == {"names", "gender_nouns"}
    assert report.n_frames == 2 and report.n_texts == len(PERSON_GROUPS["names"]) + 2 - 1  # one variant is shared
    assert "amanda and her brothers loved it ." in report._cache.batch
    assert {t["term"] for t in report.terms if t["group"] == "gender_nouns"} == {"sister", "brother"}
    row = report.contrast("names_female", "names_male", head="sparse")
    assert row["n_frames"] == 1 and row["difference"] == pytest.approx(sig(1) - sig(0))
    assert row["ci_low"] is None  # one frame: no interval
    with pytest.raises(ValueError, match=r"groups searched: names \(Aisha, Keisha, Lakisha, \.\.\.\)"):
        identity_audit(names_model, groups=["names"], texts=["a dull film"])


def test_no_group_found_error_lists_groups_and_how_to_pass_others(names_model):
    with pytest.raises(ValueError) as info:
        identity_audit(names_model, groups={"religion": ["Christian", "Muslim", "Jewish"]}, texts=["plain text"])
    message = str(info.value)
    assert message.startswith("None of the 1 texts contains an identity term of the groups searched: religion "
                              "(Christian, Muslim, Jewish).")
    assert "groups={'my_group': ['first term', 'second term']}" in message and "'names'" in message


# ----------------------------------------------------------------------------------------------- round trips, edits
def test_report_round_trips_and_rescoring_keeps_working(names_model):
    set_dense(names_model, -1.0)
    report = identity_audit(names_model, groups=["names", "gender_nouns"], templates=NAME_TEMPLATES,
                            contrasts=[(["Lakisha"], ["Jamal"])])
    data = json.loads(report.to_json())
    again = IdentityAuditReport.from_dict(data)
    assert again.to_dict() == report.to_dict() and str(again) == str(report)
    assert again.disagreements and again.heads == ["sparse", "dense"]
    kept = again.contrast("names_female", "names_male")
    assert kept["difference"] == pytest.approx(report.contrast("names_female", "names_male")["difference"])
    assert again.contrast("Lakisha", "Jamal")["n_frames"] == 3
    with pytest.raises(ValueError, match="loaded from JSON.*contrasts="):
        again.contrast("names_black_female", "names_male")
    # A report written before heads existed still loads and prints.
    old = {k: v for k, v in data.items() if k not in ("heads", "aggregates", "contrasts", "disagreements",
                                                      "term_sets", "interval", "notes")}
    for row in old["groups"] + old["terms"]:
        row.pop("by_head")
    legacy = IdentityAuditReport.from_dict(old)
    assert legacy.heads == ["sparse"] and "names" in str(legacy)
    # Rescoring (what head edits use): the summary follows the sparse head, the dense figures stay.
    assert rescore(names_model, report).summary() == report.summary()
    W = names_model.sparse_head.weight.detach().clone()
    W[1, FEMALE] = 0.0
    names_model.install_sparse_head(W, torch.zeros(2))
    after = rescore(names_model, report)
    assert after.summary()["names"]["mean_abs_delta"] == pytest.approx(0.0, abs=1e-12)
    assert after.contrast("names_female", "names_male", head="dense")["difference"] == pytest.approx(
        report.contrast("names_female", "names_male", head="dense")["difference"])
    assert not any(d["name"] == "names_female - names_male" and d["reason"] == "sign" for d in after.disagreements)
