"""hf_sparse.explain: class features, feature descriptions from the cache, and per-example explanations."""

from __future__ import annotations

import pytest
import torch

from _tiny_models import SENTENCES


@pytest.fixture(scope="module")
def described(fitted_text):
    model, _, _ = fitted_text
    model.describe_features(n_examples=3, n_attribution_examples=6)
    return model


def test_explanation_contributions_add_up_to_the_logit(described):
    model = described
    exp = model.explain(SENTENCES[0])
    enc = model.processor([SENTENCES[0]], return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0]
    probs = logits.softmax(-1)
    assert exp.prediction_id == int(logits.argmax())
    assert exp.logit == pytest.approx(float(logits[exp.prediction_id]), rel=1e-6)
    assert exp.bias + sum(c.contribution for c in exp.contributions) == pytest.approx(exp.logit, rel=1e-5)
    for i, label in model.config.id2label.items():
        assert exp.probabilities[label] == pytest.approx(float(probs[int(i)]), abs=1e-6)
    assert [abs(c.contribution) for c in exp.contributions] == sorted((abs(c.contribution) for c in exp.contributions), reverse=True)
    for c in exp.contributions:
        assert c.contribution == pytest.approx(c.value * c.weight, rel=1e-6, abs=1e-7)
        assert c.description == model.feature_descriptions[c.feature].summary


def test_explain_a_list_a_named_target_and_bad_targets(described):
    model = described
    many = model.explain(SENTENCES[:2])
    assert len(many) == 2 and many[1].input == SENTENCES[1]
    name = model.config.id2label[2]
    assert model.explain(SENTENCES[0], target=name).prediction == name
    with pytest.raises(ValueError, match="unknown label 'nope'"):
        model.explain(SENTENCES[0], target="nope")
    with pytest.raises(ValueError, match="class id in 0..2"):
        model.explain(SENTENCES[0], target=7)


def test_explanation_prints_and_renders_escaped_html(described):
    exp = described.explain("good <script>alert(1)</script>")
    text = str(exp)
    assert "prediction:" in text and "what drives it" in text
    html = exp.to_html()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<tr>") == len(exp.contributions) + len(exp.probabilities) + 2
    assert exp.to_dict()["contributions"][0]["feature"] == exp.contributions[0].feature



def test_explanation_text_is_a_table_with_numbers_lined_up():
    from hf_sparse.explain.explanation import Contribution, Explanation

    exp = Explanation(input="a witty film", prediction="positive", prediction_id=1,
                      probabilities={"negative": 0.03, "positive": 0.97}, bias=-0.1, logit=2.0,
                      contributions=[Contribution(17, 2.31, 0.91, 2.1021, "words: witty"),
                                     Contribution(1203, 12.5, -0.04, -0.5, "")])
    assert str(exp).splitlines() == [
        "input: a witty film",
        "prediction: positive (p=0.970)",
        "probabilities: negative 0.030, positive 0.970",
        "logit of positive = +2.000 = bias -0.100 + the contributions below",
        "feature   value  weight  contrib  what drives it",
        "-------  ------  ------  -------  --------------",
        "     17   2.310   0.910   +2.102  words: witty",
        "   1203  12.500  -0.040   -0.500",
    ]

def test_class_features_shares_match_a_hand_computation(described):
    model = described
    X = model.fit_data.eval_features.features.float()
    W = model.sparse_head.weight
    tables = model.class_features()
    assert [t.label for t in tables] == [model.config.id2label[i] for i in range(3)]
    for c, table in enumerate(tables):
        cols = [f.feature for f in table.features]
        assert sorted(cols) == torch.nonzero(W[c]).flatten().tolist()
        assert [f.weight for f in table.features] == sorted((f.weight for f in table.features), reverse=True)
        mass = {j: float((X[:, j] * W[c, j]).abs().mean()) for j in cols}
        total = sum(mass.values())
        for f in table.features:
            assert f.share == pytest.approx(mass[f.feature] / total, rel=1e-5)


def test_descriptions_read_the_cache_and_round_trip(described, tmp_path):
    from hf_sparse import SparseHeadForSequenceClassification

    model = described
    fit = model.fit_data
    X = fit.eval_features.features
    rows = fit.eval_features.indices
    assert sorted(model.feature_descriptions) == model.sparse_head.active_features.tolist()
    for j, d in model.feature_descriptions.items():
        best = int(torch.argmax(X[:, j]))
        worst = int(torch.argmin(X[:, j]))
        assert d.top_examples[0].row == int(rows[best]) and d.top_examples[0].activation == pytest.approx(float(X[best, j]))
        assert d.top_examples[0].text == fit.eval_dataset[int(rows[best])]["sentence"]
        assert d.bottom_examples[0].row == int(rows[worst])
        assert len(d.top_examples) == 3 and d.top_words, "each used feature gets words"
    model.save_pretrained(tmp_path / "m")
    again = SparseHeadForSequenceClassification.from_pretrained(tmp_path / "m")
    assert again.feature_descriptions.to_dict() == model.feature_descriptions.to_dict()
    assert str(again.explain(SENTENCES[1])) == str(model.explain(SENTENCES[1]))


def test_describe_features_needs_a_fit_and_valid_indices(folders, described):
    from hf_sparse import SparseHeadForSequenceClassification

    fresh = SparseHeadForSequenceClassification.from_pretrained(folders["bert"])
    with pytest.raises(ValueError, match="call model.fit_sparse_head first"):
        fresh.describe_features()
    with pytest.raises(ValueError, match=r"outside 0\.\.31"):
        described.describe_features([40])


def test_image_model_descriptions_write_thumbnails_and_heatmaps(folders, image_data, tmp_path):
    from PIL import Image

    from hf_sparse import SparseHeadForImageClassification

    model = SparseHeadForImageClassification.from_pretrained(folders["vit"])
    train, val = image_data
    model.fit_sparse_head(train, eval_dataset=val, features_per_class=2, n_lambdas=10, cache_dir=tmp_path / "cache")
    descriptions = model.describe_features(n_examples=2, n_heatmaps=1)
    model.save_pretrained(tmp_path / "vit")
    for d in descriptions.values():
        assert d.top_examples[0].heatmap and d.top_examples[0].image
        for e in d.top_examples + d.bottom_examples:
            with Image.open(tmp_path / "vit" / e.image) as im:
                assert max(im.size) <= 96
    card = (tmp_path / "vit" / "README.md").read_text()
    assert all(name in card for name in descriptions.image_files())
    exp = model.explain(Image.new("RGB", (32, 32), (200, 10, 10)))
    assert exp.input.startswith("<image") and exp.contributions
