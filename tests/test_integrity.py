"""Nothing silent (issue 13, items 4, 5, 7): damaged feature caches are detected and rebuilt, a head-only checkpoint
refuses a base model that is not the one its head was fit on (whole base, any load dtype, from_encoder too), and the
tokenizer / image processor files are in the sha256 manifest.

Every test here fails on the code before the fix (commit 09ff864): there a header-only shard gave fewer feature rows
than dataset rows, a truncated cache file gave a raw pyarrow error, an edited shard was used as is, a base with a
changed encoder loaded silently, and an edited tokenizer.json loaded silently.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _tiny_models import SENTENCES, minilm_tokenizer, random_sparse_head, save_image_classifier, save_text_classifier  # noqa: E402
from features_helpers import ForwardCounter, embeddings_of, text_dataset, tiny_text_model  # noqa: E402

from hf_sparse import SparseHeadForImageClassification, SparseHeadForSequenceClassification  # noqa: E402
from hf_sparse.features import FeatureSet, extract_features  # noqa: E402
from hf_sparse.features.cache import DamagedCacheError, FeatureCache, feature_schema, make_batch  # noqa: E402
from hf_sparse.modeling import CheckpointError  # noqa: E402
from hf_sparse.constants import MANIFEST_NAME  # noqa: E402

N_ROWS, SHARD, BATCH = 20, 8, 4
SHARD0 = "shard-000000000000-000000000008.arrow"


# ----------------------------------------------------------------------------------------------- feature cache
@pytest.fixture(scope="module")
def tok():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def reference(tok, tmp_path_factory):
    """Features of 20 rows extracted in one clean run (the expected result of every repaired run)."""
    return extract_features(tiny_text_model("bert"), text_dataset(N_ROWS), tok, batch_size=BATCH, shard_size=SHARD,
                            cache_dir=tmp_path_factory.mktemp("ref"), show_progress=False)


class _Killed(Exception):
    pass


def _killed_after_first_shard(tok, cache_dir):
    """Run an extraction that dies in its second shard: leaves shard [0, 8) only, as a killed run does."""
    model = tiny_text_model("bert")
    counter = ForwardCounter(embeddings_of(model))

    def die(*_):
        if counter.calls == 3:  # batches 1-2 made shard [0, 8); batch 3 is in shard [8, 16)
            raise _Killed

    handle = embeddings_of(model).register_forward_hook(die)
    with pytest.raises(_Killed):
        extract_features(model, text_dataset(N_ROWS), tok, batch_size=BATCH, shard_size=SHARD, cache_dir=cache_dir,
                         show_progress=False)
    handle.remove()
    counter.remove()
    (entry,) = [p for p in Path(cache_dir).iterdir() if p.is_dir()]
    assert sorted(p.name for p in entry.glob("shard-*")) == [SHARD0]
    return entry


def _resume(tok, cache_dir):
    model = tiny_text_model("bert")
    counter = ForwardCounter(embeddings_of(model))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feats = extract_features(model, text_dataset(N_ROWS), tok, batch_size=BATCH, shard_size=SHARD,
                                 cache_dir=cache_dir, show_progress=False)
    return feats, counter.rows, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def _header_only(path: Path) -> None:
    """Replace an Arrow stream file by its schema alone: a file with the header and no rows."""
    with pa.memory_map(str(path)) as source:
        schema = pa.ipc.open_stream(source).schema
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema):
        pass
    path.write_bytes(sink.getvalue().to_pybytes())


def test_header_only_shard_is_computed_again(tok, reference, tmp_path):
    entry = _killed_after_first_shard(tok, tmp_path)
    _header_only(entry / SHARD0)
    feats, rows_run, messages = _resume(tok, tmp_path)
    # Before the fix: the empty shard was accepted and 12 feature rows came back for 20 dataset rows.
    assert len(feats) == N_ROWS and feats.indices.tolist() == list(range(N_ROWS))
    assert torch.equal(feats.features, reference.features)
    assert rows_run == N_ROWS  # the damaged shard ran again, with the two missing ones
    assert any(f"{SHARD0} in {entry} is damaged (it holds 0 rows instead of 8)" in m for m in messages), messages


def test_truncated_shard_is_computed_again(tok, reference, tmp_path):
    entry = _killed_after_first_shard(tok, tmp_path)
    data = (entry / SHARD0).read_bytes()
    (entry / SHARD0).write_bytes(data[: len(data) // 2])
    feats, rows_run, messages = _resume(tok, tmp_path)  # before the fix: a raw pyarrow ArrowInvalid
    assert torch.equal(feats.features, reference.features) and rows_run == N_ROWS
    assert any(f"{SHARD0} in {entry} is damaged (it is not a readable Arrow file" in m for m in messages), messages


def test_edited_shard_fails_its_checksum_and_is_computed_again(tok, reference, tmp_path):
    entry = _killed_after_first_shard(tok, tmp_path)
    data = bytearray((entry / SHARD0).read_bytes())
    # The stream ends with the feature values (8 rows x 16 float32) and an 8-byte end marker.
    data[-8 - 10] ^= 0x40
    (entry / SHARD0).write_bytes(bytes(data))
    feats, rows_run, messages = _resume(tok, tmp_path)  # before the fix: the edited features were used as they are
    assert torch.equal(feats.features, reference.features) and rows_run == N_ROWS
    assert any("do not match the checksum it was written with" in m for m in messages), messages


@pytest.mark.parametrize("damage", ["truncated", "header only", "meta.json"])
def test_damaged_features_arrow_is_refused_then_rebuilt(tok, reference, tmp_path, damage):
    cache_dir = tmp_path / "cache"
    first = extract_features(tiny_text_model("bert"), text_dataset(N_ROWS), tok, batch_size=BATCH,
                             shard_size=SHARD, cache_dir=cache_dir, show_progress=False)
    entry = cache_dir / first.fingerprint
    del first  # drop the memory map before the file is damaged
    final = entry / "features.arrow"
    if damage == "truncated":
        final.write_bytes(final.read_bytes()[:-200])
        reason = "features.arrow: it is not a readable Arrow file"
    elif damage == "header only":
        _header_only(final)
        reason = f"features.arrow: it holds 0 rows instead of {N_ROWS}"
    else:
        (entry / "meta.json").write_text('{"key": "abc", ')
        reason = "meta.json is not readable JSON"
    # Opening it says what is wrong and which folder to delete (before: a raw pyarrow error, or 0 rows silently).
    with pytest.raises(DamagedCacheError, match=rf"The feature cache {entry} is damaged \({reason}.*Delete the folder"):
        FeatureSet.load(entry)
    # Extracting again deletes it, with a warning, and rebuilds it.
    feats, rows_run, messages = _resume(tok, cache_dir)
    assert rows_run == N_ROWS and torch.equal(feats.features, reference.features)
    assert any(f"The feature cache {entry} is damaged ({reason}" in m and "extracting the features again" in m
               for m in messages), messages
    assert torch.equal(FeatureSet.load(entry).features, reference.features)


def test_misaligned_cache_of_an_older_version_is_refused(tmp_path):
    """A finished file without a checksum, as the old code wrote it after skipping an empty shard: 16 feature rows
    for a 20-row dataset. The dataset length recorded in meta.json and the row indices give it away."""
    cache = FeatureCache(tmp_path, "old")
    cache.prepare()
    rows = np.r_[0:8, 12:20]  # rows 8..11 (one empty shard) missing
    batch = make_batch(rows, np.ones((16, 4), dtype=np.float32), None, feature_schema(4, None))
    with open(cache.final_path, "wb") as f, pa.ipc.new_stream(f, batch.schema) as writer:
        writer.write_batch(batch)  # no checksum metadata: the old format
    cache.meta_path.write_text(json.dumps({"key": "old", "num_rows": 16, "fingerprint": {"num_rows": 20}}))
    with pytest.raises(DamagedCacheError, match="it holds 16 rows instead of 20.*Delete the folder"):
        FeatureSet.load(cache.dir)
    # With the right count its indices still do not follow the dataset's rows.
    cache.meta_path.write_text(json.dumps({"key": "old", "num_rows": 16}))
    with pytest.raises(DamagedCacheError, match=r"its rows are not dataset rows 0..15 in order"):
        FeatureSet.load(cache.dir)


# ----------------------------------------------------------------------------------------------- head-only base


def _logits(model):
    with torch.no_grad():
        return model(**minilm_tokenizer()(SENTENCES, return_tensors="pt", padding=True)).logits


def _change_encoder(source: Path, target: Path, auto_class) -> Path:
    """A copy of a saved model with one encoder weight changed (its final layer untouched)."""
    model = auto_class.from_pretrained(source)
    with torch.no_grad():
        name, param = next((n, p) for n, p in model.named_parameters() if "encoder.layer.0.output.dense.weight" in n)
        param[0, :] += 0.5
    model.save_pretrained(target)
    minilm_tokenizer().save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def head_only(tmp_path_factory):
    """A tiny BERT classifier, a sparse head on it saved head-only, and the logits it gives."""
    root = tmp_path_factory.mktemp("head_only")
    base = save_text_classifier(root / "base", "bert", num_labels=3)
    model = SparseHeadForSequenceClassification.from_pretrained(base)
    random_sparse_head(model)
    model.save_pretrained(root / "head", head_only=True)
    return base, root / "head", _logits(model)


def test_head_only_refuses_a_base_whose_encoder_changed(head_only, tmp_path):
    from transformers import AutoModelForSequenceClassification

    base, head, expected = head_only
    changed = _change_encoder(base, tmp_path / "changed", AutoModelForSequenceClassification)
    # Before the fix only the final layer was compared, and this loaded silently with other logits.
    message = (rf"The base model '{changed}' is not the one this head was fit on: its weights differ from the ones "
               r"the head was fit on \(sha256 of all its \d+ tensors, in float32.*allow_base_mismatch=True")
    with pytest.raises(CheckpointError, match=message):
        SparseHeadForSequenceClassification.from_pretrained(head, base_model=str(changed))
    # A base changed in place, found through the checkpoint's own pointer.
    local = shutil.copytree(base, tmp_path / "local")
    model = SparseHeadForSequenceClassification.from_pretrained(local)
    random_sparse_head(model)
    model.save_pretrained(tmp_path / "local_head", head_only=True)
    assert json.loads((tmp_path / "local_head" / "config.json").read_text())["base_model_name_or_path"] == str(local)
    shutil.copy(changed / "model.safetensors", local / "model.safetensors")
    with pytest.raises(CheckpointError, match=f"The base model '{local}' is not the one.*its weights differ"):
        SparseHeadForSequenceClassification.from_pretrained(tmp_path / "local_head")
    # An explicit override loads it, with a warning, and the logits are indeed not the fitted ones.
    with pytest.warns(UserWarning, match="Loading it anyway \\(allow_base_mismatch=True\\)"):
        loaded = SparseHeadForSequenceClassification.from_pretrained(head, base_model=str(changed),
                                                                     allow_base_mismatch=True)
    assert not torch.allclose(_logits(loaded), expected, atol=1e-4)
    # The right base loads without a warning and gives the fitted logits.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        again = SparseHeadForSequenceClassification.from_pretrained(head)
    assert torch.equal(_logits(again), expected)


def test_head_only_base_is_checked_in_any_load_dtype(head_only, tmp_path):
    from transformers import AutoModelForSequenceClassification

    base, head, expected = head_only
    # float32 fit, bfloat16 / float16 load: compared exactly in the lower precision (before: a false mismatch of
    # the final layer's float32 hash).
    for dtype in (torch.bfloat16, torch.float16):
        loaded = SparseHeadForSequenceClassification.from_pretrained(head, dtype=dtype)
        assert loaded.model.dtype == dtype
    changed = _change_encoder(base, tmp_path / "changed", AutoModelForSequenceClassification)
    with pytest.raises(CheckpointError, match=r"its weights differ .* in bfloat16"):
        SparseHeadForSequenceClassification.from_pretrained(head, base_model=str(changed), dtype=torch.bfloat16)
    # A head saved on a bfloat16 base loads on the float32 files; float16 cannot be compared with it and says so.
    bf16 = SparseHeadForSequenceClassification.from_pretrained(head, dtype=torch.bfloat16)
    bf16.save_pretrained(tmp_path / "head_bf16", head_only=True)
    SparseHeadForSequenceClassification.from_pretrained(tmp_path / "head_bf16")
    with pytest.raises(CheckpointError, match=r"its weights are float16 but the head was fit on a bfloat16 base.*"
                                              r"load it with dtype=torch.bfloat16"):
        SparseHeadForSequenceClassification.from_pretrained(tmp_path / "head_bf16", dtype=torch.float16)


def test_head_only_from_encoder_checks_the_encoder(tmp_path):
    """A from_encoder checkpoint's final layer is a zero placeholder, so before the fix nothing was checked."""
    from transformers import AutoModel, BertConfig

    torch.manual_seed(0)
    encoder = AutoModel.from_config(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=32,
                                               max_position_embeddings=66))
    encoder.save_pretrained(tmp_path / "encoder")
    minilm_tokenizer().save_pretrained(tmp_path / "encoder")
    model = SparseHeadForSequenceClassification.from_encoder(str(tmp_path / "encoder"), num_labels=3)
    random_sparse_head(model)
    expected = _logits(model)
    model.save_pretrained(tmp_path / "head", head_only=True)
    assert torch.equal(_logits(SparseHeadForSequenceClassification.from_pretrained(tmp_path / "head")), expected)
    changed = _change_encoder(tmp_path / "encoder", tmp_path / "changed", AutoModel)
    with pytest.raises(CheckpointError, match=f"The base model '{tmp_path / 'changed'}' is not the one this head "
                                              "was fit on: its weights differ"):
        SparseHeadForSequenceClassification.from_pretrained(tmp_path / "head", base_model=str(tmp_path / "changed"))


def test_head_only_checkpoint_without_a_base_fingerprint_warns(head_only, tmp_path):
    _, head, expected = head_only
    old = shutil.copytree(head, tmp_path / "old")
    manifest = json.loads((old / MANIFEST_NAME).read_text())
    del manifest["base_model"]  # as saved before the fix
    (old / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="records no fingerprint of its base model.*only the base's final layer"):
        loaded = SparseHeadForSequenceClassification.from_pretrained(old)
    assert torch.equal(_logits(loaded), expected)


# ----------------------------------------------------------------------------------------------- processor files
def test_tokenizer_files_are_in_the_manifest_and_checked(tmp_path):
    base = save_text_classifier(tmp_path / "base", "bert", num_labels=3)
    model = SparseHeadForSequenceClassification.from_pretrained(base)
    model.save_pretrained(tmp_path / "ckpt")
    listed = json.loads((tmp_path / "ckpt" / MANIFEST_NAME).read_text())["files"]
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(listed)
    # A vocabulary edit changes what the model sees; before the fix it loaded without a word.
    tok_file = tmp_path / "ckpt" / "tokenizer.json"
    tok = json.loads(tok_file.read_text())
    vocab = tok["model"]["vocab"]
    vocab["good"], vocab["bad"] = vocab["bad"], vocab["good"]
    tok_file.write_text(json.dumps(tok))
    with pytest.raises(CheckpointError, match=r"'tokenizer.json' in .* does not match its checksum in "
                                              r"hf_sparse_manifest.json .*Restore it or save the model again"):
        SparseHeadForSequenceClassification.from_pretrained(tmp_path / "ckpt")
    # A tokenizer file added after saving is not covered: it is named in a warning.
    model.save_pretrained(tmp_path / "ckpt2")
    (tmp_path / "ckpt2" / "added_tokens.json").write_text('{"zzzyx": 30522}')
    with pytest.warns(UserWarning, match=r"\['added_tokens.json'\] in .* are not covered by its hf_sparse_manifest"):
        SparseHeadForSequenceClassification.from_pretrained(tmp_path / "ckpt2")


def test_image_processor_file_is_in_the_manifest_and_checked(tmp_path):
    base = save_image_classifier(tmp_path / "base", "vit", num_labels=4)
    model = SparseHeadForImageClassification.from_pretrained(base)
    model.save_pretrained(tmp_path / "ckpt", head_only=True)
    assert "preprocessor_config.json" in json.loads((tmp_path / "ckpt" / MANIFEST_NAME).read_text())["files"]
    config_file = tmp_path / "ckpt" / "preprocessor_config.json"
    config = json.loads(config_file.read_text())
    config["image_mean"] = [0.0, 0.0, 0.0]
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'preprocessor_config.json' in .* does not match its checksum"):
        SparseHeadForImageClassification.from_pretrained(tmp_path / "ckpt")
