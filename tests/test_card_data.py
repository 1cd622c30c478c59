"""Card data (`SparseModelCardData`) and a card that tells the truth: user fields checked, saved in the config and
kept by a card refresh; valid Hub metadata; no local path; model-index order; one table for a two-class head; the
path picture's installed head equal to the Results table; limitations only for the audits the card holds; features
per class after an edit; stale feature descriptions flagged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _tiny_models import save_text_classifier, word_dataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

HUB_FIELDS = dict(license="apache-2.0", language="en", base_model="sentence-transformers/all-MiniLM-L6-v2",
                  datasets=["stanfordnlp/sst2"], eval_split="validation")


def _fit(tmp_path_factory, num_labels: int, relax: bool = False):
    from hf_sparse import SparseHeadForSequenceClassification

    root = tmp_path_factory.mktemp(f"card{num_labels}")
    model = SparseHeadForSequenceClassification.from_pretrained(
        save_text_classifier(root / "tiny-base", "bert", num_labels=num_labels))
    data = word_dataset(150).map(lambda r: {"label": r["label"] % num_labels})
    model.fit_sparse_head(data.select(range(110)), eval_dataset=data.select(range(110, 150)),
                          text_column="sentence", features_per_class=2, n_lambdas=12, relax=relax,
                          cache_dir=root / "cache")
    return model, root


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """A two-class tiny model (a softmax head: its two classes are sign-flipped copies), relaxed refit kept."""
    return _fit(tmp_path_factory, 2, relax=True)


@pytest.fixture()
def three(tmp_path_factory):
    """A fresh three-class tiny model (tests edit it)."""
    return _fit(tmp_path_factory, 3)


def _results_row(card: str, head: str) -> list[str]:
    line = next(line for line in card.splitlines() if line.startswith(f"| {head}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


# ----------------------------------------------------------------------------- the typed card data
def test_fields_are_checked_with_clear_errors():
    from hf_sparse.card import SparseModelCardData

    data = SparseModelCardData(datasets="stanfordnlp/sst2", widget=["a fine film"], language=["en"])
    assert data.datasets == ["stanfordnlp/sst2"] and data.widget == [{"text": "a fine film"}] and data.language == "en"
    with pytest.raises(ValueError, match=r"base_model '/tmp/runs/minilm' is not a Hub repo id: .*a local folder is "
                                         r"no Hub id: leave base_model unset"):
        data.base_model = "/tmp/runs/minilm"
    with pytest.raises(ValueError, match=r"datasets entry 'sst 2' is not a Hub repo id"):
        data.update(datasets=["stanfordnlp/sst2", "sst 2"])
    with pytest.raises(ValueError, match=r"license must be a Hub license id such as 'apache-2.0'.*got 'Apache 2.0'"):
        data.license = "Apache 2.0"
    with pytest.raises(ValueError, match=r"language must be ISO 639 codes such as 'en'.*'English' is not one"):
        data.update(language="English")
    with pytest.raises(ValueError, match=r"model_id 'me/x y' is not a Hub repo id"):
        data.model_id = "me/x y"
    with pytest.raises(TypeError, match=r"unknown model-card field 'licence'; the fields a user sets are language, "
                                        r"license,"):
        data.update(licence="mit")
    with pytest.raises(ValueError, match=r"train_size is filled from the model each time the card is rendered"):
        data.update(train_size=3)
    assert data.datasets == ["stanfordnlp/sst2"] and data.license is None  # a refused value changes nothing


def test_card_data_round_trips_through_save_and_load(binary, tmp_path):
    from hf_sparse import SparseHeadForSequenceClassification

    model, _ = binary
    model.model_card_data.update(**HUB_FIELDS)
    model.model_card_data.model_id = "me/tiny-sparse"
    try:
        assert model.config.card_data == dict(HUB_FIELDS, model_id="me/tiny-sparse")  # written through at once
        model.save_pretrained(tmp_path / "m")
        loaded = SparseHeadForSequenceClassification.from_pretrained(tmp_path / "m")
        assert loaded.model_card_data.user_fields() == dict(HUB_FIELDS, model_id="me/tiny-sparse")
    finally:
        model.config.card_data = None


def test_user_fields_survive_a_card_refresh(binary, tmp_path):
    """Saved with card data, then the card is refreshed (as `hf-sparse audit` does) from the reloaded model, with
    the user's own text and metadata in README.md: both kept, and the card data still in the metadata."""
    from huggingface_hub import ModelCard

    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.card import write_model_card

    model, _ = binary
    model.model_card_data.update(**HUB_FIELDS)
    try:
        model.save_pretrained(tmp_path / "m")
    finally:
        model.config.card_data = None
    readme = tmp_path / "m" / "README.md"
    readme.write_text(readme.read_text().replace("---\n\n<!-- hf_sparse:begin", "thumbnail: x.png\n---\n\n"
                                                  "My notes.\n\n<!-- hf_sparse:begin"))
    loaded = SparseHeadForSequenceClassification.from_pretrained(tmp_path / "m")
    write_model_card(loaded, tmp_path / "m", images=False)
    card = ModelCard.load(readme)
    assert (card.data.license, card.data.language, card.data.base_model, card.data.datasets) == (
        "apache-2.0", "en", "sentence-transformers/all-MiniLM-L6-v2", ["stanfordnlp/sst2"])
    assert card.data.thumbnail == "x.png" and "My notes." in card.text


def test_metadata_is_valid_hub_metadata(binary):
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    model, _ = binary
    card = model.create_model_card(card_data=HUB_FIELDS, repo_id="me/tiny-sparse")
    assert model.config.card_data is None  # card_data= is for this card only
    data = ModelCard(str(card)).data.to_dict()
    assert {k: data[k] for k in ("license", "language", "base_model", "datasets")} == {
        "license": "apache-2.0", "language": "en", "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "datasets": ["stanfordnlp/sst2"]}
    assert data["library_name"] == "hf_sparse" and data["pipeline_tag"] == "text-classification"
    ModelCardData(**data)  # huggingface_hub's own checks of the metadata (model-index included) pass
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == "me/tiny-sparse"
    assert {(r.dataset_type, r.dataset_name, r.dataset_split) for r in results} == {
        ("stanfordnlp/sst2", "stanfordnlp/sst2", "validation")}
    assert 'pipeline("text-classification", model="me/tiny-sparse")' in card.text


def test_no_local_path_anywhere_in_the_card_of_a_locally_based_model(binary):
    model, root = binary
    base = model.config.base_model_name_or_path
    assert Path(base).is_absolute() and Path(base).is_dir()
    text = model.create_model_card().content
    assert base not in text and str(root) not in text and "/tmp" not in text
    assert not re.search(r"(?m)^base_model:", text)  # left out of the metadata
    assert "# tiny-base with a sparse linear head" in text
    assert "| base model | `tiny-base` (a local folder, not on the Hub) |" in text
    # the usage example runs as it is, from the model's folder, and says so
    assert "**This model is not on the Hub**" in text and 'model_dir = "."' in text
    assert "path/to/this-model" not in text
    made_from = model.create_model_card(card_data={"base_model": "sentence-transformers/all-MiniLM-L6-v2"}).content
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in made_from and base not in made_from
    assert ("`tiny-base` (a local folder, not on the Hub), made from [sentence-transformers/all-MiniLM-L6-v2]"
            "(https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)") in made_from


# ----------------------------------------------------------------------------- the card tells the truth
def test_model_index_sparse_first_dense_baseline_last(binary):
    model, _ = binary
    card = model.create_model_card(card_data={"datasets": ["stanfordnlp/sst2"]})
    sparse, dense = model.config.sparse_metrics, model.config.dense_metrics
    assert [(r.metric_name, r.metric_value) for r in card.data.eval_results] == [
        ("accuracy", sparse["accuracy"]), ("features per class", 2.0),
        ("accuracy (dense baseline head, not this model)", dense["accuracy"])]
    assert {r.dataset_split for r in card.data.eval_results} == {"eval"}  # hf_sparse's split without eval_split


def test_two_class_head_shows_one_table_and_one_plot(binary):
    from hf_sparse.card.render import render_model_card

    model, _ = binary
    W = model.sparse_head.weight
    assert bool((W[0] == -W[1]).all())  # what makes the second table a copy
    text, figures = render_model_card(model)
    try:
        assert text.count("\n### Class ") == 1
        assert "### Class `label\\_1` against `label\\_0`" in text
        assert "A weight above 0 pushes towards class\n`label\\_1`, a weight below 0 towards class `label\\_0`." in text
        panels = [ax for ax in figures["card_assets/class_weights.png"].axes if ax.axison]
        assert [ax.get_title() for ax in panels] == ["weight > 0 pushes towards class 'label_1', weight < 0 towards class 'label_0'"]
    finally:
        from hf_sparse.plotting import close

        close(figures)


def test_two_class_head_keeps_two_tables_when_the_classes_differ(binary):
    model, _ = binary
    W, b = model.sparse_head.weight.clone(), model.sparse_head.bias.clone()
    selection = dict(model.config.selection)
    try:
        W2 = W.clone()
        W2[0] = W2[0] * 0.5  # no longer a mirror image
        model.install_sparse_head(W2, b, selection=selection)
        text = model.create_model_card(images=False).content
        assert text.count("\n### Class ") == 2 and " against " not in text
    finally:
        model.install_sparse_head(W, b, selection=selection)


def test_path_picture_marks_the_installed_head_with_the_results_table_figure(binary):
    from hf_sparse.card.plots import plot_path_data
    from hf_sparse.card.render import path_plot_data
    from hf_sparse.plotting import close

    model, _ = binary
    config = model.config
    assert config.selection["relax_gain"]["kept"]  # the installed head is the relaxed refit, off the path
    data = path_plot_data(model)
    installed = data["installed"]
    accuracy = config.sparse_metrics["accuracy"]
    assert installed["accuracy"] == accuracy and installed["split"] == "eval"
    index = config.selection["index"]
    assert installed["lambda"] == config.path_summary[index]["lambda"]
    assert installed["features_per_class"] == model.head_summary()["mean_features_per_class"]
    assert data["lambdas"] == [r["lambda"] for r in config.path_summary]  # every recorded point
    # the whole path is recorded by default (whole_path=True): points past the installed one, and no stop note
    assert index < len(config.path_summary) - 1 and not data["note"]
    card = model.create_model_card().content
    assert _results_row(card, "sparse (this model)")[1] == f"{accuracy:.2%}"
    assert f"now:\n{accuracy:.2%} eval accuracy (" in card and "denser points were not fitted" not in card
    fig = plot_path_data(data)
    try:
        top = fig.axes[0]
        stars = [line for line in top.get_lines() if line.get_marker() == "*"]
        assert len(stars) == 1 and list(stars[0].get_ydata()) == [accuracy]
        assert stars[0].get_label() == f"installed head: {installed['text']}"
        assert installed["text"].startswith(f"{accuracy:.2%} eval accuracy (") and "relaxed refit)" in installed["text"]
    finally:
        close([fig])


def test_a_path_stopped_at_its_target_says_so(three):
    from hf_sparse.card.render import path_plot_data

    model, _ = three
    model.refit_sparse_head(whole_path=False)
    data = path_plot_data(model)
    assert model.config.selection["index"] == len(model.config.path_summary) - 1
    assert "denser points were not fitted" in data["note"]
    assert "denser points were not fitted" in model.create_model_card().content
    # the note gives the fit's recorded reason ...
    assert model.config.selection["path_stop_reason"].startswith("the target of 2 features per class was reached")
    assert data["note"].startswith("the fit stopped the path early because the target of 2 features per class")
    # ... a whole grid whose last point happens to be the selected one is not called stopped ...
    selection = model.config.selection
    model.config.selection = {**selection, "path_stop_reason": None}
    assert path_plot_data(model)["note"] is None
    # ... and a checkpoint saved before the reason was recorded falls back to what those fits always did
    model.config.selection = {k: v for k, v in selection.items() if k != "path_stop_reason"}
    assert path_plot_data(model)["note"].startswith("the fit stopped the path at the first point with 2 features")
    model.config.selection = selection


class _Report:
    """A recorded audit stand-in: the card asks it only for its Markdown."""

    def __init__(self, text):
        self.text = text

    def to_markdown(self, assets=None, redact=False):
        return self.text


def test_limitations_mention_only_the_audits_the_card_contains(binary):
    model, _ = binary
    saved = model.audit_reports
    try:
        model.audit_reports = {}
        plain = model.create_model_card(images=False).content
        limitations = plain[plain.index("## Limitations"):plain.index("## Framework versions")]
        assert "identity" not in limitations and "subgroup" not in limitations
        assert "No audit is recorded in this card" in limitations
        model.audit_reports = {"identity": _Report("### Identity-term audit\n\nstub")}
        audited = model.create_model_card(images=False).content
        limitations = audited[audited.index("## Limitations"):audited.index("## Framework versions")]
        assert "The identity-term audit uses the project's templates and term lists" in limitations
        assert "subgroup" not in limitations and "No audit is recorded" not in limitations
    finally:
        model.audit_reports = saved


def test_features_per_class_follow_the_head_after_an_edit(three):
    model, _ = three
    config = model.config
    recorded = config.sparse_metrics["features_per_class"]
    feature = model.sparse_head.active_features.tolist()[0]
    model.edit_features(remove=[feature])
    summary = model.head_summary()
    now = summary["mean_features_per_class"]
    assert now < recorded and config.sparse_metrics["features_per_class"] == recorded  # the record is stale
    card = model.create_model_card(dataset_name="tiny_words", images=False)
    text = card.content
    assert _results_row(text, "sparse (this model)")[-2:] == [f"{now:.3g}", str(summary["n_features"])]
    assert f"each class rests on\n{now:.3g} features on average" in text
    index = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert index["features per class"] == pytest.approx(now)
    assert index["accuracy"] == config.sparse_metrics["accuracy"]  # re-measured by the edit on the same split
    # the recorded count appears only as the fit's rule, which the card says the edit changed
    lines = [line for line in text.splitlines() if f"{recorded:.3g} features per class" in line]
    assert lines == ["| selection | exactly 2 features per class; the head was edited after the fit (see *Edits to "
                     "the head*) |"]


def test_sparse_figures_measured_before_an_edit_are_not_shown(three):
    """An edit that did not measure the evaluation split again leaves `sparse_metrics` describing the old head:
    the card prints none of them as this model's."""
    model, _ = three
    config = model.config
    config.edits = [{"removed": [1], "split": "other"}]
    config.sparse_metrics = dict(config.sparse_metrics, nnz=config.sparse_metrics["nnz"] + 1)
    card = model.create_model_card(dataset_name="tiny_words", images=False)
    row = _results_row(card.content, "sparse (this model; measured before its last edit, not shown)")
    assert row[1] == "n/a"
    assert [r.metric_name for r in card.data.eval_results] == [
        "features per class", "accuracy (dense baseline head, not this model)"]


def test_stale_feature_descriptions_are_flagged_above_the_tables(binary):
    model, _ = binary

    class StaleDescriptions(dict):
        stale = True
        stale_reason = "the head was edited after describe_features"

    saved = model.feature_descriptions
    try:
        model.feature_descriptions = StaleDescriptions()
        text = model.create_model_card(images=False).content
    finally:
        model.feature_descriptions = saved
    line = ("> **Stale descriptions:** the feature descriptions below no longer match this model (the head was "
            "edited after describe\\_features); run `model.describe_features()` again to refresh them.")
    assert line in text
    assert text.index(line) < text.index("### Class ")
    assert "Stale descriptions" not in model.create_model_card(images=False).content


# ----------------------------------------------------------------------------- the CLI
def test_cli_card_sets_and_saves_card_data(binary, tmp_path, capsys):
    from huggingface_hub import ModelCard

    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.cli import main

    model, _ = binary
    model.save_pretrained(tmp_path / "m")
    code = main(["card", str(tmp_path / "m"), "--no-images", "--license", "apache-2.0", "--language", "en",
                 "--base-model", "sentence-transformers/all-MiniLM-L6-v2", "--dataset-id", "stanfordnlp/sst2",
                 "--model-id", "me/tiny-sparse", "--eval-split", "validation"])
    assert code == 0 and "card data saved in its config.json" in capsys.readouterr().out
    loaded = SparseHeadForSequenceClassification.from_pretrained(tmp_path / "m")  # manifest still checks out
    assert loaded.model_card_data.user_fields() == dict(HUB_FIELDS, model_id="me/tiny-sparse")
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert card.data.license == "apache-2.0" and 'model="me/tiny-sparse"' in card.text
    assert main(["card", str(tmp_path / "m"), "--no-images", "--dataset-id", "not a dataset"]) != 0
    err = capsys.readouterr().err
    assert "--dataset-id: datasets entry 'not a dataset' is not a Hub repo id" in err
    # a card written elsewhere takes the options for itself and leaves the model's config as it was
    config = (tmp_path / "m" / "config.json").read_text()
    assert main(["card", str(tmp_path / "m"), "--no-images", "--output", str(tmp_path / "preview"),
                 "--license", "mit"]) == 0
    assert "MODEL_DIR's config.json is unchanged" in capsys.readouterr().out
    assert (tmp_path / "m" / "config.json").read_text() == config
    assert ModelCard.load(tmp_path / "preview" / "README.md").data.license == "mit"
