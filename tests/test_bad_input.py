"""Bad input gets a clear error, and no user file is lost (issue 13: items 6, 8, 9 and "errors that should be
clear"). Each test fails on the code before the fix (commit 09ff864) and passes after it.

- saving: `save_pretrained` writes atomically (a crash leaves the old checkpoint), refuses the base model's folder
  and a folder holding another model; `hf-sparse fit -o` refuses MODEL's folder and a non-empty folder without
  --overwrite;
- processors are loaded with the model's own trust_remote_code (no interactive prompt from an `auto_map`);
- a card's repo_id is checked, and invisible / direction-changing characters are shown in cards and HTML;
- the listed bad inputs (NaN accuracy drop, a list as feature_descriptions.json, labels {3, 7} on 8 classes, a
  header-only CSV, a missing --target-label, a pandas DataFrame) get errors that say what to do.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from _tiny_models import cli_runner, save_text_classifier, word_dataset

NUL, RLO, ZWSP, LRI = "\x00", "\u202e", "\u200b", "\u2066"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny 3-label BERT classifier folder (labels label_0..label_2) and a small dataset (column `sentence`)."""
    root = tmp_path_factory.mktemp("bad_input")
    return save_text_classifier(root / "bert", "bert", num_labels=3), word_dataset(60)


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory):
    """An hf_sparse checkpoint of the tiny model (not fitted: the sparse head holds the dense weights)."""
    from hf_sparse import SparseHeadForSequenceClassification

    folder = tmp_path_factory.mktemp("ckpt") / "sparse"
    SparseHeadForSequenceClassification.from_pretrained(tiny[0]).save_pretrained(folder)
    return folder


def _load(path, **kwargs):
    from hf_sparse import SparseHeadForSequenceClassification

    return SparseHeadForSequenceClassification.from_pretrained(path, **kwargs)


def _snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _rehash_manifest(folder: Path) -> None:
    """Recompute the sha256 of every file the checkpoint's manifest lists (as if it had been saved like this)."""
    path = folder / "hf_sparse_manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in manifest["files"]}
    path.write_text(json.dumps(manifest))


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".hf_sparse-" in p.name)


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """`main(argv)` in this process, in `tmp_path`: returns (exit status, stdout, stderr)."""
    import datasets

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_SPARSE_FEATURES_CACHE", str(tmp_path / "features"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")

    return cli_runner(capsys)


def _one_line_error(result, command: str, *needles: str) -> str:
    code, _, err = result
    assert code != 0, result
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, result
    assert lines[0].startswith(f"hf-sparse {command}: error: "), result
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _write_csv(path: Path, dataset) -> Path:
    dataset.to_pandas().rename(columns={"sentence": "text"}).to_csv(path, index=False)
    return path


# ----------------------------------------------------------------------------- item 6: no lost files
def test_save_pretrained_refuses_the_base_models_folder(tiny):
    folder = tiny[0]
    before = _snapshot(folder)
    model = _load(folder)
    with pytest.raises(ValueError, match="is the folder of the model this sparse head was built on"):
        model.save_pretrained(folder)
    with pytest.raises(ValueError, match="is the folder of the model"):
        model.save_pretrained(folder, head_only=True)
    assert _snapshot(folder) == before  # the base classifier is untouched
    assert _leftovers(folder.parent) == []


def test_save_pretrained_refuses_a_folder_holding_another_model(tiny, tmp_path):
    other = shutil.copytree(tiny[0], tmp_path / "another_classifier")
    before = _snapshot(other)
    with pytest.raises(ValueError, match=r"holds another model \(config.json of model_type 'bert'"):
        _load(tiny[0]).save_pretrained(other)
    assert _snapshot(other) == before


def test_a_save_that_fails_midway_leaves_the_old_checkpoint(tiny, tmp_path, monkeypatch):
    import hf_sparse.card

    out = tmp_path / "out"
    model = _load(tiny[0])
    model.save_pretrained(out)
    (out / "notes.txt").write_text("my notes")
    before = _snapshot(out)
    x = torch.randn(4, model.sparse_head.in_features)
    old_logits = model.sparse_head(x)

    model.install_sparse_head(torch.zeros(3, model.sparse_head.in_features), torch.tensor([1.0, 2.0, 3.0]))

    def crash(*args, **kwargs):  # the card is written after the weights, the config and the manifest
        raise RuntimeError("disk full")

    monkeypatch.setattr(hf_sparse.card, "write_model_card", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        model.save_pretrained(out)
    assert _snapshot(out) == before  # not a mix: every file as it was
    assert _leftovers(tmp_path) == []  # and no temporary folder left behind
    reloaded = _load(out)
    torch.testing.assert_close(reloaded.sparse_head(x), old_logits)


def test_save_pretrained_replaces_the_checkpoint_and_keeps_the_users_files(tiny, tmp_path):
    out = tmp_path / "out"
    model = _load(tiny[0])
    model.audit_reports = {}
    model.save_pretrained(out)
    (out / "notes.txt").write_text("my notes")
    (out / "extra").mkdir()
    (out / "extra" / "plot.png").write_bytes(b"png")
    readme = (out / "README.md").read_text()
    (out / "README.md").write_text(readme + "\nMy own paragraph.\n")
    (out / "feature_descriptions.json").write_text("{}")  # stale: from an earlier save of another head
    weight = torch.zeros(3, model.sparse_head.in_features)
    weight[1, 5] = 2.0
    model.install_sparse_head(weight, torch.tensor([0.5, -0.5, 0.0]))
    model.save_pretrained(out)
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "extra" / "plot.png").read_bytes() == b"png"
    assert "My own paragraph." in (out / "README.md").read_text()
    assert not (out / "feature_descriptions.json").exists()  # a stale file of the old checkpoint is dropped
    assert _leftovers(tmp_path) == []
    reloaded = _load(out)
    assert reloaded.sparse_head.nnz == 1
    torch.testing.assert_close(reloaded.sparse_head.weight, weight)


def test_fit_refuses_a_non_empty_output_without_overwrite(tiny, cli, tmp_path):
    csv = _write_csv(tmp_path / "train.csv", tiny[1])
    out = tmp_path / "out"
    out.mkdir()
    user_files = {"audit.json": '{"mine": 1}', "feature_descriptions.json": '{"mine": 2}', "config.json": "{}"}
    for name, text in user_files.items():
        (out / name).write_text(text)
    line = _one_line_error(cli("fit", tiny[0], csv, "--lam", "0.1", "--output", "out"), "fit",
                           "--output out is not empty", "audit.json", "--overwrite")
    assert "choose a new or empty folder" in line
    assert {p.name: p.read_text() for p in out.iterdir()} == user_files


def test_fit_refuses_to_write_into_the_models_folder(tiny, cli, tmp_path):
    csv = _write_csv(tmp_path / "train.csv", tiny[1])
    before = _snapshot(tiny[0])
    _one_line_error(cli("fit", tiny[0], csv, "--lam", "0.1", "--output", tiny[0], "--overwrite"), "fit",
                    "is the folder of MODEL", "would overwrite it")
    assert _snapshot(tiny[0]) == before


def test_fit_overwrite_replaces_the_model_and_keeps_other_files(tiny, cli, tmp_path):
    csv = _write_csv(tmp_path / "train.csv", tiny[1])
    argv = ["fit", tiny[0], csv, "--features-per-class", "1", "--n-lambdas", "8", "--no-describe", "--no-progress",
            "--output", "out"]
    first = cli(*argv)
    assert first[0] == 0, first
    (tmp_path / "out" / "notes.txt").write_text("my notes")
    code, out, err = cli(*argv[:-1], "out", "--overwrite")
    assert code == 0, err
    assert (tmp_path / "out" / "notes.txt").read_text() == "my notes"
    assert _load(tmp_path / "out").config.selection["value"] == 1
    assert "--overwrite" in cli("fit", "--help")[1]


# ----------------------------------------------------------------------------- item 8: trust_remote_code
def test_a_processor_with_remote_code_is_never_prompted_for(tiny, checkpoint, tmp_path, monkeypatch):
    """A checkpoint whose tokenizer_config.json has an auto_map: loading its tokenizer must not ask on stdin (the
    model was loaded without trust_remote_code), and the code is not run."""
    folder = shutil.copytree(checkpoint, tmp_path / "remote")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    _rehash_manifest(folder)
    asked = []
    monkeypatch.setattr(builtins, "input", lambda *args: asked.append(args) or "n")
    model = _load(folder)
    explanation = model.explain("a good and warm film")  # the tokenizer comes from the base model instead
    assert asked == []
    assert explanation.prediction in {"label_0", "label_1", "label_2"}


def test_processors_are_loaded_with_the_models_own_trust_remote_code(checkpoint, monkeypatch):
    from hf_sparse import SparseHeadForSequenceClassification

    calls = []

    def record(path, **kwargs):
        calls.append(kwargs)
        return object()

    monkeypatch.setattr(SparseHeadForSequenceClassification._processor_auto_class, "from_pretrained", record)
    assert _load(checkpoint).processor is not None
    assert calls[-1]["trust_remote_code"] is False
    assert _load(checkpoint, trust_remote_code=True).processor is not None
    assert calls[-1]["trust_remote_code"] is True


# ----------------------------------------------------------------------------- item 9: cards and HTML
def test_a_repo_id_that_is_not_one_is_refused(checkpoint):
    model = _load(checkpoint)
    for bad in ['me/x")\n```\nimport os; os.system("rm -rf ~")\n```', "a/b/c", "me/" + "x" * 100, "me/x y"]:
        with pytest.raises(ValueError, match="is not a Hub repo id: give 'name' or 'owner/name'"):
            model.create_model_card(repo_id=bad)
    card = model.create_model_card(repo_id="me/tiny-sparse").text
    assert 'model="me/tiny-sparse"' in card


def test_invisible_characters_are_shown_in_cards_and_html(checkpoint):
    from hf_sparse.explain.explanation import Contribution, Explanation
    from hf_sparse.text_safety import escape_markdown, visible_text

    hidden = f"good{RLO}txt.exe{NUL} fi{ZWSP}lm {LRI}x"
    shown = "good⟨U+202E⟩txt.exe⟨U+0000⟩ fi⟨U+200B⟩lm ⟨U+2066⟩x"
    assert visible_text(hidden) == shown
    assert visible_text("plain text, é, 中文\tand\nlines") == "plain text, é, 中文\tand\nlines"
    assert escape_markdown(f"<b>{RLO}</b>") == "&lt;b&gt;⟨U+202E⟩&lt;/b&gt;"

    model = _load(checkpoint)
    model.config.base_model_name_or_path = f"owner/cl{RLO}ean{ZWSP}{NUL}"
    card = model.create_model_card().text
    for ch in (RLO, ZWSP, NUL):
        assert ch not in card
    assert "cl⟨U+202E⟩ean⟨U+200B⟩⟨U+0000⟩" in card

    exp = Explanation(input=hidden, prediction=f"pos{RLO}", prediction_id=1, probabilities={f"pos{RLO}": 0.9},
                      bias=0.0, logit=1.0, contributions=[Contribution(3, 1.0, 1.0, 1.0, f"words: a{LRI}<b>")])
    html = exp.to_html()
    for ch in (RLO, ZWSP, NUL, LRI):
        assert ch not in html and ch not in str(exp)
    assert shown in html and "pos⟨U+202E⟩" in html and "a⟨U+2066⟩&lt;b&gt;" in html


# ----------------------------------------------------------------------------- errors that should be clear
def test_select_with_a_nan_accuracy_drop_says_what_is_wrong():
    from hf_sparse.solver import fit_path

    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 4, generator=g)
    y = (X[:, 0] > 0).long()
    path = fit_path(X, y, n_lambdas=4, X_val=X, y_val=y)
    with pytest.raises(ValueError, match="max_accuracy_drop must be a non-negative number; got nan"):
        path.select(max_accuracy_drop=float("nan"))


def test_feature_descriptions_that_are_a_list(checkpoint, tmp_path):
    from hf_sparse.explain.descriptions import FeatureDescriptions

    (tmp_path / "feature_descriptions.json").write_text(json.dumps([{"feature": 1}]))
    with pytest.raises(ValueError, match="expected a JSON object with format 'hf_sparse.feature_descriptions', got "
                                         "a JSON list"):
        FeatureDescriptions.load(tmp_path)
    folder = shutil.copytree(checkpoint, tmp_path / "ckpt")
    (folder / "feature_descriptions.json").write_text("[]")
    manifest = json.loads((folder / "hf_sparse_manifest.json").read_text())
    manifest["files"]["feature_descriptions.json"] = ""
    (folder / "hf_sparse_manifest.json").write_text(json.dumps(manifest))
    _rehash_manifest(folder)
    with pytest.raises(ValueError, match=r"feature_descriptions.json is not readable: .* got a JSON list\. Delete it"):
        _load(folder)


def test_labels_that_leave_classes_empty_are_refused(tmp_path):
    from datasets import Dataset

    folder = save_text_classifier(tmp_path / "eight", "bert", num_labels=8)
    data = Dataset.from_dict({"text": ["good film", "bad film", "warm", "cold"] * 5, "label": [3, 7] * 10})
    model = _load(folder)
    with pytest.raises(ValueError, match=r"train_dataset has no example of 6 of this model's 8 classes "
                                         r"\(\['label_0', 'label_1', 'label_2', 'label_4', 'label_5', 'label_6'\]\): "
                                         r"its labels are only \[3, 7\]"):
        model.fit_sparse_head(data, features_per_class=1, n_lambdas=4, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match=r"num_labels=2\) with the labels renumbered 0\.\.1"):
        model.fit_sparse_head(data, features_per_class=1, n_lambdas=4, cache_dir=tmp_path / "cache")


def test_a_header_only_csv(tiny, cli, tmp_path):
    (tmp_path / "header.csv").write_text("text,label\n")
    _one_line_error(cli("fit", tiny[0], "header.csv", "--lam", "0.1", "--output", "o"), "fit",
                    "DATASET header.csv has no data rows (only the header line 'text,label')")
    assert not (tmp_path / "o").exists()


def test_audit_names_the_option_not_the_python_argument(checkpoint, cli):
    line = _one_line_error(cli("audit", checkpoint, "--suite", "identity", "--no-save"), "audit", "--target-label")
    assert "target_label" not in line
    line = _one_line_error(cli("audit", checkpoint, "--suite", "identity", "--target-label", "nope", "--no-save"),
                           "audit", "--target-label 'nope' is not a label of this model")
    assert "target_label" not in line


def test_a_pandas_dataframe_is_accepted(tiny, tmp_path):
    from hf_sparse.features import extract_features

    folder, data = tiny
    train = data.select(range(40))
    kwargs = dict(text_column="sentence", features_per_class=1, n_lambdas=6, cache_dir=tmp_path / "cache")
    from_pandas = _load(folder)
    from_pandas.fit_sparse_head(train.to_pandas(), **kwargs)
    reference = _load(folder)
    reference.fit_sparse_head(train, **kwargs)
    torch.testing.assert_close(from_pandas.sparse_head.weight, reference.sparse_head.weight)
    assert from_pandas.config.sparse_metrics["n_examples"] == 40
    with pytest.raises(TypeError, match="Dataset.from_pandas"):
        extract_features(reference.model, train.to_pandas(), reference.processor, text_column="sentence")
