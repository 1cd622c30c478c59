"""A sparse head on a pretrained encoder with no classification head (`from_encoder`, `hf-sparse fit --from-encoder`).

The encoders are tiny (`BertModel`, `ViTModel`, `ConvNextModel` built from configs); the pooled features are checked
against hand computations on the bare encoder, and the wrapped model against everything a wrapped classifier does:
fit, feature cache, explain, save/load (full and head-only), pipeline. One slow real-data test fits the packaged
all-MiniLM-L6-v2 on SST-2.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

from _tiny_models import WORDS, cli_runner, image_config, image_processor, minilm_tokenizer, text_config, word_dataset

SENTENCES = ["a good and warm film", "bad", "superb , nice and warm but a little dull", "cold poor awful thing"]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """Saved tiny bare encoders: BERT (with the MiniLM tokenizer), ViT and ConvNeXt (with a 32x32 image processor)."""
    from transformers import AutoModel

    root = tmp_path_factory.mktemp("encoders")
    out = {}
    torch.manual_seed(0)
    bert = AutoModel.from_config(text_config("bert"))
    bert.save_pretrained(root / "bert")
    minilm_tokenizer().save_pretrained(root / "bert")
    out["bert"] = root / "bert"
    for arch in ("vit", "convnext"):
        model = AutoModel.from_config(image_config(arch))
        model.save_pretrained(root / arch)
        image_processor().save_pretrained(root / arch)
        out[arch] = root / arch
    return out


@pytest.fixture(scope="module")
def words():
    ds = word_dataset(150, seed=3)
    return ds.select(range(110)), ds.select(range(110, 150))


@pytest.fixture(scope="module")
def fitted(encoders, words, tmp_path_factory):
    from hf_sparse import SparseHeadForSequenceClassification

    model = SparseHeadForSequenceClassification.from_encoder(
        encoders["bert"], id2label={0: "zero", 1: "one", 2: "two"}, pooling="mean"
    )
    train, val = words
    cache = tmp_path_factory.mktemp("features")
    path = model.fit_sparse_head(train, eval_dataset=val, text_column="sentence", features_per_class=2,
                                 n_lambdas=20, cache_dir=str(cache))
    return model, path


def _bare(folder):
    from transformers import AutoModel

    return AutoModel.from_pretrained(folder).eval()


def _images(n, seed=0):
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    return [Image.fromarray((torch.rand(32, 32, 3, generator=g) * 255).to(torch.uint8).numpy()) for _ in range(n)]


# ----------------------------------------------------------------------------- pooling (text)
def test_mean_pooling_excludes_padding(encoders):
    """Padded-batch features equal, per sentence, the mean of the encoder's unpadded token states."""
    from hf_sparse import SparseHeadForSequenceClassification

    model = SparseHeadForSequenceClassification.from_encoder(encoders["bert"], num_labels=3, pooling="mean")
    tok = model.processor
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    assert (enc["attention_mask"] == 0).any()  # there is padding to exclude
    with torch.no_grad():
        feats = model(**enc, output_contributions=True).features
        bare = _bare(encoders["bert"])
        for i, sentence in enumerate(SENTENCES):
            alone = tok([sentence], return_tensors="pt")
            expected = bare(**alone).last_hidden_state[0].mean(0)  # every (unpadded) token, CLS and SEP included
            torch.testing.assert_close(feats[i], expected, atol=1e-5, rtol=1e-5)
        # and the unmasked mean over the padded batch is something else
        assert not torch.allclose(feats, bare(**enc).last_hidden_state.mean(1), atol=1e-4)


def test_cls_and_pooler_pooling(encoders):
    from hf_sparse import SparseHeadForSequenceClassification

    bare = _bare(encoders["bert"])
    tok = minilm_tokenizer()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = bare(**enc)
        for pooling, expected in (("cls", out.last_hidden_state[:, 0]), ("pooler", out.pooler_output)):
            model = SparseHeadForSequenceClassification.from_encoder(encoders["bert"], num_labels=2, pooling=pooling)
            torch.testing.assert_close(model(**enc, output_contributions=True).features, expected)


def test_the_model_is_an_unfitted_classifier(encoders):
    from hf_sparse import SparseHeadForSequenceClassification

    model = SparseHeadForSequenceClassification.from_encoder(encoders["bert"], id2label=["neg", "pos"])
    config = model.config
    assert (config.base_kind, config.pooling, config.base_architecture) == ("encoder", "mean", "BertModel")
    assert config.head_module == "classifier" and config.num_features == 32
    assert config.id2label == {0: "neg", 1: "pos"} and config.label2id == {"neg": 0, "pos": 1}
    assert config.base_model_name_or_path == str(encoders["bert"]) and not config.is_fitted
    # the dense classifier is the documented placeholder of zeros: uniform probabilities until a head is fit
    assert not model.dense_head.weight.any() and not model.dense_head.bias.any()
    enc = model.processor(SENTENCES[:2], padding=True, return_tensors="pt")
    out = model(**enc, labels=torch.tensor([0, 1]))
    assert torch.equal(out.logits, torch.zeros(2, 2))
    assert out.loss.item() == pytest.approx(float(torch.log(torch.tensor(2.0))), abs=1e-6)


# ----------------------------------------------------------------------------- fit, cache, explain
def test_fit_caches_the_pooled_features(fitted, words, encoders):
    model, path = fitted
    train, val = words
    head = model.sparse_head
    assert head.features_per_class() == [2, 2, 2]
    # the cached features are the hand-pooled encoder output, row for row
    bare = _bare(encoders["bert"])
    tok = minilm_tokenizer()
    rows = [0, 7, 42]
    with torch.no_grad():
        for r in rows:
            expected = bare(**tok([train[r]["sentence"]], return_tensors="pt")).last_hidden_state[0].mean(0)
            torch.testing.assert_close(model.fit_data.train_features.features[r], expected, atol=1e-5, rtol=1e-5)
    # the sparse head on the cached eval features gives the recorded accuracy, and the model's own forward agrees
    X_val = model.fit_data.eval_features.features.float()
    y_val = torch.tensor(val["label"])
    logits = head(X_val)
    assert model.config.sparse_metrics["accuracy"] == pytest.approx(float((logits.argmax(1) == y_val).double().mean()))
    enc = tok(val["sentence"][:8], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**enc).logits, logits[:8], atol=1e-5, rtol=1e-5)
    # there is no dense head to compare with, and the feature source says where the features come from
    assert model.config.dense_metrics == {"split": "eval", "n_examples": 40,
                                          "note": "no dense head: a pretrained encoder (from_encoder)"}
    assert model.config.feature_source.startswith("mean pooling of the BertModel encoder")
    # the fit learnt something: better than always predicting the majority class on the training data
    X = model.fit_data.train_features.features.float()
    y = torch.tensor(train["label"])
    train_acc = float((head(X).argmax(1) == y).double().mean())
    assert train_acc > max(torch.bincount(y).tolist()) / len(y)


def test_explain_adds_up(fitted):
    model, _ = fitted
    exp = model.explain("a good and warm film")
    with torch.no_grad():
        enc = model.processor(["a good and warm film"], return_tensors="pt")
        out = model(**enc, output_contributions=True)
    predicted = int(out.logits.argmax(1))
    assert exp.to_dict()["prediction"] in (predicted, model.config.id2label[predicted])
    # each class's logit is its bias plus the active features' contributions
    torch.testing.assert_close(out.contributions.sum(-1)[0] + model.sparse_head.bias, out.logits[0], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- saving and loading
def _no_pickles(folder):
    return not [p for p in Path(folder).rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]


def test_save_load_full_and_head_only(fitted, encoders, tmp_path):
    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.modeling import CheckpointError

    model, _ = fitted
    enc = model.processor(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits
    model.save_pretrained(tmp_path / "full", model_card=False)
    model.save_pretrained(tmp_path / "head", head_only=True, model_card=False)
    for kind in ("full", "head"):
        saved = json.loads((tmp_path / kind / "config.json").read_text())
        assert (saved["base_kind"], saved["pooling"]) == ("encoder", "mean")
        assert _no_pickles(tmp_path / kind)
        loaded = SparseHeadForSequenceClassification.from_pretrained(tmp_path / kind)
        assert type(loaded.model).__name__ == "EncoderForSequenceClassification"
        with torch.no_grad():
            torch.testing.assert_close(loaded(**enc).logits, expected, atol=1e-5, rtol=1e-5)
        assert loaded.config.id2label == {0: "zero", 1: "one", 2: "two"}
    assert (tmp_path / "head" / "sparse_head.safetensors").stat().st_size < 10_000
    # head-only: the encoder may be given as a loaded model; a different architecture is refused
    loaded = SparseHeadForSequenceClassification.from_pretrained(tmp_path / "head", base_model=_bare(encoders["bert"]))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**enc).logits, expected, atol=1e-5, rtol=1e-5)
    from transformers import AutoModel

    other = AutoModel.from_config(text_config("distilbert"))
    with pytest.raises(CheckpointError, match="fit on a BertModel encoder; base_model is a DistilBertModel"):
        SparseHeadForSequenceClassification.from_pretrained(tmp_path / "head", base_model=other)


def test_pipeline_after_import(fitted, tmp_path):
    import hf_sparse  # noqa: F401 - registers the Auto classes
    from transformers import pipeline

    model, _ = fitted
    model.save_pretrained(tmp_path / "m", model_card=False)
    clf = pipeline("text-classification", model=str(tmp_path / "m"), top_k=None)
    got = clf(SENTENCES[0])
    got = got[0] if isinstance(got[0], list) else got
    enc = model.processor([SENTENCES[0]], return_tensors="pt")
    with torch.no_grad():
        probs = model(**enc).logits.softmax(-1)[0]
    assert {d["label"]: d["score"] for d in got} == pytest.approx(
        {model.config.id2label[i]: float(p) for i, p in enumerate(probs)}, abs=1e-5
    )


def test_from_base_model_of_an_encoder_classifier_records_it(encoders):
    """The wrapper built by hand (encoder_classifier) and given to from_base_model is recorded as an encoder base."""
    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.modeling.encoder_head import encoder_classifier

    wrapper = encoder_classifier(_bare(encoders["bert"]), modality="text", pooling="cls", id2label={0: "a", 1: "b"})
    model = SparseHeadForSequenceClassification.from_base_model(wrapper)
    assert (model.config.base_kind, model.config.pooling, model.config.base_architecture) == ("encoder", "cls", "BertModel")


# ----------------------------------------------------------------------------- images
def test_vit_pooling_and_round_trip(encoders, tmp_path):
    from hf_sparse import SparseHeadForImageClassification

    images = _images(3)
    pixel_values = image_processor()(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        hidden = _bare(encoders["vit"])(pixel_values=pixel_values).last_hidden_state  # (3, 1 + 16 patches, 32)
        assert hidden.shape[1] == 17
        for pooling, expected in (("cls", hidden[:, 0]), ("mean", hidden[:, 1:].mean(1))):
            model = SparseHeadForImageClassification.from_encoder(encoders["vit"], num_labels=4, pooling=pooling)
            torch.testing.assert_close(model(pixel_values=pixel_values, output_contributions=True).features, expected)
    assert SparseHeadForImageClassification.from_encoder(encoders["vit"], num_labels=4).config.pooling == "cls"
    weight = torch.zeros(4, 32)
    weight[1, 3], weight[2, 5] = 1.5, -2.0
    model.install_sparse_head(weight, torch.tensor([0.1, 0.0, 0.0, -0.1]))
    model.save_pretrained(tmp_path / "vit", model_card=False)
    loaded = SparseHeadForImageClassification.from_pretrained(tmp_path / "vit")
    with torch.no_grad():
        out = loaded(pixel_values=pixel_values)
        torch.testing.assert_close(out.logits, hidden[:, 1:].mean(1) @ weight.T + torch.tensor([0.1, 0.0, 0.0, -0.1]))
    assert loaded.config.pooling == "mean" and loaded.processor is not None


def test_vit_fit(encoders, tmp_path):
    from datasets import Dataset

    from hf_sparse import SparseHeadForImageClassification

    images = _images(24, seed=1)
    ds = Dataset.from_dict({"image": images, "label": [i % 2 for i in range(24)]})
    model = SparseHeadForImageClassification.from_encoder(encoders["vit"], id2label={0: "cat", 1: "dog"})
    model.fit_sparse_head(ds, features_per_class=1, n_lambdas=10, cache_dir=str(tmp_path / "feat"))
    assert model.sparse_head.features_per_class() == [1, 1]
    pixel_values = image_processor()(images=images[:4], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        cls_token = _bare(encoders["vit"])(pixel_values=pixel_values).last_hidden_state[:, 0]
    torch.testing.assert_close(model.fit_data.train_features.features[:4], cls_token, atol=1e-5, rtol=1e-5)


def test_convnext_uses_its_pooled_output(encoders):
    from hf_sparse import SparseHeadForImageClassification

    pixel_values = image_processor()(images=_images(2), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = _bare(encoders["convnext"])(pixel_values=pixel_values)
        assert out.last_hidden_state.dim() == 4  # feature maps
        model = SparseHeadForImageClassification.from_encoder(encoders["convnext"], num_labels=4, pooling="mean")
        feats = model(pixel_values=pixel_values, output_contributions=True).features
    # the mean pooling of a convolutional encoder is its pooled output: the layer-normed spatial mean
    torch.testing.assert_close(feats, out.pooler_output)
    norm = model.model.encoder.layernorm
    torch.testing.assert_close(feats, norm(out.last_hidden_state.mean((2, 3))))
    with pytest.raises(ValueError, match="ConvNextModel has no CLS token .* use pooling='mean'"):
        SparseHeadForImageClassification.from_encoder(encoders["convnext"], num_labels=4, pooling="cls")


# ----------------------------------------------------------------------------- errors
def test_errors(encoders, tmp_path, fitted):
    from hf_sparse import SparseHeadForImageClassification, SparseHeadForSequenceClassification
    from hf_sparse.modeling import UnsupportedModelError

    S = SparseHeadForSequenceClassification
    with pytest.raises(ValueError, match="needs the labels: pass num_labels= .* or id2label="):
        S.from_encoder(encoders["bert"])
    with pytest.raises(ValueError, match="pooling='max' is not one of"):
        S.from_encoder(encoders["bert"], num_labels=2, pooling="max")
    with pytest.raises(ValueError, match="num_labels=3 but id2label names 2 labels"):
        S.from_encoder(encoders["bert"], num_labels=3, id2label={0: "a", 1: "b"})
    with pytest.raises(UnsupportedModelError, match="ViTModel takes 'pixel_values' inputs.*SparseHeadForImageClassification"):
        S.from_encoder(encoders["vit"], num_labels=2)
    with pytest.raises(UnsupportedModelError, match="BertModel takes 'input_ids'.*SparseHeadForSequenceClassification"):
        SparseHeadForImageClassification.from_encoder(encoders["bert"], num_labels=2)
    # a checkpoint that lacks pretrained weights would give random features
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    _bare(encoders["bert"]).save_pretrained(broken)
    weights = load_file(broken / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "layer.0.output" not in k}, broken / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(UnsupportedModelError, match="has no pretrained weights for .*layer.0.output"):
        S.from_encoder(broken, num_labels=2)
    model, _ = fitted
    model.save_pretrained(tmp_path / "ckpt", model_card=False)
    with pytest.raises(ValueError, match="already an hf_sparse checkpoint: load it with .*from_pretrained"):
        S.from_encoder(tmp_path / "ckpt", num_labels=2)


# ----------------------------------------------------------------------------- command line
@pytest.fixture
def cli(encoders, tmp_path, monkeypatch, capsys):
    """`main(argv)` in this process, in a folder with the tiny encoder and small CSVs; returns (code, out, err)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    monkeypatch.setenv("HF_SPARSE_FEATURES_CACHE", str(tmp_path / "features"))
    monkeypatch.chdir(tmp_path)
    rng = random.Random(0)
    for name, n, labels in (("train.csv", 80, ("neg", "pos", "mid")), ("eval.csv", 30, ("neg", "pos", "mid")),
                            ("gaps.csv", 20, (1, 3))):
        with open(name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["review", "label"])
            for _ in range(n):
                ws = rng.choices(WORDS, k=5)
                writer.writerow([" ".join(ws), labels[sum(WORDS.index(w) for w in ws) % len(labels)]])

    return cli_runner(capsys)


def test_cli_fit_from_encoder(cli, encoders, tmp_path):
    from hf_sparse import SparseHeadForSequenceClassification

    code, out, err = cli("fit", encoders["bert"], "train.csv", "--from-encoder", "--pooling", "cls", "--text-column",
                         "review", "--eval-file", "eval.csv", "--features-per-class", "2", "--n-lambdas", "12",
                         "--no-progress", "--no-describe", "--output", "out")
    assert code == 0, err
    assert "(a pretrained encoder: no dense head), on --eval-file eval.csv (30 rows)" in out
    model = SparseHeadForSequenceClassification.from_pretrained(tmp_path / "out")
    # the label names are the data's sorted distinct values
    assert model.config.id2label == {0: "mid", 1: "neg", 2: "pos"}
    assert (model.config.base_kind, model.config.pooling) == ("encoder", "cls")
    assert model.sparse_head.features_per_class() == [2, 2, 2]
    # the reported accuracy is the head's on the eval file, labels mapped by name
    import datasets

    ev = datasets.load_dataset("csv", data_files=str(tmp_path / "eval.csv"), split="train")
    enc = model.processor(list(ev["review"]), padding=True, return_tensors="pt")
    with torch.no_grad():
        pred = model(**enc).logits.argmax(1).tolist()
    acc = sum(model.config.id2label[p] == y for p, y in zip(pred, list(ev["label"]))) / len(pred)
    assert model.config.sparse_metrics["accuracy"] == pytest.approx(acc)


def test_cli_from_encoder_errors(cli, encoders):
    code, _, err = cli("fit", encoders["bert"], "train.csv", "--text-column", "review", "--lam", "0.1", "--output", "o1")
    assert code == 2 and "is a pretrained encoder (BertModel) with no classification head: pass --from-encoder" in err
    code, _, err = cli("fit", encoders["bert"], "train.csv", "--pooling", "mean", "--lam", "0.1", "--output", "o2")
    assert code == 2 and "--pooling applies to a pretrained encoder: add --from-encoder" in err
    code, _, err = cli("fit", encoders["bert"], "train.csv", "--from-encoder", "--pooling", "max", "--lam", "0.1",
                       "--output", "o3")
    assert code == 2 and "must be one of mean, cls, pooler, got 'max'" in err
    code, _, err = cli("fit", encoders["bert"], "gaps.csv", "--from-encoder", "--text-column", "review", "--lam", "0.1",
                       "--output", "o4")
    assert code == 1 and "holds class ids [1, 3]; --from-encoder needs ids 0..k-1" in err
    assert not Path("o1").exists() and not Path("o4").exists()


def test_labels_from_data():
    from datasets import ClassLabel, Dataset, Features, Value

    from hf_sparse.cli.errors import CLIError
    from hf_sparse.cli.fit import labels_from_data

    ds = Dataset.from_dict({"label": [1, 0, 1]}, features=Features({"label": ClassLabel(names=["neg", "pos"])}))
    assert labels_from_data(ds, "label") == {0: "neg", 1: "pos"}
    assert labels_from_data(Dataset.from_dict({"label": ["b", "a", "c", "a"]}), "label") == {0: "a", 1: "b", 2: "c"}
    assert labels_from_data(Dataset.from_dict({"label": [2, 0, 1]}), "label") == {0: "0", 1: "1", 2: "2"}
    with pytest.raises(CLIError, match="has 1 class"):
        labels_from_data(Dataset.from_dict({"label": ["a", "a"]}), "label")
    with pytest.raises(CLIError, match="fits single-label classifiers"):
        labels_from_data(Dataset.from_dict({"label": [0.5, 1.5]}, features=Features({"label": Value("float32")})), "label")


# ----------------------------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.realdata
def test_minilm_sst2_sparse_head(tmp_path):
    """The paper's setting on real data: the packaged all-MiniLM-L6-v2, frozen, mean-pooled; 2,000 SST-2 training
    sentences; 5 features per class (relaxed refit). Measured: 69.5% on the validation split (dense logistic
    regression on the same features: 77.1%; the unrelaxed path point: 55.4%)."""
    from hf_sparse.data_paths import shared_data_dir

    root = shared_data_dir()
    if root is None or not (root / "sst2" / "train.tsv").is_file():
        pytest.skip("needs ../shared/data/sst2 (set HF_SPARSE_DATA to the shared data folder)")
    import datasets

    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.synthetic.quick_classifier import packaged_minilm_path

    def load(name):
        return datasets.load_dataset("csv", data_files=str(root / "sst2" / name), delimiter="\t", split="train",
                                     cache_dir=str(tmp_path / "ds"))

    train, val = load("train.tsv").shuffle(seed=0).select(range(2000)), load("validation.tsv")
    model = SparseHeadForSequenceClassification.from_encoder(
        packaged_minilm_path(), id2label={0: "negative", 1: "positive"}, pooling="mean"
    )
    model.fit_sparse_head(train, eval_dataset=val, text_column="sentence", features_per_class=5, relax=True,
                          cache_dir=str(tmp_path / "feat"))
    assert model.sparse_head.features_per_class() == [5, 5]
    accuracy = model.config.sparse_metrics["accuracy"]
    assert model.config.sparse_metrics["n_examples"] == 872
    assert accuracy > 0.65, accuracy  # measured 0.695; half of the validation set is positive
