"""Hub-native checkpoints (issue 15, items 1 and 4): remote-code loading without `import hf_sparse`, `push_to_hub`
through `save_pretrained` and with tags, `attn_implementation=` on loading, and `torch.compile(fullgraph=True)`.

All offline: the Hub is a fake `HfApi`; remote code runs from a local folder in a fresh subprocess.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from _tiny_models import random_sparse_head, tiny_sparse_model

REMOTE_FILES = {"configuration_hf_sparse.py", "modeling_hf_sparse.py"}
TEXTS = ["a good and warm film", "bad , dull and boring"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny BERT with a random 2-class sparse head, saved (no card), and its logits on `TEXTS`."""
    root = tmp_path_factory.mktemp("hub_native")
    model = tiny_sparse_model(root, num_labels=2)
    random_sparse_head(model)
    folder = root / "ckpt"
    model.save_pretrained(folder, model_card=False)
    with torch.no_grad():
        logits = model(**model.processor(TEXTS, return_tensors="pt", padding=True)).logits
    return model, folder, logits


def _run(script: str, tmp_path: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run `script` in a fresh Python (offline, its own remote-code module cache)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=str(tmp_path))


# ------------------------------------------------------------------------------------------ item 1: remote code
def test_checkpoint_carries_auto_map_and_remote_code_listed_in_the_manifest(checkpoint):
    _, folder, _ = checkpoint
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_hf_sparse.SparseHeadConfig",
        "AutoModelForSequenceClassification": "modeling_hf_sparse.SparseHeadForSequenceClassification",
    }
    manifest = json.loads((folder / "hf_sparse_manifest.json").read_text())
    for name in REMOTE_FILES:
        source = (folder / name).read_text()
        assert "from hf_sparse.models import" in source and "pip install hf_sparse" in source
        defined = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
        assert defined == []  # no model code: it re-exports the installed package
        assert manifest["files"][name] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert not (folder / "configuration.py").exists()


def test_image_checkpoints_map_the_image_auto_class():
    from hf_sparse.modeling.remote_code import auto_map

    assert auto_map("image") == {
        "AutoConfig": "configuration_hf_sparse.SparseHeadConfig",
        "AutoModelForImageClassification": "modeling_hf_sparse.SparseHeadForImageClassification",
    }


def test_edited_remote_code_is_refused_by_the_manifest(checkpoint, tmp_path):
    import shutil

    from hf_sparse import SparseHeadForSequenceClassification
    from hf_sparse.modeling.saving import CheckpointError

    _, folder, _ = checkpoint
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with open(copy / "modeling_hf_sparse.py", "a") as f:
        f.write("\nimport os  # injected\n")
    with pytest.raises(CheckpointError, match="'modeling_hf_sparse.py' in .* does not match its checksum"):
        SparseHeadForSequenceClassification.from_pretrained(copy)


def test_trust_remote_code_loads_model_and_pipeline_without_importing_hf_sparse(checkpoint, tmp_path):
    _, folder, logits = checkpoint
    script = f"""
        import json, sys
        from transformers import AutoConfig, AutoModelForSequenceClassification, pipeline
        assert "hf_sparse" not in sys.modules
        path = {str(folder)!r}
        config = AutoConfig.from_pretrained(path, trust_remote_code=True)
        model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)
        pipe = pipeline("text-classification", model=path, trust_remote_code=True, top_k=None)
        scores = [{{d["label"]: d["score"] for d in row}} for row in pipe({TEXTS!r})]
        model.save_pretrained({str(tmp_path / "again")!r}, model_card=False)  # classes loaded as remote code
        print(json.dumps({{"config": type(config).__name__, "model": type(model).__name__,
                          "nnz": model.sparse_head.nnz, "scores": scores}}))
    """
    done = _run(script, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["config"], out["model"]) == ("SparseHeadConfig", "SparseHeadForSequenceClassification")
    assert out["nnz"] == 6  # random_sparse_head: 3 per class, 2 classes
    expected = torch.softmax(logits, dim=-1)  # the in-process model's probabilities
    for row, probs in zip(out["scores"], expected):
        assert row["label_0"] == pytest.approx(float(probs[0]), abs=1e-5)
        assert row["label_1"] == pytest.approx(float(probs[1]), abs=1e-5)
    # Saved again from the remote-code classes: the same files, no copied hf_sparse sources.
    again = {p.name for p in (tmp_path / "again").iterdir()}
    assert again == {p.name for p in folder.iterdir()}
    assert json.loads((tmp_path / "again" / "config.json").read_text())["auto_map"] == \
        json.loads((folder / "config.json").read_text())["auto_map"]


def test_remote_code_without_hf_sparse_says_pip_install(checkpoint, tmp_path):
    _, folder, _ = checkpoint
    script = f"""
        import sys
        sys.modules["hf_sparse"] = None          # as if hf_sparse were not installed
        from transformers import AutoConfig
        try:
            AutoConfig.from_pretrained({str(folder)!r}, trust_remote_code=True)
        except ImportError as err:
            print("IMPORT-ERROR:", err)
    """
    done = _run(script, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "IMPORT-ERROR:" in done.stdout
    assert "Run `pip install hf_sparse`" in done.stdout
    assert "does not recognize this architecture" not in done.stdout


def test_loading_after_import_ignores_auto_map(checkpoint):
    from transformers import AutoModelForSequenceClassification

    from hf_sparse import SparseHeadForSequenceClassification

    model, folder, logits = checkpoint
    loaded = AutoModelForSequenceClassification.from_pretrained(folder)  # no trust_remote_code
    assert type(loaded) is SparseHeadForSequenceClassification
    with torch.no_grad():
        again = loaded(**model.processor(TEXTS, return_tensors="pt", padding=True)).logits
    torch.testing.assert_close(again, logits)


# ------------------------------------------------------------------------------------------ item 4: push_to_hub
class FakeHub:
    """Stands in for `huggingface_hub.HfApi`: records each upload (file names and README text)."""

    uploads: list[dict] = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        from types import SimpleNamespace

        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"someone/{repo_id}")

    def hf_hub_download(self, **kwargs):
        from huggingface_hub.errors import EntryNotFoundError

        raise EntryNotFoundError("no README.md")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        readme = folder / "README.md"
        FakeHub.uploads.append({
            "repo_id": repo_id, "files": sorted(p.name for p in folder.iterdir()), **kwargs,
            "readme": readme.read_text() if readme.is_file() else None,
        })
        return "commit-info"


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeHub.uploads = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    return FakeHub.uploads


def _card_tags(readme: str) -> list[str]:
    from huggingface_hub import ModelCard

    return list(ModelCard(readme).data.tags or [])


def test_save_pretrained_push_to_hub_writes_the_folder_then_pushes(checkpoint, tmp_path, fake_hub):
    from hf_sparse import SparseHeadForSequenceClassification

    model, _, logits = checkpoint
    folder = tmp_path / "my-sparse-model"
    model.save_pretrained(folder, push_to_hub=True, commit_message="first", tags=["sentiment"], model_card=False)
    # the folder is written (and loads) ...
    loaded = SparseHeadForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**model.processor(TEXTS, return_tensors="pt", padding=True)).logits, logits)
    # ... and pushed, to the folder's name, with the commit message and tags
    assert len(fake_hub) == 1
    upload = fake_hub[0]
    assert upload["repo_id"] == "someone/my-sparse-model" and upload["commit_message"] == "first"
    assert {"config.json", "model.safetensors", "hf_sparse_manifest.json", *REMOTE_FILES} <= set(upload["files"])
    assert "sentiment" in _card_tags(upload["readme"])


def test_push_to_hub_keeps_tags_after_the_card_tags(checkpoint, fake_hub):
    model, _, _ = checkpoint
    assert model.push_to_hub("me/repo", tags=["sentiment", "hf_sparse", "minilm"]) == "commit-info"
    tags = _card_tags(fake_hub[0]["readme"])
    assert tags[-2:] == ["sentiment", "minilm"]          # added after the card's own tags
    assert tags.count("hf_sparse") == 1 and tags[0] == "hf_sparse"
    model.push_to_hub("me/repo", tags="single")
    assert _card_tags(fake_hub[1]["readme"])[-1] == "single"


def test_push_arguments_are_checked(checkpoint, tmp_path, fake_hub):
    model, _, _ = checkpoint
    with pytest.raises(TypeError, match=r"tags must be a string or a list of non-empty strings, got \[''\]"):
        model.push_to_hub("me/repo", tags=[""])
    with pytest.raises(TypeError, match=r"save_pretrained got \['tags'\], which are used only with push_to_hub=True"):
        model.save_pretrained(tmp_path / "x", tags=["a"])
    assert fake_hub == [] and not (tmp_path / "x").exists()


def test_add_card_tags_writes_a_card_when_there_is_none(tmp_path):
    from hf_sparse.modeling.hub import add_card_tags

    readme = tmp_path / "README.md"
    assert add_card_tags(readme, ["a", "b", "a"]) == ["a", "b"]
    assert _card_tags(readme.read_text()) == ["a", "b"]
    readme.write_text("---\ntags:\n- x\nlicense: mit\n---\n# Title\n\ntext kept\n")
    assert add_card_tags(readme, "y") == ["x", "y"]
    assert "text kept" in readme.read_text() and "license: mit" in readme.read_text()


# ------------------------------------------------------------------------------------------ item 4: attention
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_attn_implementation_is_honoured_when_loading_a_checkpoint(checkpoint, implementation):
    from hf_sparse import SparseHeadForSequenceClassification

    model, folder, logits = checkpoint
    loaded = SparseHeadForSequenceClassification.from_pretrained(folder, attn_implementation=implementation)
    assert loaded.model.config._attn_implementation == implementation
    assert loaded.model.bert.encoder.layer[0].attention.self.config._attn_implementation == implementation
    with torch.no_grad():
        out = loaded(**model.processor(TEXTS, return_tensors="pt", padding=True)).logits
    torch.testing.assert_close(out, logits, atol=1e-5, rtol=1e-5)


def test_unknown_attn_implementation_is_refused(checkpoint):
    from hf_sparse import SparseHeadForSequenceClassification

    _, folder, _ = checkpoint
    with pytest.raises(ValueError, match="not-an-attention"):
        SparseHeadForSequenceClassification.from_pretrained(folder, attn_implementation="not-an-attention")


# ------------------------------------------------------------------------------------------ item 4: torch.compile
@pytest.mark.parametrize("product", ["dense", "sparse"])
def test_sparse_linear_compiles_in_one_graph(product):
    from hf_sparse import SparseLinear

    torch._dynamo.reset()
    layer = SparseLinear.from_dense(torch.tensor([[0.0, 2.0], [1.0, 0.0]]), torch.tensor([0.5, -1.0]))
    layer.product = product
    compiled = torch.compile(layer, fullgraph=True, backend="eager")
    out = compiled(torch.tensor([[1.0, 3.0], [2.0, -1.0]]))
    # by hand: [0*1 + 2*3 + 0.5, 1*1 + 0*3 - 1] and [2*-1 + 0.5, 1*2 - 1]
    torch.testing.assert_close(out, torch.tensor([[6.5, 0.0], [-1.5, 1.0]]))


def test_tiny_model_forward_compiles_with_fullgraph(checkpoint):
    from hf_sparse.modeling.sparse_linear import HeadCall

    model, _, logits = checkpoint
    torch._dynamo.reset()
    inputs = model.processor(TEXTS, return_tensors="pt", padding=True)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(**inputs).logits, logits)
        # A HeadCall still routes the eager forward afterwards (the dense head's logits differ from the sparse ones).
        dense = model(**inputs, use_dense_head=True).logits
        with HeadCall(model.sparse_head, dense=model.dense_head):
            routed = model.model(**inputs).logits
    torch.testing.assert_close(routed, dense)
    assert not torch.allclose(dense, logits)


def test_weight_cache_sees_in_place_edits():
    from hf_sparse import SparseLinear

    layer = SparseLinear.from_dense(torch.tensor([[0.0, 2.0], [1.0, 0.0]]), torch.zeros(2))
    x = torch.tensor([[1.0, 3.0]])
    torch.testing.assert_close(layer(x), torch.tensor([[6.0, 1.0]]))
    with torch.no_grad():
        layer.values.mul_(2)  # same tensor object, edited in place
    torch.testing.assert_close(layer(x), torch.tensor([[12.0, 2.0]]))
    layer.set_weight(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(layer(x), torch.tensor([[1.0, 3.0]]))
