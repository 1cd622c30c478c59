"""hf_sparse.explain word attributions and occlusion heatmaps, checked against hand computations.

Known answers come from tiny classifiers whose encoder is replaced by a module we write, so that a feature is a known
function of the input: feature 0 of the text model is the sum over tokens of embedding dimension 0 (planted large
for "zebra"), feature 0 of the image model is the mean of the top-left quadrant. The real tiny architectures are
checked too: occlusion against running the model on the text without the word, gradient x input against a finite
difference. Nothing touches the network (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hf_sparse  # noqa: E402,F401  (registers the Auto classes)
from hf_sparse import SparseHeadForImageClassification, SparseHeadForSequenceClassification  # noqa: E402
from hf_sparse.explain import (  # noqa: E402
    WordAttribution,
    heatmap_overlay,
    occlusion_heatmaps,
    top_words,
    word_attributions,
)
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling  # noqa: E402

from _tiny_models import TEXT_ARCHS, save_image_classifier, save_text_classifier  # noqa: E402

ZEBRA = 5.0  # embedding dimension 0 of "zebra"; every other token has a small value in [-0.5, 0.5]


# ----------------------------------------------------------------------------- known-answer models
class CountingBackbone(nn.Module):
    """Stands in for BertModel: pooled feature 0 = sum over real tokens of embedding dimension 0 (a linear count of
    planted tokens); the other features are a nonlinear function of the mean embedding."""

    def __init__(self, word_embeddings: nn.Embedding):
        super().__init__()
        self.word_embeddings = word_embeddings

    def get_input_embeddings(self):
        return self.word_embeddings

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        emb = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        mask = torch.ones(emb.shape[:2]) if attention_mask is None else attention_mask.to(emb.dtype)
        summed = (emb * mask[..., None]).sum(1)
        pooled = torch.tanh(summed[:, 1:] / mask.sum(1, keepdim=True))
        pooled = torch.cat([summed[:, :1], pooled], dim=1)
        return BaseModelOutputWithPooling(last_hidden_state=emb, pooler_output=pooled)


class QuadrantBackbone(nn.Module):
    """Stands in for ViTModel: feature 0 of the [CLS] output = mean of the top-left quadrant of pixel_values,
    feature 1 = mean of the bottom-right quadrant, the rest 0."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden

    def forward(self, pixel_values, *args, **kwargs):
        n, _, h, w = pixel_values.shape
        out = torch.zeros(n, 1, self.hidden)
        out[:, 0, 0] = pixel_values[:, :, : h // 2, : w // 2].mean(dim=(1, 2, 3))
        out[:, 0, 1] = pixel_values[:, :, h // 2 :, w // 2 :].mean(dim=(1, 2, 3))
        return BaseModelOutput(last_hidden_state=out)


@pytest.fixture(scope="module")
def text_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_attr")
    return {arch: save_text_classifier(root / arch, arch, num_labels=2) for arch in TEXT_ARCHS}


@pytest.fixture(scope="module")
def real_models(text_folders):
    load = SparseHeadForSequenceClassification.from_pretrained
    return {arch: load(folder).eval() for arch, folder in text_folders.items()}


@pytest.fixture(scope="module")
def zebra_model(text_folders):
    """A BERT classifier whose feature 0 is the sum of embedding dim 0: 5.0 for "zebra", small for other tokens."""
    model = SparseHeadForSequenceClassification.from_pretrained(text_folders["bert"]).eval()
    tok = model.processor
    emb = model.model.get_input_embeddings()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        emb.weight[:, 0] = torch.rand(emb.weight.shape[0], generator=g) - 0.5
        emb.weight[tok.convert_tokens_to_ids("zebra"), 0] = ZEBRA
    model.model.bert = CountingBackbone(emb)
    return model


def planted(model, word: str) -> float:
    """Hand computation of feature 0's attribution of `word` in the zebra model: its pieces' dim-0 values summed."""
    tok = model.processor
    ids = tok(word, add_special_tokens=False)["input_ids"]
    return float(model.model.get_input_embeddings().weight[ids, 0].detach().sum())


# ----------------------------------------------------------------------------- known answer: text
SENTENCES = [
    "the zebra ran across the dusty plain",
    "a tired old lion watched a zebra drink",
    "nobody expected the zebra, least of all the keeper",
    "zebra crossings are painted white",
]


@pytest.mark.parametrize("method", ["occlusion", "gradient"])
def test_planted_token_ranks_first_and_scores_are_exact(zebra_model, method):
    attrs = word_attributions(zebra_model, SENTENCES, [0, 3], method=method)
    assert len(attrs) == len(SENTENCES)
    for a, text in zip(attrs, SENTENCES):
        assert a.method == method and a.features == [0, 3]
        assert a.scores.shape == (len(a.words), 2)
        assert a.ranked(0)[0][0] == "zebra"
        # feature 0 is linear in the embeddings: both methods give exactly each word's planted value
        expected = torch.tensor([planted(zebra_model, w) for w in a.words])
        torch.testing.assert_close(a.scores[:, 0], expected, atol=1e-5, rtol=1e-5)
        # the activation is the feature on the full text, as model.encode computes it
        torch.testing.assert_close(a.activation, zebra_model.encode([text])[0, [0, 3]], atol=1e-5, rtol=1e-5)
    assert top_words(attrs, 0, k=3)[0] == ("zebra", pytest.approx(ZEBRA, abs=1e-5), len(SENTENCES))


def test_words_and_spans_follow_the_tokenizer(zebra_model):
    text = "nobody expected the zebra, least of all the keeper"
    [a] = word_attributions(zebra_model, text, [0])
    assert a.words == ["nobody", "expected", "the", "zebra", ",", "least", "of", "all", "the", "keeper"]
    assert all(text[s:e] == w for w, (s, e) in zip(a.words, a.spans))
    assert a.spans[3] == (20, 25)


def test_occlusion_equals_running_the_model_without_the_word(real_models):
    text = "a gentle and unflinchingly honest portrait of grief"
    words = text.split()
    features = [0, 5, 17]
    for arch, model in real_models.items():
        [a] = word_attributions(model, text, features)
        assert a.words == words, arch
        full = model.encode([text])[0, features]
        without = model.encode([" ".join(words[:w] + words[w + 1 :]) for w in range(len(words))])[:, features]
        torch.testing.assert_close(a.activation, full, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.scores, full - without, atol=1e-5, rtol=1e-4, msg=lambda m: f"{arch}: {m}")


def test_gradient_is_gradient_times_input(real_models):
    """Gradient x input of a word = d/de f(embeddings with the word's pieces scaled by 1 + e) at e = 0."""
    text = "an unflinchingly bleak film"
    features = [2, 9]
    for arch, model in real_models.items():
        [a] = word_attributions(model, text, features, method="gradient")
        assert a.words == text.split(), arch
        torch.testing.assert_close(a.activation, model.encode([text])[0, features], atol=1e-5, rtol=1e-4)
        enc = model.processor([text], return_tensors="pt")
        ids = enc.pop("input_ids")
        embeds = model.model.get_input_embeddings()(ids).detach()
        word_ids = enc.word_ids(0)
        w = 1  # "unflinchingly": five word pieces
        pieces = torch.tensor([wid == w for wid in word_ids], dtype=torch.float32)
        assert pieces.sum() == 5

        def f(eps):
            scaled = embeds * (1 + eps * pieces)[None, :, None]
            with torch.no_grad():
                return model(inputs_embeds=scaled, **enc, output_contributions=True).features[0, features]

        eps = 1e-2
        finite_difference = (f(eps) - f(-eps)) / (2 * eps)
        torch.testing.assert_close(a.scores[w], finite_difference, atol=2e-3, rtol=2e-2, msg=lambda m: f"{arch}: {m}")


def test_multi_piece_word_is_one_word(zebra_model):
    tok = zebra_model.processor
    assert tok.tokenize("unflinchingly") == ["un", "##fl", "##in", "##ching", "##ly"]
    assert tok.tokenize("zebras") == ["zebra", "##s"]
    text = "an unflinchingly bleak zebras tale"
    for method in ("occlusion", "gradient"):
        [a] = word_attributions(zebra_model, text, [0], method=method)
        assert a.words == ["an", "unflinchingly", "bleak", "zebras", "tale"]
        # the word's score is the sum over all its pieces ("zebras" = "zebra" + "##s")
        assert a.scores[1, 0].item() == pytest.approx(planted(zebra_model, "unflinchingly"), abs=1e-5)
        assert a.scores[3, 0].item() == pytest.approx(planted(zebra_model, "zebras"), abs=1e-5)


def test_top_words_mean_count_and_min_count(zebra_model):
    texts = ["zebra one", "Zebra two", "one more", "zebra"]
    attrs = word_attributions(zebra_model, texts, [0])
    rows = top_words(attrs, 0, k=10)
    words = [w for w, _, _ in rows]
    assert words[0] == "zebra" and rows[0][2] == 3  # lower-cased: "Zebra" counts
    one = dict((w, (s, n)) for w, s, n in rows)["one"]
    assert one == (pytest.approx(planted(zebra_model, "one"), abs=1e-5), 2)
    means = [s for _, s, _ in rows]
    assert means == sorted(means, reverse=True)
    assert {w for w, _, _ in top_words(attrs, 0, min_count=2)} == {"zebra", "one"}
    assert len(top_words(attrs, 0, k=2)) == 2
    with pytest.raises(ValueError, match="not attributed"):
        top_words(attrs, 5)


def test_batching_and_truncation_do_not_change_scores(zebra_model, real_models):
    model = real_models["roberta"]
    texts = ["short one", "a much longer sentence with many more words in it", "mid length text here"]
    a = word_attributions(model, texts, [1, 4], batch_size=64)
    b = word_attributions(model, texts, [1, 4], batch_size=3)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.scores, y.scores, atol=1e-5, rtol=1e-4)
    g1 = word_attributions(model, texts, [1, 4], method="gradient", batch_size=1)
    g3 = word_attributions(model, texts, [1, 4], method="gradient", batch_size=3)
    for x, y in zip(g1, g3):
        torch.testing.assert_close(x.scores, y.scores, atol=1e-5, rtol=1e-4)
    # words past max_length tokens are not scored
    [t] = word_attributions(zebra_model, "one two three four five six", [0], max_length=5)
    assert t.words == ["one", "two", "three"]


def test_to_dict_round_trip(zebra_model):
    [a] = word_attributions(zebra_model, "the zebra ran", [0, 2], method="gradient")
    data = json.loads(json.dumps(a.to_dict()))
    b = WordAttribution.from_dict(data)
    assert (b.text, b.words, b.spans, b.features, b.method) == (a.text, a.words, a.spans, a.features, a.method)
    torch.testing.assert_close(b.scores, a.scores)
    torch.testing.assert_close(b.activation, a.activation)


def test_model_left_in_training_mode_is_restored(zebra_model):
    zebra_model.train()
    try:
        word_attributions(zebra_model, "the zebra", [0])
        assert zebra_model.training
    finally:
        zebra_model.eval()


# ----------------------------------------------------------------------------- errors
def test_errors(zebra_model, real_models):
    n = zebra_model.sparse_head.in_features
    with pytest.raises(ValueError, match=rf"valid indices are 0\.\.{n - 1}"):
        word_attributions(zebra_model, "the zebra", [0, n])
    with pytest.raises(ValueError, match="out of range"):
        word_attributions(zebra_model, "the zebra", -1)
    with pytest.raises(ValueError, match="empty"):
        word_attributions(zebra_model, "the zebra", [])
    with pytest.raises(TypeError, match="string or a list of strings"):
        word_attributions(zebra_model, [1, 2], [0])
    with pytest.raises(TypeError, match="string or a list of strings"):
        word_attributions(zebra_model, torch.zeros(1, 3, 32, 32), [0])
    with pytest.raises(ValueError, match="method must be one of"):
        word_attributions(zebra_model, "the zebra", [0], method="lime")
    with pytest.raises(TypeError, match="image model"):
        occlusion_heatmaps(zebra_model, torch.zeros(1, 3, 32, 32), [0])


# ----------------------------------------------------------------------------- images
@pytest.fixture(scope="module")
def quadrant_model(tmp_path_factory):
    folder = save_image_classifier(tmp_path_factory.mktemp("tiny_img") / "vit", "vit", num_labels=4)
    model = SparseHeadForImageClassification.from_pretrained(folder).eval()
    model.model.vit = QuadrantBackbone(model.sparse_head.in_features)
    return model


def test_heatmap_peaks_in_the_driving_quadrant(quadrant_model):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    arr = (torch.rand(32, 32, 3, generator=g) * 80).to(torch.uint8)
    arr[:16, :16] += 150  # bright top-left quadrant: hiding it lowers feature 0
    image = Image.fromarray(arr.numpy())
    heat = occlusion_heatmaps(quadrant_model, [image, image], [0, 1])
    assert heat.shape == (2, 2, 32, 32)
    flat = heat[0, 0].argmax().item()
    assert flat // 32 < 16 and flat % 32 < 16
    torch.testing.assert_close(heat[0], heat[1])

    # hand computation with non-overlapping 16x16 windows: only the top-left window moves feature 0, by
    # (quadrant mean) - (mean of the per-channel image means), which is what the patch is filled with
    pixels = quadrant_model.processor(images=[image], return_tensors="pt")["pixel_values"]
    heat16 = occlusion_heatmaps(quadrant_model, pixels, [0], patch=16, stride=16)
    drop = pixels[0, :, :16, :16].mean() - pixels[0].mean(dim=(1, 2)).mean()
    torch.testing.assert_close(heat16[0, 0, :16, :16], drop.expand(16, 16), atol=1e-5, rtol=1e-5)
    assert heat16[0, 0, 16:].abs().max() < 1e-6 and heat16[0, 0, :, 16:].abs().max() < 1e-6
    # fill=0.0 paints the processor's mean colour instead
    heat0 = occlusion_heatmaps(quadrant_model, pixels, [0], patch=16, stride=16, fill=0.0)
    assert heat0[0, 0, 0, 0].item() == pytest.approx(pixels[0, :, :16, :16].mean().item(), abs=1e-5)
    # overlapping windows (patch 16, stride 8): pixel (0, 0) is covered by one window only
    heat8 = occlusion_heatmaps(quadrant_model, pixels, [0], patch=16, stride=8)
    assert heat8[0, 0, 0, 0].item() == pytest.approx(drop.item(), abs=1e-5)


def test_overlay_is_an_rgb_image_of_the_image_size(quadrant_model):
    from PIL import Image

    image = Image.new("RGB", (64, 48), (10, 200, 30))
    heat = torch.zeros(32, 32)
    heat[:8, :8] = 2.0
    out = heatmap_overlay(image, heat)
    assert isinstance(out, Image.Image) and out.size == (64, 48) and out.mode == "RGB"
    assert out.getpixel((0, 0)) != (10, 200, 30)  # coloured where the heat is
    assert out.getpixel((63, 47)) == (10, 200, 30)  # untouched where the heat is 0
    assert heatmap_overlay(image, torch.zeros(32, 32)).getpixel((5, 5)) == (10, 200, 30)
    with pytest.raises(ValueError, match="2-D"):
        heatmap_overlay(image, torch.zeros(2, 3, 4))


def test_image_errors(quadrant_model):
    n = quadrant_model.sparse_head.in_features
    with pytest.raises(ValueError, match=rf"valid indices are 0\.\.{n - 1}"):
        occlusion_heatmaps(quadrant_model, torch.zeros(1, 3, 32, 32), [n + 3])
    with pytest.raises(TypeError, match="not strings"):
        occlusion_heatmaps(quadrant_model, ["a picture"], [0])
    with pytest.raises(TypeError, match="text model"):
        word_attributions(quadrant_model, "a picture", [0])


@pytest.mark.parametrize("arch", ["convnext", "resnet"])
def test_heatmaps_on_real_image_archs(arch, tmp_path):
    """One window covering the whole image: every pixel's heat is f(image) - f(image painted its mean colour)."""
    model = SparseHeadForImageClassification.from_pretrained(save_image_classifier(tmp_path / arch, arch)).eval()
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    features = [0, 7]
    heat = occlusion_heatmaps(model, pixels, features, patch=32, batch_size=1)
    flat = pixels.mean(dim=(2, 3), keepdim=True).expand_as(pixels)
    with torch.no_grad():
        drop = (model(pixel_values=pixels, output_contributions=True).features
                - model(pixel_values=flat, output_contributions=True).features)[:, features]
    torch.testing.assert_close(heat, drop[:, :, None, None].expand(2, 2, 32, 32), atol=1e-5, rtol=1e-4)
    assert occlusion_heatmaps(model, pixels, features).shape == (2, 2, 32, 32)  # default 8x8 patches, stride 4
