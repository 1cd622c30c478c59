"""hf_sparse.modeling: the transformers classes with a sparse final layer.

Tiny classifiers of every supported architecture are built from configs, saved to temporary folders and loaded
with `from_pretrained`, as a user would load a fine-tuned model. Nothing touches the network (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hf_sparse  # noqa: E402  (registers the Auto classes)
from hf_sparse import (  # noqa: E402
    SparseHeadConfig,
    SparseHeadForImageClassification,
    SparseHeadForSequenceClassification,
    SparseLinear,
)
from hf_sparse.modeling import CheckpointError, UnsupportedModelError  # noqa: E402
from hf_sparse.constants import HEAD_WEIGHTS_NAME, MANIFEST_NAME, WEIGHTS_NAME  # noqa: E402

from _tiny_models import IMAGE_ARCHS, SENTENCES, TEXT_ARCHS, WORDS, save_image_classifier, save_text_classifier, text_config  # noqa: E402
from _tiny_models import random_sparse_head  # noqa: E402
from features_helpers import EXPECTED_CLASSIFIER  # noqa: E402

EXPECTED_HEAD = EXPECTED_CLASSIFIER
def encode(model, texts=SENTENCES):
    return model.processor(texts, return_tensors="pt", padding=True)




# ----------------------------------------------------------------------------- SparseLinear
def test_sparse_linear_stores_nonzeros_and_matches_dense():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 40, generator=g) * (torch.rand(5, 40, generator=g) < 0.1)
    bias = torch.randn(5, generator=g)
    layer = SparseLinear.from_dense(weight, bias)
    assert layer.nnz == int((weight != 0).sum())
    assert set(layer.state_dict()) == {"indices", "values", "bias"}
    assert torch.equal(layer.weight, weight)
    x = torch.randn(7, 40, generator=g)
    expected = x @ weight.T + bias
    for product in ("dense", "sparse"):
        layer.product = product
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    contrib, active = layer.contributions(x)
    assert torch.equal(active, torch.unique((weight != 0).nonzero()[:, 1]))
    torch.testing.assert_close(contrib.sum(-1) + bias, expected, atol=1e-5, rtol=1e-5)


def test_sparse_linear_picks_the_cheaper_product():
    small = SparseLinear.from_dense(torch.eye(2, 384)[:, :384])
    assert small.chosen_product() == "dense"
    big = torch.zeros(1000, 2048)
    big[torch.arange(1000), torch.arange(1000)] = 1.0
    assert SparseLinear.from_dense(big).chosen_product() == "sparse"
    assert SparseLinear.from_dense(torch.randn(1000, 2048)).chosen_product() == "dense"


def test_sparse_linear_loads_any_number_of_nonzeros_and_checks_them():
    source = SparseLinear.from_dense(torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]]))
    target = SparseLinear(3, 2)  # nnz 0
    target.load_state_dict(source.state_dict())
    assert torch.equal(target.weight, source.weight)
    target.indices[1, 0] = 7  # feature index out of range
    with pytest.raises(ValueError, match="feature indices out of range"):
        target.check()


# ----------------------------------------------------------------------------- wrapping classifiers
@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_text_classifier_wrapped_computes_the_same_logits(folders, arch):
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(folders[arch]).eval()
    model = SparseHeadForSequenceClassification.from_pretrained(folders[arch])
    assert model.config.head_module == EXPECTED_HEAD[arch]
    assert isinstance(model.sparse_head, SparseLinear)
    assert model.config.base_model_name_or_path == str(folders[arch])
    assert model.config.id2label == base.config.id2label
    enc = encode(model)
    base_inputs = {k: v for k, v in enc.items() if not (arch == "distilbert" and k == "token_type_ids")}
    with torch.no_grad():
        expected = base(**base_inputs).logits
        torch.testing.assert_close(model(**enc).logits, expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(model(**enc, use_dense_head=True).logits, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
def test_image_classifier_wrapped_computes_the_same_logits(folders, arch):
    from transformers import AutoModelForImageClassification

    base = AutoModelForImageClassification.from_pretrained(folders[arch]).eval()
    model = SparseHeadForImageClassification.from_pretrained(folders[arch])
    assert model.config.head_module == EXPECTED_HEAD[arch]
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(pixel_values=x, labels=torch.tensor([0, 1, 3]))
        ref = base(pixel_values=x, labels=torch.tensor([0, 1, 3]))
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.loss, ref.loss)
    assert type(out).__name__ == "SparseImageClassifierOutput"


def test_contributions_explain_the_logits(folders):
    model = SparseHeadForSequenceClassification.from_pretrained(folders["roberta"])
    weight = random_sparse_head(model, per_class=2)
    with torch.no_grad():
        out = model(**encode(model), output_contributions=True)
    active = torch.unique(weight.nonzero()[:, 1])
    assert torch.equal(out.active_features, active)
    assert out.contributions.shape == (len(SENTENCES), 3, len(active))
    torch.testing.assert_close(out.contributions.sum(-1) + model.sparse_head.bias, out.logits, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.contributions, out.features[:, None, active] * weight[:, active])


def test_loss_with_labels_and_labels_outside_the_model_are_rejected(folders):
    model = SparseHeadForSequenceClassification.from_pretrained(folders["bert"])
    enc = encode(model)
    out = model(**enc, labels=torch.tensor([0, 1, 2, 0]))
    expected = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0]))
    torch.testing.assert_close(out.loss, expected)
    with pytest.raises(ValueError, match=r"labels must be class ids in \[0, 3\).*\[3\]"):
        model(**enc, labels=torch.tensor([0, 1, 3, 0]))


def test_model_without_linear_classifier_is_refused(tmp_path):
    from transformers import BertModel

    encoder = BertModel(text_config("bert"))
    with pytest.raises(UnsupportedModelError, match="BertModel has no final nn.Linear.*Supported: BERT"):
        SparseHeadForSequenceClassification.from_base_model(encoder)
    encoder.save_pretrained(tmp_path / "encoder")
    with pytest.raises(UnsupportedModelError, match="BertModel has no final nn.Linear"):
        SparseHeadForSequenceClassification.from_pretrained(tmp_path / "encoder")


def test_classifier_checkpoint_without_head_weights_is_refused(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(folders["roberta"], tmp_path / "headless")
    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("classifier.")}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(UnsupportedModelError, match=r"no trained classification head: \['classifier.dense.bias'"):
        SparseHeadForSequenceClassification.from_pretrained(folder)


def test_image_folder_given_to_the_text_class_is_refused(folders):
    with pytest.raises(UnsupportedModelError, match="ViTConfig.*not a model that AutoModelForSequenceClassification can load.*use SparseHeadForImageClassification"):
        SparseHeadForSequenceClassification.from_pretrained(folders["vit"])


def test_pickled_weights_are_never_loaded(folders, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    legacy = tmp_path / "legacy"
    shutil.copytree(folders["bert"], legacy)
    state = AutoModelForSequenceClassification.from_pretrained(legacy).state_dict()
    (legacy / "model.safetensors").unlink()
    torch.save(state, legacy / "pytorch_model.bin")

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    with pytest.raises(OSError, match="safetensors"):
        SparseHeadForSequenceClassification.from_pretrained(legacy)


# ----------------------------------------------------------------------------- config
def test_config_round_trip_and_auto_config(folders, tmp_path):
    from transformers import AutoConfig

    model = SparseHeadForSequenceClassification.from_pretrained(folders["distilbert"])
    config = model.config
    assert isinstance(config, SparseHeadConfig) and config.model_type == "hf_sparse"
    assert config.base_config["model_type"] == "distilbert" and config.base_architecture == "DistilBertForSequenceClassification"
    assert config.num_features == 32 and config.modality == "text" and not config.is_fitted
    config.save_pretrained(tmp_path)
    again = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(again, SparseHeadConfig)
    assert {**again.to_dict(), "_name_or_path": None} == {**config.to_dict(), "_name_or_path": None}
    assert type(again.get_base_config()).__name__ == "DistilBertConfig"


# ----------------------------------------------------------------------------- fitting
def test_fit_installs_the_selected_point_of_the_path(fitted_text, text_data):
    from hf_sparse.features import extract_features

    model, path, cache = fitted_text
    point = path.selected
    assert model.sparse_head.features_per_class() == [2, 2, 2]
    assert torch.equal(model.sparse_head.weight, point.weight.float())
    # The model's logits equal the selected point applied to the cached features.
    _, val = text_data
    with model.dense_head_installed() as base:
        feats = extract_features(base, val, model.processor, text_column="sentence", cache_dir=cache, show_progress=False)
    expected = feats.features.float() @ point.weight.float().T + point.bias.float()
    with torch.no_grad():
        logits = model(**encode(model, list(val["sentence"]))).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    # ... and the dense head kept for comparison gives the fine-tuned model's logits.
    dense = feats.features @ model.dense_head.weight.T + model.dense_head.bias
    with torch.no_grad():
        torch.testing.assert_close(model(**encode(model, list(val["sentence"])), use_dense_head=True).logits, dense,
                                   atol=1e-5, rtol=1e-5)


def test_fit_records_the_fit_in_the_config(fitted_text):
    model, path, _ = fitted_text
    c = model.config
    assert c.is_fitted and c.family == "multinomial" and c.alpha == 0.99
    assert c.selection["method"] == "features_per_class" and c.selection["value"] == 2
    assert c.selected_lambda == pytest.approx(path.selected.lam)
    assert len(c.path_summary) == len(path)
    assert {"lambda", "features_per_class", "val_accuracy"} <= set(c.path_summary[0])
    assert c.dense_metrics["split"] == "eval" and 0 <= c.dense_metrics["accuracy"] <= 1
    assert c.sparse_metrics["features_per_class"] == 2 and c.head_nnz == 6
    assert torch.equal(model.feature_mean, path.mean.float()) and torch.equal(model.feature_std, path.std.float())
    json.dumps(c.to_dict(), default=str)  # everything in the config is JSON


def test_fit_rejects_labels_outside_the_model(folders, text_data):
    datasets = pytest.importorskip("datasets")
    model = SparseHeadForSequenceClassification.from_pretrained(folders["bert"])
    train, _ = text_data
    bad = datasets.Dataset.from_dict({"sentence": list(train["sentence"])[:20], "label": [5] * 10 + [0] * 10})
    with pytest.raises(ValueError, match=r"label values \[5\] outside this model's labels 0..2"):
        model.fit_sparse_head(bad, text_column="sentence", features_per_class=1)
    names = datasets.Dataset.from_dict({"sentence": list(train["sentence"])[:4], "label": ["label_0", "label_1", "nope", "label_2"]})
    with pytest.raises(ValueError, match=r"\['nope'\] that are not labels of this model"):
        model.fit_sparse_head(names, text_column="sentence", features_per_class=1)
    with pytest.raises(ValueError, match="exactly one of features_per_class"):
        model.fit_sparse_head(train, text_column="sentence")


def test_fit_image_model(folders, image_data, tmp_path):
    model = SparseHeadForImageClassification.from_pretrained(folders["convnext"])
    train, val = image_data
    path = model.fit_sparse_head(train, eval_dataset=val, features_per_class=3, n_lambdas=15, cache_dir=tmp_path)
    assert model.sparse_head.features_per_class() == [3, 3, 3, 3]
    assert model.config.dense_metrics["n_examples"] == len(val)
    pixels = model.processor([im.convert("RGB") for im in val["image"]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(pixel_values=pixels, output_contributions=True)
    point = path.selected
    torch.testing.assert_close(out.logits, out.features @ point.weight.float().T + point.bias.float(), atol=1e-5, rtol=1e-5)


def test_multilabel_and_regression_models_use_their_families(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = random.Random(1)
    texts = [" ".join(rng.choices(WORDS, k=4)) for _ in range(60)]
    multi = save_text_classifier(tmp_path / "multi", "bert", num_labels=3, problem_type="multi_label_classification")
    model = SparseHeadForSequenceClassification.from_pretrained(multi)
    targets = [[float(w in t) for w in ("good", "bad", "fine")] for t in texts]
    model.fit_sparse_head(datasets.Dataset.from_dict({"text": texts, "label": targets}), lam=1e-3, n_lambdas=8,
                          cache_dir=tmp_path / "c1")
    assert model.config.family == "multilabel" and "exact_match" in model.config.sparse_metrics

    reg = save_text_classifier(tmp_path / "reg", "bert", num_labels=1, problem_type="regression")
    model = SparseHeadForSequenceClassification.from_pretrained(reg)
    scores = [float(len(t)) / 10 for t in texts]
    model.fit_sparse_head(datasets.Dataset.from_dict({"text": texts, "label": scores}), lam=1e-3, n_lambdas=8,
                          cache_dir=tmp_path / "c2")
    assert model.config.family == "gaussian" and "r2" in model.config.sparse_metrics


# ----------------------------------------------------------------------------- saving and loading
def test_full_and_head_only_round_trips_are_bit_identical(fitted_text, tmp_path):
    model, _, _ = fitted_text
    enc = encode(model)
    with torch.no_grad():
        expected = model(**enc).logits
    model.save_pretrained(tmp_path / "full")
    model.save_pretrained(tmp_path / "head", head_only=True)
    assert (tmp_path / "full" / WEIGHTS_NAME).is_file() and not (tmp_path / "full" / HEAD_WEIGHTS_NAME).exists()
    assert (tmp_path / "head" / HEAD_WEIGHTS_NAME).is_file() and not (tmp_path / "head" / WEIGHTS_NAME).exists()
    assert (tmp_path / "head" / HEAD_WEIGHTS_NAME).stat().st_size < 2000  # nonzeros + bias + feature stats
    for folder in ("full", "head"):
        again = SparseHeadForSequenceClassification.from_pretrained(tmp_path / folder)
        with torch.no_grad():
            assert torch.equal(again(**enc).logits, expected), folder
        assert again.config.selection == model.config.selection
        assert torch.equal(again.dense_head.weight, model.dense_head.weight)
        assert torch.equal(again.feature_std, model.feature_std)


def test_head_only_checkpoint_points_to_its_base_model(fitted_text, folders, tmp_path):
    model, _, _ = fitted_text
    model.save_pretrained(tmp_path / "head", head_only=True)
    config = json.loads((tmp_path / "head" / "config.json").read_text())
    assert config["base_model_name_or_path"] == str(folders["bert"])
    assert config["dense_head_sha256"]
    # A different base model (another seed) is detected.
    other = save_text_classifier(tmp_path / "other", "bert", num_labels=3, seed=1)
    with pytest.raises(CheckpointError, match="is not the one this head was fit on"):
        SparseHeadForSequenceClassification.from_pretrained(tmp_path / "head", base_model=str(other))
    # A base that moved can be given explicitly.
    moved = shutil.copytree(folders["bert"], tmp_path / "moved")
    again = SparseHeadForSequenceClassification.from_pretrained(tmp_path / "head", base_model=str(moved))
    assert torch.equal(again.sparse_head.weight, model.sparse_head.weight)


@pytest.mark.parametrize("arch", ["distilbert", "resnet"])
def test_round_trip_other_architectures(folders, tmp_path, arch):
    cls = SparseHeadForImageClassification if arch == "resnet" else SparseHeadForSequenceClassification
    model = cls.from_pretrained(folders[arch])
    random_sparse_head(model)
    if arch == "resnet":
        inputs = {"pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))}
    else:
        inputs = dict(encode(model))
    with torch.no_grad():
        expected = model(**inputs).logits
    for head_only in (False, True):
        target = tmp_path / f"ckpt-{head_only}"
        model.save_pretrained(target, head_only=head_only)
        again = cls.from_pretrained(target)
        with torch.no_grad():
            assert torch.equal(again(**inputs).logits, expected)


def test_tampered_or_missing_files_fail_clearly(fitted_text, tmp_path):
    model, _, _ = fitted_text
    model.save_pretrained(tmp_path / "ok")

    tampered = shutil.copytree(tmp_path / "ok", tmp_path / "tampered")
    weights = tampered / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors.*does not match its checksum"):
        SparseHeadForSequenceClassification.from_pretrained(tampered)

    edited = shutil.copytree(tmp_path / "ok", tmp_path / "edited")
    cfg = json.loads((edited / "config.json").read_text())
    cfg["head_nnz"] = 1
    (edited / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="config.json.*does not match its checksum"):
        SparseHeadForSequenceClassification.from_pretrained(edited)

    missing = shutil.copytree(tmp_path / "ok", tmp_path / "missing")
    (missing / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="missing 'model.safetensors'"):
        SparseHeadForSequenceClassification.from_pretrained(missing)

    no_manifest = shutil.copytree(tmp_path / "ok", tmp_path / "no_manifest")
    (no_manifest / MANIFEST_NAME).unlink()
    with pytest.raises(CheckpointError, match="no hf_sparse_manifest.json"):
        SparseHeadForSequenceClassification.from_pretrained(no_manifest)


def test_checkpoints_load_without_unpickling(fitted_text, tmp_path, monkeypatch):
    model, _, _ = fitted_text
    model.save_pretrained(tmp_path / "full")
    model.save_pretrained(tmp_path / "head", head_only=True)

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    SparseHeadForSequenceClassification.from_pretrained(tmp_path / "full")
    SparseHeadForSequenceClassification.from_pretrained(tmp_path / "head")


def test_image_checkpoint_needs_the_image_class(folders, tmp_path):
    model = SparseHeadForImageClassification.from_pretrained(folders["vit"])
    model.save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match="image model.*SparseHeadForImageClassification"):
        SparseHeadForSequenceClassification.from_pretrained(tmp_path / "vit")


# ----------------------------------------------------------------------------- Auto classes and pipelines
def test_auto_classes_and_text_pipeline_load_a_saved_model(fitted_text, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification, pipeline

    model, _, _ = fitted_text
    for head_only in (False, True):
        folder = tmp_path / f"saved-{head_only}"
        model.save_pretrained(folder, head_only=head_only)
        assert isinstance(AutoConfig.from_pretrained(folder), SparseHeadConfig)
        auto = AutoModelForSequenceClassification.from_pretrained(folder)
        assert isinstance(auto, SparseHeadForSequenceClassification)
        pipe = pipeline("text-classification", model=str(folder), top_k=None)
        scores = pipe(SENTENCES[:2])
        with torch.no_grad():
            probs = model(**encode(model, SENTENCES[:2])).logits.softmax(-1)
        for row, p in zip(scores, probs):
            by_label = {d["label"]: d["score"] for d in row}
            for i, label in model.config.id2label.items():
                assert by_label[label] == pytest.approx(float(p[i]), abs=1e-6)


def test_auto_class_and_image_pipeline_load_a_saved_model(folders, tmp_path):
    import numpy as np
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    model = SparseHeadForImageClassification.from_pretrained(folders["vit"])
    random_sparse_head(model)
    model.save_pretrained(tmp_path / "vit")
    auto = AutoModelForImageClassification.from_pretrained(tmp_path / "vit")
    assert isinstance(auto, SparseHeadForImageClassification)
    image = Image.fromarray(np.full((32, 32, 3), 120, dtype=np.uint8))
    result = pipeline("image-classification", model=str(tmp_path / "vit"))(image, top_k=4)
    pixels = model.processor(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probs = model(pixel_values=pixels).logits.softmax(-1)[0]
    assert {d["label"]: round(d["score"], 5) for d in result} == {
        model.config.id2label[i]: round(float(p), 5) for i, p in enumerate(probs)
    }


# ----------------------------------------------------------------------------- Hub
def test_push_to_hub_uploads_checkpoint_and_card(fitted_text, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from huggingface_hub import HfApi

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = tmp_path / "hub"
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs.get("private")))
        (hub / repo_id).mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls.append(("upload_folder", repo_id, kwargs.get("commit_message")))
        shutil.copytree(folder_path, hub / repo_id, dirs_exist_ok=True)
        return "commit"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model, _, _ = fitted_text
    assert model.push_to_hub("user/tiny-sparse", private=True) == "commit"
    assert calls[0] == ("create_repo", "user/tiny-sparse", True) and calls[1][0] == "upload_folder"
    repo = hub / "user" / "tiny-sparse"
    assert {"config.json", WEIGHTS_NAME, MANIFEST_NAME, "README.md", "tokenizer.json"} <= {p.name for p in repo.iterdir()}
    card = (repo / "README.md").read_text()
    assert "library_name: hf_sparse" in card and 'model="user/tiny-sparse"' in card
    again = SparseHeadForSequenceClassification.from_pretrained(repo)
    assert torch.equal(again.sparse_head.weight, model.sparse_head.weight)

    with pytest.warns(UserWarning, match="local path"):  # the tiny base model lives in a local folder
        model.push_to_hub("user/tiny-head", head_only=True)
    assert (hub / "user" / "tiny-head" / HEAD_WEIGHTS_NAME).is_file()


def test_remote_code_is_trusted_only_when_asked(folders, monkeypatch):
    from transformers import AutoConfig

    seen = []
    original = AutoConfig.from_pretrained.__func__

    def spy(cls, path, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return original(cls, path, **kwargs)

    monkeypatch.setattr(AutoConfig, "from_pretrained", classmethod(spy))
    SparseHeadForSequenceClassification.from_pretrained(folders["bert"])
    SparseHeadForSequenceClassification.from_pretrained(folders["bert"], trust_remote_code=True)
    assert seen == [None, True]


def test_the_whole_path_is_recorded_past_the_target_unless_asked_to_stop(folders, text_data, tmp_path):
    """The card's path plot needs the accuracy-sparsity trade-off beyond the installed point (issue #15 item 3):
    by default the path runs to lambda_min_ratio; whole_path=False stops at the first point reaching the target."""
    from hf_sparse import SparseHeadForSequenceClassification

    train, val = text_data
    model = SparseHeadForSequenceClassification.from_pretrained(folders["bert"])
    options = dict(eval_dataset=val, text_column="sentence", features_per_class=2, n_lambdas=12, cache_dir=tmp_path)
    whole = model.fit_sparse_head(train, **options)

    def per_class(point):
        return (point.weight != 0).sum(1).tolist()

    assert len(whole) == 12 and len(model.config.path_summary) == 12
    reached = next(i for i, p in enumerate(whole) if min(per_class(p)) >= 2)
    assert reached < 11 and max(per_class(whole[-1])) > 2  # points past the target are kept, denser ones
    installed_whole = model.sparse_head.weight.clone()

    short = model.fit_sparse_head(train, whole_path=False, **options)
    assert len(short) == reached + 1 and len(model.config.path_summary) == reached + 1
    assert min(per_class(short[-1])) >= 2
    assert torch.equal(model.sparse_head.weight, installed_whole)  # the installed head does not depend on it
