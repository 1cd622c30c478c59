"""`hf_sparse.finetune_text_classifier` and `hf-sparse finetune`: from labelled texts to a transformers classifier.

The encoder is a tiny `BertModel` built from a config (one layer, 32 wide, the MiniLM tokenizer); one test uses
the packaged all-MiniLM-L6-v2 for a single step. Checked: the saved folder is an ordinary classifier (safetensors,
tokenizer, label names) that reloads to the same logits and learns a separable task; frozen parts keep the
encoder's weights exactly; steps and the row cap; every data error's message; the old import path; the CLI chain
`hf-sparse finetune` -> `hf-sparse fit`.
"""

from __future__ import annotations

import csv
import math
import os
import random

import pytest
import torch

from _tiny_models import cli_runner, minilm_tokenizer, text_config

POSITIVE = ["good", "great", "nice", "superb", "warm", "fine"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "cold"]
FILLER = ["film", "plot", "the", "a", "actor", "scene", "music"]


def polarity_texts(n: int, seed: int = 0):
    """`n` texts of one polarity word among filler words, labelled "pos" / "neg" by that word."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        positive = i % 2 == 0
        words = rng.choices(FILLER, k=3)
        words.insert(rng.randrange(4), rng.choice(POSITIVE if positive else NEGATIVE))
        texts.append(" ".join(words))
        labels.append("pos" if positive else "neg")
    return texts, labels


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A saved tiny bare BERT encoder (2 layers) with the MiniLM tokenizer."""
    from transformers import AutoModel

    folder = tmp_path_factory.mktemp("encoder") / "bert"
    torch.manual_seed(0)
    config = text_config("bert")
    config.num_hidden_layers = 2
    AutoModel.from_config(config).save_pretrained(folder)
    minilm_tokenizer().save_pretrained(folder)
    return folder


def _state(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_texts_and_label_names_give_an_ordinary_classifier_that_learns(encoder, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_sparse import finetune_text_classifier

    texts, labels = polarity_texts(96)
    model, tokenizer = finetune_text_classifier(
        texts=texts, labels=labels, encoder=encoder, epochs=6, batch_size=16, lr=1e-2, max_length=16,
        freeze_embeddings=False, out_dir=tmp_path / "clf", progress=False)
    folder = tmp_path / "clf"
    names = sorted(p.name for p in folder.iterdir())
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]
    umask = os.umask(0o022)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # a new folder's mode, not mkdtemp's private 0700
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # safetensors writes 0600

    reloaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert reloaded.config.id2label == {0: "neg", 1: "pos"} and reloaded.config.label2id == {"neg": 0, "pos": 1}
    tok = AutoTokenizer.from_pretrained(folder)
    test_texts, test_labels = polarity_texts(40, seed=1)
    enc = tok(test_texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = reloaded(**enc).logits
        torch.testing.assert_close(model(**tokenizer(test_texts, padding=True, return_tensors="pt")).logits, logits)
    predicted = [reloaded.config.id2label[i] for i in logits.argmax(-1).tolist()]
    accuracy = sum(p == t for p, t in zip(predicted, test_labels)) / len(test_labels)
    assert accuracy >= 0.9, accuracy
    summary = model.finetune_summary
    assert summary["rows"] == 96 and summary["classes"] == ["neg", "pos"]
    assert summary["steps"] == math.ceil(6 * 96 / 16)


def test_frozen_embeddings_and_layers_keep_the_encoders_weights(encoder):
    from hf_sparse import finetune_text_classifier

    texts, labels = polarity_texts(32)
    model, _ = finetune_text_classifier(texts=texts, labels=labels, encoder=encoder, epochs=1, batch_size=8,
                                        lr=1e-2, freeze_layers=1, progress=False)
    before = _state(encoder)
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("embeddings.", "encoder.layer.0."))]
    trained = [k for k in before if k.startswith("encoder.layer.1.") and k.endswith("weight")]
    assert frozen and trained
    for key in frozen:
        assert torch.equal(after["bert." + key], before[key]), key
    assert all(not torch.equal(after["bert." + key], before[key]) for key in trained)
    assert model.finetune_summary["frozen"] == {"embeddings": True, "layers": 1}
    with pytest.raises(ValueError, match=r"freeze_layers=3, but the encoder has 2 layers: pass 0 to 2"):
        finetune_text_classifier(texts=texts, labels=labels, encoder=encoder, freeze_layers=3, progress=False)


def test_a_dataset_with_class_ids_a_row_cap_and_the_same_seed(encoder):
    from datasets import ClassLabel, Dataset, Features, Value

    from hf_sparse import finetune_text_classifier

    texts, labels = polarity_texts(50)
    ds = Dataset.from_dict({"review": texts, "stars": [int(v == "pos") for v in labels]})
    one, _ = finetune_text_classifier(ds, text_column="review", label_column="stars", encoder=encoder, epochs=1,
                                      batch_size=8, max_rows=20, progress=False)
    assert one.config.id2label == {0: "0", 1: "1"}
    assert one.finetune_summary["rows"] == 20 and one.finetune_summary["steps"] == 3  # ceil(20 / 8)
    again, _ = finetune_text_classifier(ds, text_column="review", label_column="stars", encoder=encoder, epochs=1,
                                        batch_size=8, max_rows=20, progress=False)
    other, _ = finetune_text_classifier(ds, text_column="review", label_column="stars", encoder=encoder, epochs=1,
                                        batch_size=8, max_rows=20, seed=1, progress=False)
    key = "classifier.weight"
    assert torch.equal(one.state_dict()[key], again.state_dict()[key])
    assert not torch.equal(one.state_dict()[key], other.state_dict()[key])
    # numpy class ids are class ids too
    import numpy as np

    model, _ = finetune_text_classifier(texts=texts[:8], labels=np.array([0, 1, 2, 0, 1, 2, 0, 1]), encoder=encoder,
                                        epochs=1, batch_size=8, progress=False)
    assert model.config.id2label == {0: "0", 1: "1", 2: "2"}
    # a ClassLabel gives its names, in its order
    named = ds.cast(Features({"review": Value("string"), "stars": ClassLabel(names=["neg", "pos"])}))
    model, _ = finetune_text_classifier(named, text_column="review", label_column="stars", encoder=encoder,
                                        epochs=0.1, batch_size=8, progress=False)
    assert model.config.id2label == {0: "neg", 1: "pos"}


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(texts=["a", "b"], labels=["x", "x"]),
     r"the training data has a single class \('x'\); a classifier needs examples of at least two classes"),
    (dict(texts=[], labels=[]), r"the training data has no rows; there is nothing to fine-tune on"),
    (dict(texts=["a", "b"], labels=[0.5, 1.5]),
     r"labels must be class names \(strings\) or class ids \(integers 0..k-1\); got float values such as "
     r"\[0.5, 1.5\]. Map them to names or ids first"),
    (dict(texts=["a", "b"], labels=[1, "x"]), r"labels must be class names .*; got int/str values"),
    (dict(texts=["a", "b", "c"], labels=[1, 2, 2]),
     r"the labels are class ids \[1, 2\], not 0..k-1 each present: renumber them 0..k-1, or give label names"),
    (dict(texts=["a", None], labels=[0, 1]), r"1 row\(s\) hold no text \(e.g. rows \[1\]: \[None\]\)"),
    (dict(texts=["a", "b"], labels=[0, None]), r"1 row\(s\) have no label \(e.g. rows \[1\]\); fill or drop them"),
    (dict(texts=["a", "b"], labels=[0]), r"texts= has 2 items and labels= 1: give one label per text"),
    (dict(), r"no training data: pass a datasets.Dataset, or texts= and labels="),
    (dict(texts=["a", "b"], labels=[0, 1], epochs=0), r"epochs must be a number above 0, got 0"),
])
def test_bad_data_and_options_are_errors_that_say_what_to_do(encoder, kwargs, message):
    from hf_sparse import finetune_text_classifier

    with pytest.raises(ValueError, match=message):
        finetune_text_classifier(encoder=encoder, progress=False, **kwargs)


def test_a_missing_column_names_the_dataset_columns(encoder):
    from datasets import Dataset

    from hf_sparse import finetune_text_classifier

    ds = Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 1]})
    with pytest.raises(ValueError, match=r"the dataset has no column 'text' \(text_column\); its columns are "
                                         r"\['sentence', 'label'\]. Pass text_column='<one of those>'"):
        finetune_text_classifier(ds, encoder=encoder, progress=False)


def test_the_default_encoder_is_the_packaged_minilm_and_the_old_name_still_works():
    import hf_sparse
    from hf_sparse.synthetic import finetune_text_classifier as old_name
    from hf_sparse.synthetic.quick_classifier import packaged_minilm_path

    assert old_name is hf_sparse.finetune_text_classifier
    model, _ = hf_sparse.finetune_text_classifier(texts=["a fine film", "a dull film"], labels=["pos", "neg"],
                                                  epochs=1, batch_size=2, max_length=8, progress=False)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6  # all-MiniLM-L6-v2
    assert model.finetune_summary["encoder"] == packaged_minilm_path()


def _write_csv(path, texts, labels):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        writer.writerows(zip(texts, labels))
    return path


def test_cli_finetune_then_fit(encoder, tmp_path, capsys):
    import json

    run = cli_runner(capsys)
    texts, labels = polarity_texts(80)
    data = _write_csv(tmp_path / "reviews.csv", texts, labels)
    code, out, err = run("finetune", data, "--model", encoder, "--text-column", "review", "--label-column",
                         "sentiment", "--epochs", "3", "--batch-size", "16", "--lr", "3e-3", "--max-length", "16",
                         "--no-progress", "-o", tmp_path / "clf")
    assert code == 0, err
    assert "80 training rows" in out and "classes      2: neg, pos" in out and "15 steps of 16" in out
    assert f"next         hf-sparse fit {tmp_path / 'clf'} {data} --text-column review --label-column sentiment" in out
    config = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}

    code, out, err = run("fit", tmp_path / "clf", data, "--text-column", "review", "--label-column", "sentiment",
                         "--features-per-class", "2", "--no-describe", "--no-progress", "-o", tmp_path / "sparse")
    assert code == 0, err
    assert "Fitted a sparse head" in out and "features     2 per class (neg 2, pos 2)" in out
    saved = json.loads((tmp_path / "sparse" / "config.json").read_text())
    assert saved["id2label"] == {"0": "neg", "1": "pos"}

    # the output is not overwritten unasked
    code, out, err = run("finetune", data, "--model", encoder, "--text-column", "review", "--label-column",
                         "sentiment", "-o", tmp_path / "clf")
    assert code == 1
    assert f"--output {tmp_path / 'clf'} is not empty" in err

    # --overwrite replaces the classifier in one step and keeps the user's other files (as fit --overwrite does)
    (tmp_path / "clf" / "notes.txt").write_text("mine")
    old_weights = (tmp_path / "clf" / "model.safetensors").read_bytes()
    code, out, err = run("finetune", data, "--model", encoder, "--text-column", "review", "--label-column",
                         "sentiment", "--epochs", "1", "--batch-size", "16", "--seed", "1", "--max-length", "16",
                         "--no-progress", "-o", tmp_path / "clf", "--overwrite")
    assert code == 0, err
    assert (tmp_path / "clf" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "clf" / "model.safetensors").read_bytes() != old_weights
    assert not [p.name for p in tmp_path.iterdir() if "tmp" in p.name]  # no temporary folder left behind


def test_cli_finetune_errors(encoder, tmp_path, capsys):
    run = cli_runner(capsys)
    data = _write_csv(tmp_path / "one.csv", ["a", "b", "c"], ["x", "x", "x"])
    code, out, err = run("finetune", data, "--model", encoder, "--text-column", "review", "--label-column",
                         "sentiment", "--no-progress", "-o", tmp_path / "clf")
    assert code == 1
    assert err.strip() == ("hf-sparse finetune: error: the training data has a single class ('x'); a classifier "
                           "needs examples of at least two classes")
    assert not (tmp_path / "clf").exists()  # nothing left behind
    code, out, err = run("finetune", data, "--model", encoder, "-o", tmp_path / "clf")
    assert code == 1
    assert "DATASET has no column 'text' (--text-column); its columns are ['review', 'sentiment']" in err
    code, out, err = run("finetune", data, "--epochs", "0", "-o", tmp_path / "clf")
    assert code == 2 and "--epochs: must be a number above 0, got '0'" in err
    code, out, err = run("finetune", data, "--freeze-layers", "-1", "-o", tmp_path / "clf")
    assert code == 2 and "--freeze-layers: must be 0 or more, got '-1'" in err


def test_cli_finetune_is_listed_and_has_help(capsys):
    from hf_sparse.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "finetune" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["finetune", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hf-sparse finetune") and "--debug" in out
    for option in ("--model", "--text-column", "--label-column", "--epochs", "--learning-rate", "--batch-size",
                   "--max-length", "--freeze-layers", "--seed", "--max-rows"):
        assert option in out
