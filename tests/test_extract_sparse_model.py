"""`extract_features` on an hf_sparse model: the features are the sparse head's input.

Checked by hand: the sparse head applied to the extracted features gives the model's own logits (a forward pass of
each text or image), the features equal `model.encode`, a fitted model's extraction is the very cache entry
`fit_sparse_head` wrote, and README's "Feature caching" example runs as written on an hf_sparse model.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from _tiny_models import random_sparse_head, save_image_classifier, save_text_classifier, text_config, word_dataset

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture()
def text_model(tmp_path):
    from hf_sparse import SparseHeadForSequenceClassification

    model = SparseHeadForSequenceClassification.from_pretrained(save_text_classifier(tmp_path / "bert", "bert"))
    random_sparse_head(model, seed=1, per_class=4)
    return model


def _logits_one_by_one(model, texts):
    """The model's logits, one forward pass per text (no padding at all): the independent reference."""
    rows = []
    with torch.no_grad():
        for text in texts:
            rows.append(model(**model.processor([text], return_tensors="pt")).logits[0])
    return torch.stack(rows)


def test_sparse_head_on_extracted_features_gives_the_models_logits(text_model, tmp_path):
    from hf_sparse.features import extract_features

    ds = word_dataset(30, seed=2)
    feats = extract_features(text_model, ds, text_column="sentence", cache_dir=tmp_path / "cache",
                             show_progress=False)
    assert feats.features.shape == (30, text_model.sparse_head.in_features)
    assert feats.labels.tolist() == ds["label"]
    X = feats.features.clone()
    expected = _logits_one_by_one(text_model, ds["sentence"])
    with torch.no_grad():
        torch.testing.assert_close(text_model.sparse_head(X), expected, atol=1e-5, rtol=1e-4)
        # the same features model.encode (explanations' source) gives
        torch.testing.assert_close(X, text_model.encode(ds["sentence"]), atol=1e-5, rtol=1e-4)
    # the sparse head differs from the dense one here, so the check above is not the dense model's logits
    with torch.no_grad():
        assert not torch.allclose(text_model.dense_head(X), expected, atol=1e-3)


def test_a_fitted_model_reads_the_cache_entries_its_fit_wrote(fitted_text, text_data):
    from hf_sparse.features import extract_features

    model, _, cache = fitted_text
    for dataset, fitted in zip(text_data, (model.fit_data.train_features, model.fit_data.eval_features)):
        feats = extract_features(model, dataset, text_column="sentence", cache_dir=cache, show_progress=False)
        assert feats.path == fitted.path
        assert torch.equal(feats.features, fitted.features)
    expected = _logits_one_by_one(model, text_data[1]["sentence"][:8])
    with torch.no_grad():
        # a fitted head's weights are larger (refit): float32 rounding of a 32-term sum, relative to the logits
        scale = float(expected.abs().max())
        torch.testing.assert_close(model.sparse_head(feats.features[:8].clone()), expected, atol=1e-5 * max(scale, 1),
                                   rtol=1e-4)


def test_readme_feature_caching_example_runs_on_an_hf_sparse_model(text_model, tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    block = next(b for b in blocks if "from hf_sparse.features import extract_features" in b)
    monkeypatch.setenv("HF_SPARSE_FEATURES_CACHE", str(tmp_path / "cache"))
    dataset = word_dataset(12, seed=5)
    namespace = {"model": text_model, "dataset": dataset}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    feats = namespace["feats"]
    assert feats.features.shape == (12, 32) and feats.features.dtype == torch.float32
    assert str(feats.path).startswith(str(tmp_path / "cache"))
    with torch.no_grad():
        torch.testing.assert_close(text_model.sparse_head(feats.features.clone()),
                                   _logits_one_by_one(text_model, dataset["sentence"]), atol=1e-5, rtol=1e-4)


def test_an_image_model(tmp_path, image_data):
    from hf_sparse import SparseHeadForImageClassification
    from hf_sparse.features import extract_features

    model = SparseHeadForImageClassification.from_pretrained(save_image_classifier(tmp_path / "vit", "vit"))
    random_sparse_head(model, seed=3, per_class=3)
    ds = image_data[1]
    feats = extract_features(model, ds, cache_dir=tmp_path / "cache", show_progress=False)
    with torch.no_grad():
        inputs = model.processor(images=[im.convert("RGB") for im in ds["image"]], return_tensors="pt")
        torch.testing.assert_close(model.sparse_head(feats.features.clone()), model(**inputs).logits,
                                   atol=1e-5, rtol=1e-4)


def test_a_model_built_on_a_bare_encoder(tmp_path):
    from transformers import AutoModel

    from _tiny_models import minilm_tokenizer
    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.features import extract_features

    torch.manual_seed(0)
    AutoModel.from_config(text_config("bert")).save_pretrained(tmp_path / "enc")
    minilm_tokenizer().save_pretrained(tmp_path / "enc")
    model = SparseHeadForSequenceClassification.from_encoder(tmp_path / "enc", id2label=["a", "b", "c"],
                                                            pooling="mean")
    random_sparse_head(model, seed=2)
    ds = word_dataset(10, seed=6)
    feats = extract_features(model, ds, text_column="sentence", cache_dir=tmp_path / "cache", show_progress=False)
    # by hand: the mean over the tokens of the bare encoder's last hidden state
    encoder = AutoModel.from_pretrained(tmp_path / "enc").eval()
    with torch.no_grad():
        for i, text in enumerate(ds["sentence"][:4]):
            hidden = encoder(**model.processor([text], return_tensors="pt")).last_hidden_state[0]
            torch.testing.assert_close(feats.features[i], hidden.mean(0), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model.sparse_head(feats.features.clone()),
                                   _logits_one_by_one(model, ds["sentence"]), atol=1e-5, rtol=1e-4)


def test_a_model_without_a_tokenizer_says_to_pass_one(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.features import extract_features

    clf = AutoModelForSequenceClassification.from_config(text_config("bert")).eval()
    model = SparseHeadForSequenceClassification.from_base_model(clf)
    ds = word_dataset(4)
    with pytest.raises(ValueError, match=r"SparseHeadForSequenceClassification has no tokenizer \(none was given.*"
                                         r"pass tokenizer= \(or set model.processor\)"):
        extract_features(model, ds, text_column="sentence", cache_dir=tmp_path / "cache")
    # given one, it works, and the features are the sparse head's input
    from _tiny_models import minilm_tokenizer

    tok = minilm_tokenizer()
    feats = extract_features(model, ds, tok, text_column="sentence", cache_dir=tmp_path / "cache",
                             show_progress=False)
    with torch.no_grad():
        logits = torch.stack([model(**tok([t], return_tensors="pt")).logits[0] for t in ds["sentence"]])
        torch.testing.assert_close(model.sparse_head(feats.features.clone()), logits, atol=1e-5, rtol=1e-4)


def test_plain_classifiers_are_not_taken_for_hf_sparse_models(folders):
    from transformers import AutoModelForSequenceClassification

    from hf_sparse.features.locate import wrapped_classifier

    clf = AutoModelForSequenceClassification.from_pretrained(folders["bert"])
    assert wrapped_classifier(clf) is None
