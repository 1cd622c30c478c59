"""Feature descriptions record the encoder they describe; an encoder trained further marks them stale.

`describe_features` stores a fingerprint of every tensor of the wrapped model but its final layer; loading a
checkpoint, or reading `model.feature_descriptions` after an encoder weight changed in memory (an optimizer step,
as `Trainer` takes), compares it with the encoder and sets `stale` / `stale_reason`, warning once.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from hf_sparse.constants import DESCRIPTIONS_NAME

STALE = ("the feature descriptions were computed for a different encoder (it was trained further after "
         "describe_features); run model.describe_features(...) again")


@pytest.fixture(scope="module")
def saved(folders, text_data, tmp_path_factory):
    """A tiny BERT with a fitted head and described features, saved: (folder, its describe-time descriptions)."""
    from hf_sparse import SparseHeadForSequenceClassification

    model = SparseHeadForSequenceClassification.from_pretrained(folders["bert"])
    train, val = text_data
    model.fit_sparse_head(train, eval_dataset=val, text_column="sentence", features_per_class=2, n_lambdas=12,
                          cache_dir=tmp_path_factory.mktemp("stale_cache"))
    descriptions = model.describe_features(n_examples=2, n_attribution_examples=4)
    folder = tmp_path_factory.mktemp("stale") / "described"
    model.save_pretrained(folder)
    return folder, descriptions


def _load(folder, **kwargs):
    from hf_sparse import SparseHeadForSequenceClassification

    return SparseHeadForSequenceClassification.from_pretrained(folder, **kwargs)


def _stale_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "feature descriptions" in str(w.message)]


def _encoder_weight(model) -> torch.nn.Parameter:
    return model.model.bert.encoder.layer[0].attention.self.query.weight


def test_fresh_descriptions_record_the_encoder_and_reload_fresh(saved):
    folder, described = saved
    assert described.stale is False and described.stale_reason is None
    recorded = json.loads((folder / DESCRIPTIONS_NAME).read_text())["encoder"]
    assert recorded["algorithm"] == "sha256" and recorded["dtype"] == "float32"
    assert set(recorded["sha256"]) == {"float32", "bfloat16", "float16"}
    model = _load(folder)
    # every tensor of the wrapped model but the head ("classifier.weight", "classifier.bias")
    assert recorded["tensors"] == len([k for k in model.model.state_dict() if not k.startswith("classifier.")])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert model.feature_descriptions.stale is False and model.feature_descriptions.stale_reason is None
        assert _load(folder, dtype=torch.bfloat16).feature_descriptions.stale is False  # compared in bfloat16
    assert _stale_warnings(record) == []


def test_a_checkpoint_whose_encoder_changed_is_stale_with_one_warning(saved, tmp_path):
    folder, _ = saved
    model = _load(folder)
    with torch.no_grad():
        _encoder_weight(model)[0, 0] += 1e-3  # what a further training step leaves in the saved weights
    with pytest.warns(UserWarning) as record:
        model.save_pretrained(tmp_path / "trained")  # saving reads the descriptions: warns already
        again = _load(tmp_path / "trained")
    assert len(_stale_warnings(record)) == 2 and all(m.startswith(STALE) for m in _stale_warnings(record))
    d = again.feature_descriptions
    assert d.stale is True and d.stale_reason.startswith(STALE)
    assert "sha256 of the encoder's" in d.stale_reason
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        explanation = again.explain("good and warm")  # reading them again: still stale, no second warning
        assert again.feature_descriptions.stale is True
    assert _stale_warnings(later) == []
    # the explanation itself says so, in text and HTML (a fresh model's says nothing)
    assert explanation.descriptions_note.startswith("the feature descriptions ('what drives it') were computed for "
                                                    "a different encoder")
    assert str(explanation).splitlines()[-1] == f"note: {explanation.descriptions_note}"
    assert "<b>Note:</b> the feature descriptions" in explanation.to_html()
    fresh = _load(folder).explain("good and warm")
    assert fresh.descriptions_note is None and "note:" not in str(fresh) and "Note:" not in fresh.to_html()


def test_an_encoder_trained_in_memory_is_stale_and_the_head_does_not_count(saved):
    folder, _ = saved
    model = _load(folder)
    with torch.no_grad():  # a new head (an edit, a refit) describes the same features: not stale
        model.sparse_head.values.mul_(2.0)
    assert model.feature_descriptions.stale is False
    params = [p for n, p in model.named_parameters() if p.requires_grad and "classifier" not in n]
    optimizer = torch.optim.AdamW(params, lr=1e-3)  # one step, as Trainer takes them
    enc = model.processor(["a good and warm film", "bad , dull and boring"], return_tensors="pt", padding=True)
    model.train()
    model(**enc, labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    model.eval()
    with pytest.warns(UserWarning, match=r"computed for a different encoder \(it was trained further"):
        model.explain("a good and warm film")  # explanations read the descriptions: the check runs there
    d = model.feature_descriptions
    assert d.stale is True and d.stale_reason.startswith(STALE)


def test_old_files_without_a_fingerprint_are_unknown_not_stale(saved, tmp_path):
    from hf_sparse.explain.descriptions import NO_FINGERPRINT, FeatureDescriptions, check_stale

    folder, _ = saved
    data = json.loads((folder / DESCRIPTIONS_NAME).read_text())
    del data["encoder"]  # as written before the fingerprint existed
    old = FeatureDescriptions.from_dict(data)
    assert old.encoder is None and old.stale is None  # not checked against a model yet
    model = _load(folder)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        check_stale(model, old)
        model.feature_descriptions = old
        model.save_pretrained(tmp_path / "old")
        reloaded = _load(tmp_path / "old").feature_descriptions
    assert _stale_warnings(record) == []
    for d in (old, reloaded):
        assert d.stale is None and d.stale_reason == NO_FINGERPRINT
    assert "unknown" in NO_FINGERPRINT and "describe_features()" in NO_FINGERPRINT
    assert json.loads((tmp_path / "old" / DESCRIPTIONS_NAME).read_text())["encoder"] is None
