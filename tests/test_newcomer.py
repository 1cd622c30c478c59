"""Issue 15, items 7 and 10: what a newcomer trips on.

- `hf-sparse audit` records the report in the model folder (audit.json, manifest, card) without writing the weights
  again; `--save-model` saves the whole model as before;
- `class_features()` of a reloaded checkpoint has shares (from the saved feature statistics), and says where from;
- `model.safetensors` (and the checkpoint folder) get the same permissions as the other files of a save;
- `make test-quick` runs the tests not marked slow.

All offline, on tiny models from configs (`tests/_tiny_models.py`).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from _tiny_models import cli_runner, random_sparse_head, tiny_sparse_model, word_dataset

ROOT = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def saved(tmp_path):
    """A tiny two-class sparse model with a random head and feature statistics, saved to tmp_path/out."""
    model = tiny_sparse_model(tmp_path)
    weight = random_sparse_head(model, seed=3, per_class=4)
    d = model.sparse_head.in_features
    g = torch.Generator().manual_seed(1)
    mean, std = torch.randn(d, generator=g), torch.rand(d, generator=g) + 0.5
    model.install_sparse_head(weight, model.sparse_head.bias.detach().clone(), feature_mean=mean, feature_std=std)
    out = tmp_path / "out"
    model.save_pretrained(out)
    return out, weight, mean, std


# ----------------------------------------------------------------------------- item 7: audits don't re-save
def _write_jsonl(path: Path, n: int = 40) -> Path:
    ds = word_dataset(n, seed=5)
    with open(path, "w", encoding="utf-8") as f:
        for text, label in zip(ds["sentence"], ds["label"]):
            f.write(json.dumps({"sentence": text, "label": label % 2}) + "\n")
    return path


def test_cli_audit_records_the_report_without_rewriting_the_weights(saved, tmp_path, capsys, monkeypatch):
    pytest.importorskip("hf_sparse.audit")
    from hf_sparse import SparseHeadForSequenceClassification

    out, *_ = saved
    data = _write_jsonl(tmp_path / "eval.jsonl")
    weights = out / "model.safetensors"
    before = os.stat(weights)
    readme_before = (out / "README.md").read_text(encoding="utf-8")
    assert not (out / "audit.json").exists()
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = cli_runner(capsys)("audit", out, "--suite", "slices", "--dataset", data, "--text-column",
                                         "sentence", "--n-slices", "2", "--spotlight-size", "0.25")
    assert code == 0, stdout
    after = os.stat(weights)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert "the weights were not written again" in stdout and "audit.json" in stdout
    audit = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert "error_slices" in audit
    manifest = json.loads((out / "hf_sparse_manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"]["audit.json"] == _sha256(out / "audit.json")
    assert manifest["files"]["model.safetensors"] == _sha256(weights)
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert readme != readme_before and "slice" in readme.lower()
    assert not [p.name for p in tmp_path.iterdir() if "hf_sparse-tmp" in p.name or "hf_sparse-old" in p.name]
    # the folder still loads (every checksum holds) and carries the report
    reloaded = SparseHeadForSequenceClassification.from_pretrained(out)
    assert "error_slices" in reloaded.audit_reports


def test_cli_audit_save_model_saves_everything_again(saved, tmp_path, capsys, monkeypatch):
    pytest.importorskip("hf_sparse.audit")
    out, *_ = saved
    data = _write_jsonl(tmp_path / "eval.jsonl")
    before = os.stat(out / "model.safetensors")
    monkeypatch.chdir(tmp_path)
    run = cli_runner(capsys)
    code, stdout, _ = run("audit", out, "--suite", "slices", "--dataset", data, "--text-column", "sentence",
                          "--n-slices", "2", "--spotlight-size", "0.25", "--save-model")
    assert code == 0, stdout
    assert os.stat(out / "model.safetensors").st_ino != before.st_ino  # written again
    assert "Saved the model with this audit" in stdout and (out / "audit.json").is_file()
    code, _, err = run("audit", out, "--suite", "slices", "--dataset", data, "--no-save", "--save-model")
    assert code == 2 and "--no-save saves nothing" in err


# ----------------------------------------------------------------------------- item 10: shares after reloading
def test_class_features_after_reloading_has_shares_from_the_saved_statistics(saved):
    import numpy as np

    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.explain.class_features import EVALUATION, SAVED_STATISTICS, class_features

    out, weight, mean, std = saved
    model = SparseHeadForSequenceClassification.from_pretrained(out)
    assert model.fit_data is None
    tables = model.class_features()
    W, m, s = weight.numpy().astype(np.float64), mean.numpy().astype(np.float64), std.numpy().astype(np.float64)
    for table in tables:
        c = table.label_id
        cols = np.flatnonzero(W[c])
        mass = np.abs(W[c, cols]) * np.sqrt(m[cols] ** 2 + s[cols] ** 2)  # hand reference
        expected = dict(zip(cols.tolist(), (mass / mass.sum()).tolist()))
        assert table.share_source == SAVED_STATISTICS
        assert {f.feature for f in table.features} == set(expected)
        for f in table.features:
            assert f.share == pytest.approx(expected[f.feature], rel=1e-5)
            assert f.mean_activation == pytest.approx(float(m[f.feature]), rel=1e-5)
        assert sum(f.share for f in table.features) == pytest.approx(1.0)
    # given features, the shares are exact on them again
    X = torch.randn(30, weight.shape[1], generator=torch.Generator().manual_seed(2))
    table = class_features(model, X)[1]
    cols = np.flatnonzero(W[1])
    mass = np.abs(X.numpy()[:, cols] * W[1, cols]).mean(0)
    assert table.share_source == EVALUATION
    assert {f.feature: f.share for f in table.features} == pytest.approx(dict(zip(cols.tolist(), mass / mass.sum())))
    assert type(table).from_dict(table.to_dict()) == table


def test_class_features_without_any_statistics_says_so(tmp_path):
    model = tiny_sparse_model(tmp_path)
    random_sparse_head(model, seed=0)  # no feature_mean / feature_std: the defaults 0 and 1
    tables = model.class_features()
    assert all(t.share_source is None and all(f.share is None for f in t.features) for t in tables)
    assert all(t.features for t in tables)


# ----------------------------------------------------------------------------- item 10: permissions
def test_weights_are_written_with_the_mode_of_the_other_files(saved, tmp_path):
    out, *_ = saved
    mask = os.umask(0o022)
    os.umask(mask)
    expected_file = 0o666 & ~mask
    assert _mode(out / "model.safetensors") == _mode(out / "config.json") == expected_file
    assert _mode(out / "hf_sparse_manifest.json") == expected_file
    assert _mode(out) == 0o777 & ~mask  # the folder too (not mkdtemp's private 0700)


def test_weights_mode_follows_the_umask(tmp_path):
    model = tiny_sparse_model(tmp_path)
    old = os.umask(0o027)
    try:
        model.save_pretrained(tmp_path / "group", model_card=False)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "group" / "model.safetensors") == 0o640
    assert _mode(tmp_path / "group" / "config.json") == 0o640
    assert _mode(tmp_path / "group") == 0o750


# ----------------------------------------------------------------------------- item 10: make test-quick
def test_makefile_has_a_quick_target_and_keeps_the_full_one():
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "test-quick"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert dry.returncode == 0, dry.stderr
    assert '-m "not slow"' in dry.stdout and "pytest" in dry.stdout
    full = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert full.returncode == 0 and "pytest" in full.stdout and "not slow" not in full.stdout
