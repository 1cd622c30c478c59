"""hf_sparse.card: the model card, its pictures, escaping of dataset text, in-place updates and the offline push."""

from __future__ import annotations

import re
import shutil
from types import SimpleNamespace

import pytest

from hf_sparse.card import escape_markdown, redact_text
from hf_sparse.explain.descriptions import FeatureDescription, FeatureExample

HOSTILE = "<script>alert(1)</script> | ![x](http://evil.example/x.png) **bold** [link](javascript:x)"

# The whole card, as setfit tests its cards: every section, in order, with the model's own figures.
CARD_PATTERN = re.compile(
    r"^---\n"
    r"(?=[\s\S]*library_name: hf_sparse\n)(?=[\s\S]*pipeline_tag: text-classification\n)[\s\S]*?"
    r"---\n\n"
    r"<!-- hf_sparse:begin [^\n]*-->\n\n"
    r"# bert with a sparse linear head\n\n"
    r"\*\*bert\*\* \(a local folder, not on the Hub\) with its dense classification layer replaced by a \*\*sparse "
    r"linear head\*\*: each class rests on\n"
    r"2 features on average \(\d+ distinct features of the 32 the encoder\ngives\)[\s\S]*?"
    r"## How it was made\n\n\| \| details \|\n\| --- \| --- \|\n"
    r"\| base model \| `bert` \(a local folder, not on the Hub\) \|\n"
    r"\| features \| input of classifier \(the final nn\.Linear of BertForSequenceClassification\) \|\n"
    r"\| head \| elastic net, family `multinomial`, alpha 0\.99, lambda [0-9.e-]+ \|\n"
    r"\| selection \| exactly 2 features per class \|\n"
    r"\| training examples \| 110 \(label\\_0: \d+, label\\_1: \d+, label\\_2: \d+\) \|\n[\s\S]*?"
    r"## How to use it\n\n```python\n[\s\S]*?pipeline\(\"text-classification\", model=\"user/tiny\"\)[\s\S]*?```\n\n"
    r"## Results\n\nMeasured on the evaluation data given to the fit \(`eval_dataset`, 40 examples\)\.\n\n"
    r"\| head \| accuracy \| loss \| features per class \| features used \|\n[^\n]+\n"
    r"\| sparse \(this model\) \| \d+\.\d\d% \| [0-9.]+ \| 2 \| \d+ \|\n"
    r"\| dense \(the original head: a baseline, not this model\) \| \d+\.\d\d% \| [0-9.]+ \| 32 \| 32 \|\n\n"
    r"!\[Accuracy and features per class along the regularization path\]\(card_assets/path\.png\)\n\n"
    r"The lines are the regularization path's points as fitted \(before any refit\); the star is the head installed "
    r"now:\n\d+\.\d\d% eval accuracy[^\n]*, the figure of the table above\.[^\n]*\n\n"
    r"## What each class rests on\n[\s\S]*?"
    r"!\[The weights of each class's features\]\(card_assets/class_weights\.png\)\n"
    r"(?:\n### Class `[^`]+` \(bias [-+][0-9.]+\)\n\n\| feature \| weight \| share \| what drives it \| most activating examples \|\n"
    r"\| ---: \| ---: \| ---: \| --- \| --- \|\n(?:\| \d+ \| [-+][0-9.]+ \| \d+% \| [^\n]+ \| [^\n]+ \|\n){2}){3}"
    r"\n## Limitations\n\n(?:- [^\n]+\n)+\n## Framework versions\n\n- python: [^\n]+\n- hf_sparse: [^\n]+\n"
    r"- transformers: [^\n]+\n- torch: [^\n]+\n[\s\S]*?"
    r"## Citation\n\n```bibtex\n@inproceedings\{wong2021leveraging,[\s\S]*?```\n\n"
    r"<!-- hf_sparse:end -->\n$"
)


@pytest.fixture(scope="module")
def described(fitted_text):
    model, _, _ = fitted_text
    model.describe_features(n_examples=2, n_attribution_examples=4)
    return model


def _linked_files(card: str) -> set[str]:
    return set(re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", card))


def test_whole_card_matches_the_pattern(described):
    card = described.create_model_card(repo_id="user/tiny")
    assert CARD_PATTERN.match(card.content), card.content
    assert card.data.library_name == "hf_sparse" and "sparse-linear-head" in card.data.tags


def test_model_index_reports_the_sparse_head_first_and_the_dense_head_as_a_labelled_baseline(described):
    card = described.create_model_card(dataset_name="tiny_words")  # no repo id: model-index still needs a name
    results = [(r.metric_name, r.metric_type, r.metric_value) for r in card.data.eval_results]
    sparse, dense = described.config.sparse_metrics, described.config.dense_metrics
    assert results == [("accuracy", "accuracy", sparse["accuracy"]),
                       ("features per class", "features_per_class", 2.0),
                       ("accuracy (dense baseline head, not this model)", "accuracy", dense["accuracy"])]
    assert {r.dataset_name for r in card.data.eval_results} == {"tiny_words"}
    assert card.data.datasets == ["tiny_words"] and "model-index" in card.content


def test_saved_card_images_exist_and_are_all_referenced(described, tmp_path):
    described.save_pretrained(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    linked = _linked_files(card)
    assert {"card_assets/path.png", "card_assets/class_weights.png"} <= linked
    for name in linked:
        assert (tmp_path / "m" / name).is_file(), name
    pngs = {str(p.relative_to(tmp_path / "m")) for p in (tmp_path / "m").rglob("*.png")}
    assert pngs == linked


def test_hostile_dataset_text_is_escaped(described):
    model = described
    saved = model.feature_descriptions
    j = model.sparse_head.active_features.tolist()[0]
    try:
        hostile = FeatureDescription(feature=j, top_examples=[FeatureExample(row=0, activation=1.0, text=HOSTILE)],
                                     top_words=[("<img src=x onerror=alert(1)>", 1.0, 3), ("|", 0.5, 2)])
        model.feature_descriptions = type(saved)({**saved, j: hostile})
        card = model.create_model_card().content
    finally:
        model.feature_descriptions = saved
    assert "<script>" not in card and "<img" not in card and "**bold**" not in card
    assert "![x](" not in card and "[link](" not in card  # brackets escaped: no image or link from a row
    assert "&lt;script&gt;" in card and "&lt;img src=x onerror=alert(1)&gt;" in card
    rows = [line for line in card.splitlines() if line.startswith(f"| {j} |")]
    assert rows and all(line.count(" | ") == 4 for line in rows), "a '|' in the text would add table cells"


def test_escape_and_redact_by_hand():
    assert escape_markdown("a|b <i>x</i>\nnew *line*") == "a\\|b &lt;i&gt;x&lt;/i&gt; new \\*line\\*"
    assert redact_text("You BASTARD, bullshitting!") == "You B******, b***********!"
    assert redact_text("a fine film") == "a fine film"


def test_redaction_option_masks_examples_and_warns(described):
    model = described
    saved = model.feature_descriptions
    j = model.sparse_head.active_features.tolist()[0]
    try:
        model.feature_descriptions = type(saved)({**saved, j: FeatureDescription(
            feature=j, top_examples=[FeatureExample(row=0, activation=1.0, text="what a bastard")])})
        plain = model.create_model_card().content
        masked = model.create_model_card(redact=True).content
    finally:
        model.feature_descriptions = saved
    assert "what a bastard" in plain and "Content warning" not in plain
    assert "what a b\\*\\*\\*\\*\\*\\*" in masked and "bastard" not in masked and "Content warning" in masked


def test_existing_card_is_updated_in_place(described, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: mit\nlibrary_name: other\n---\n\n# My notes\n\nKeep this.\n")
    described.save_pretrained(folder)
    first = (folder / "README.md").read_text()
    assert "license: mit" in first and "library_name: hf_sparse" in first and "# My notes\n\nKeep this." in first
    edited = first.replace("Keep this.", "Keep this, edited.") + "\nA footer I wrote.\n"
    (folder / "README.md").write_text(edited)
    described.save_pretrained(folder)
    second = (folder / "README.md").read_text()
    assert "Keep this, edited." in second and second.rstrip().endswith("A footer I wrote.")
    assert second.count("<!-- hf_sparse:begin") == 1 and second.count("<!-- hf_sparse:end -->") == 1


def test_offline_push_uploads_card_and_every_image_and_keeps_the_remote_card(described, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    hub = tmp_path / "hub"
    remote_card = tmp_path / "remote_README.md"
    remote_card.write_text("---\nlicense: apache-2.0\n---\n\nWritten on the Hub by a person.\n")

    def create_repo(self, repo_id, **kwargs):
        (hub / repo_id).mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        shutil.copytree(folder_path, hub / repo_id, dirs_exist_ok=True)
        return "commit"

    def hf_hub_download(self, *, repo_id, filename, **kwargs):
        assert filename == "README.md"
        return str(remote_card)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(HfApi, "hf_hub_download", hf_hub_download)
    described.push_to_hub("user/tiny-card")
    repo = hub / "user" / "tiny-card"
    card = (repo / "README.md").read_text()
    assert "Written on the Hub by a person." in card and "license: apache-2.0" in card
    assert 'model="user/tiny-card"' in card
    linked = _linked_files(card)
    assert linked and all((repo / name).is_file() for name in linked)
    assert (repo / "feature_descriptions.json").is_file()


def test_card_without_images_links_none(described, tmp_path):
    card = described.create_model_card(images=False).content
    assert "![" not in card and "## What each class rests on" in card
    folder = tmp_path / "m"
    folder.mkdir()
    from hf_sparse.card import write_model_card

    written = write_model_card(described, folder, images=False)
    assert written == ["README.md"] and not list(folder.rglob("*.png"))
