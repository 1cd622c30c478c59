"""The bias metrics shipped as local `evaluate` modules (hf_sparse/metrics): every figure against a hand count of
ordered pairs and scikit-learn's `roc_auc_score`, offline loading by path, `evaluate.combine`, and the subgroup
audit computing through them.

Example data (8 examples, three overlapping subgroups; C has one example):

    idx     0    1    2     3    4    5    6    7
    score  0.1  0.4  0.35  0.8  0.2  0.7  0.6  0.9
    label   0    0    1     1    0    1    0    1
    groups  A    A    A,B   A,B  C    -    B    -
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

evaluate = pytest.importorskip("evaluate")

from hf_sparse import metrics  # noqa: E402
from hf_sparse.metrics import BIAS_AUC, WORST_GROUP_ACCURACY  # noqa: E402

SCORES = [0.1, 0.4, 0.35, 0.8, 0.2, 0.7, 0.6, 0.9]
LABELS = [0, 0, 1, 1, 0, 1, 0, 1]
GROUPS = [["A"], ["A"], ["A", "B"], ["A", "B"], ["C"], [], ["B"], []]


def m5(*values):
    """The generalized mean with p = -5, written out."""
    return (sum(v ** -5 for v in values) / len(values)) ** (-1 / 5)


@pytest.fixture(scope="module")
def bias_auc():
    return evaluate.load(BIAS_AUC)


@pytest.fixture(scope="module")
def worst_group():
    return evaluate.load(WORST_GROUP_ACCURACY)


# ------------------------------------------------------------------------------------------- bias_auc
def test_bias_aucs_match_hand_pair_counts(bias_auc):
    r = bias_auc.compute(predictions=SCORES, references=LABELS, subgroups=GROUPS, min_size=2)
    # A: positives 0.35, 0.8 against negatives 0.1, 0.4 -> 3 of 4 pairs ordered right.
    # BPSN(A): negatives in A (0.1, 0.4) against positives outside A (0.7, 0.9) -> 4 of 4.
    # BNSP(A): positives in A (0.35, 0.8) against negatives outside A (0.2, 0.6) -> 3 of 4.
    # B: positives 0.35, 0.8 against negative 0.6 -> 1 of 2; BPSN(B): 0.6 against 0.7, 0.9 -> 2 of 2;
    # BNSP(B): 0.35, 0.8 against 0.1, 0.4, 0.2 -> 5 of 6.  Overall: 14 of 16 pairs.
    assert r["subgroup_auc"] == pytest.approx({"A": 0.75, "B": 0.5})
    assert r["bpsn_auc"] == pytest.approx({"A": 1.0, "B": 1.0})
    assert r["bnsp_auc"] == pytest.approx({"A": 0.75, "B": 5 / 6})
    assert r["overall_auc"] == pytest.approx(14 / 16)
    assert r["subgroup_size"] == {"A": 4, "B": 3}
    assert r["skipped"] == {"C": 1}  # below min_size
    gm = r["generalized_mean"]
    assert gm["subgroup_auc"] == pytest.approx(m5(0.75, 0.5))
    assert gm["bpsn_auc"] == pytest.approx(1.0)
    assert gm["bnsp_auc"] == pytest.approx(m5(0.75, 5 / 6))
    assert r["final_score"] == pytest.approx(0.25 * (14 / 16 + m5(0.75, 0.5) + 1.0 + m5(0.75, 5 / 6)))


def test_bias_aucs_match_scikit_learn_on_the_subsets(bias_auc):
    s, y = np.array(SCORES), np.array(LABELS)
    r = bias_auc.compute(predictions=SCORES, references=LABELS, subgroups=GROUPS, min_size=2)
    for name, idx in {"A": [0, 1, 2, 3], "B": [2, 3, 6]}.items():
        inside = np.isin(np.arange(8), idx)
        bpsn = (inside & (y == 0)) | (~inside & (y == 1))
        bnsp = (inside & (y == 1)) | (~inside & (y == 0))
        assert r["subgroup_auc"][name] == pytest.approx(roc_auc_score(y[inside], s[inside]))
        assert r["bpsn_auc"][name] == pytest.approx(roc_auc_score(y[bpsn], s[bpsn]))
        assert r["bnsp_auc"][name] == pytest.approx(roc_auc_score(y[bnsp], s[bnsp]))
    assert r["overall_auc"] == pytest.approx(roc_auc_score(y, s))


def test_undefined_auc_is_none_and_left_out_of_the_mean_power_and_weights(bias_auc):
    # C holds one negative only: its subgroup AUC and BNSP AUC are undefined; BPSN (0.2 against 0.35, 0.8, 0.7, 0.9)
    # is 1.0. The mean of the subgroup AUC is then over A and B only.
    r = bias_auc.compute(predictions=SCORES, references=LABELS, subgroups=GROUPS, power=1.0,
                         weights={"overall": 1.0, "subgroup_auc": 0.0, "bpsn_auc": 0.0, "bnsp_auc": 1.0})
    assert r["subgroup_auc"]["C"] is None and r["bnsp_auc"]["C"] is None
    assert r["bpsn_auc"]["C"] == pytest.approx(1.0)
    assert r["generalized_mean"]["subgroup_auc"] == pytest.approx((0.75 + 0.5) / 2)  # p = 1: the plain mean
    assert r["final_score"] == pytest.approx(14 / 16 + (0.75 + 5 / 6) / 2)


def test_bias_auc_errors_say_what_to_pass(bias_auc):
    with pytest.raises(ValueError, match="references must be 0 or 1"):
        bias_auc.compute(predictions=[0.1, 0.2], references=[0, 2], subgroups=[[], []])
    with pytest.raises(ValueError, match=r"weights lacks \['bnsp_auc'\]"):
        bias_auc.compute(predictions=SCORES, references=LABELS, subgroups=GROUPS,
                         weights={"overall": 0.25, "subgroup_auc": 0.25, "bpsn_auc": 0.25})
    with pytest.raises(TypeError, match=r"unknown arguments \['powr'\]"):
        bias_auc.compute(predictions=SCORES, references=LABELS, subgroups=GROUPS, powr=-5)


# ------------------------------------------------------------------------------------------- worst-group accuracy
def test_worst_group_accuracy_by_hand(worst_group):
    # threshold 0.5 predicts 0 0 0 1 0 1 1 1: right on 0 1 3 4 5 7, wrong on 2 (0.35, label 1) and 6 (0.6, label 0).
    r = worst_group.compute(predictions=SCORES, references=LABELS, subgroups=GROUPS, threshold=0.5)
    assert r["group_accuracy"] == pytest.approx({"A": 3 / 4, "B": 1 / 3, "C": 1.0})
    assert (r["worst_group"], r["worst_group_accuracy"]) == ("B", pytest.approx(1 / 3))
    assert r["accuracy"] == pytest.approx(6 / 8)
    split = worst_group.compute(predictions=SCORES, references=LABELS, subgroups=GROUPS, threshold=0.5,
                                by_label=True, min_size=2)
    assert split["group_accuracy"] == pytest.approx({"A / 0": 1.0, "A / 1": 0.5, "B / 1": 0.5})
    assert split["skipped"] == {"C / 0": 1, "B / 0": 1}
    assert split["worst_group"] in ("A / 1", "B / 1") and split["worst_group_accuracy"] == pytest.approx(0.5)


def test_worst_group_accuracy_takes_labels_and_refuses_scores_without_a_threshold(worst_group):
    labels = worst_group.compute(predictions=[2, 1, 0, 2], references=[2, 0, 0, 2], subgroups=[["x"], ["x"], ["y"], []])
    assert labels["group_accuracy"] == {"x": 0.5, "y": 1.0}
    with pytest.raises(ValueError, match=r"predictions hold scores \(e.g. 0.1\), not labels: pass threshold="):
        worst_group.compute(predictions=SCORES, references=LABELS, subgroups=GROUPS)


# ------------------------------------------------------------------------------------------- loading, combining
def test_evaluate_load_by_path_works_offline_from_an_empty_cache(tmp_path):
    """A fresh process, an empty HF cache, offline flags and a dead proxy: any network use would fail."""
    code = textwrap.dedent(f"""
        import evaluate
        m = evaluate.load({BIAS_AUC!r})
        w = evaluate.load({WORST_GROUP_ACCURACY!r})
        r = m.compute(predictions={SCORES!r}, references={LABELS!r}, subgroups={GROUPS!r})
        print(m.name, w.name, round(r["overall_auc"], 4))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_EVALUATE_OFFLINE": "1", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["bias_auc", "worst_group_accuracy", "0.875"]


def test_evaluate_combine_runs_both_modules(bias_auc, worst_group):
    both = evaluate.combine([bias_auc, worst_group])
    r = both.compute(predictions=SCORES, references=LABELS, subgroups=GROUPS, threshold=0.5, min_size=2)
    assert r["overall_auc"] == pytest.approx(14 / 16)
    assert r["subgroup_auc"] == pytest.approx({"A": 0.75, "B": 0.5})
    assert r["worst_group_accuracy"] == pytest.approx(1 / 3)
    # A key both return is prefixed with its module's name.
    assert r["bias_auc_skipped"] == {"C": 1} and r["worst_group_accuracy_skipped"] == {"C": 1}


def test_metrics_load_names_the_metrics():
    with pytest.raises(ValueError, match=r"unknown hf_sparse metric 'auc'; the metrics are \['bias_auc', "
                                         r"'worst_group_accuracy'\]"):
        metrics.load("auc")


# ------------------------------------------------------------------------------------------- the audit uses them
def test_subgroup_audit_computes_through_the_bias_auc_module(monkeypatch):
    from hf_sparse.audit import subgroup_metrics

    calls = []
    real = metrics.compute

    def spy(name, **inputs):
        calls.append((name, inputs["subgroups"]))
        return real(name, **inputs)

    monkeypatch.setattr(metrics, "compute", spy)
    masks = {"A": np.array([1, 1, 1, 1, 0, 0, 0, 0], bool), "B": np.array([0, 0, 1, 1, 0, 0, 1, 0], bool)}
    report = subgroup_metrics({"m": SCORES}, labels=LABELS, subgroups=masks, min_size=2)
    assert calls == [("bias_auc", [["A"], ["A"], ["A", "B"], ["A", "B"], [], [], ["B"], []])]
    direct = evaluate.load(BIAS_AUC).compute(predictions=SCORES, references=LABELS, subgroups=GROUPS, min_size=2)
    for row in report.rows:
        for metric in ("subgroup_auc", "bpsn_auc", "bnsp_auc"):
            assert row[metric]["m"] == pytest.approx(direct[metric][row["subgroup"]])
    assert report.final_score["m"] == pytest.approx(direct["final_score"])
    assert report.generalized_mean["m"] == pytest.approx(direct["generalized_mean"])
