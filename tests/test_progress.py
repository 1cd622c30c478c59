"""Progress on every long step: the audits' encoding and search bars, describe_features' word-occlusion bar, and
the lambda path's early stop (bar closed where it stopped, a log line saying why).

Bars are read from the captured stderr (tqdm writes there outside notebooks); each bar's last state must show the
right total, and nothing is written with progress off.
"""

from __future__ import annotations

import logging
import re

import pytest
import torch

from _tiny_models import tiny_sparse_model

GROUPS = {"religion": ["Christian", "Muslim", "Jewish"]}
TEMPLATES = ["I am {term}.", "{A_term} person lives here."]


def _final(err: str, desc: str) -> str | None:
    """The last state of the bar called `desc` in captured stderr (tqdm redraws with carriage returns)."""
    states = [s for s in re.split(r"[\r\n]", err) if s.startswith(desc)]
    return states[-1] if states else None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_sparse_model(tmp_path_factory.mktemp("progress"))


# ----------------------------------------------------------------------------- the audits
def test_encode_texts_is_model_encode_with_a_bar(tiny, capsys):
    from hf_sparse.audit.scoring import encode_texts

    texts = [f"text number {i} is {'good' if i % 2 else 'bad'}" for i in range(7)]
    X = encode_texts(tiny, texts, batch_size=3, max_length=32, desc="encoding test")
    assert torch.equal(X, tiny.encode(texts, batch_size=3, max_length=32))  # the same batches, the same features
    assert "7/7" in _final(capsys.readouterr().err, "encoding test: 100%")
    assert encode_texts(tiny, [], progress=False).shape == (0, tiny.sparse_head.in_features)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="batch_size must be at least 1; got 0"):
        encode_texts(tiny, texts, batch_size=0)


def test_identity_audit_bar_counts_the_filled_sentences(tiny, capsys):
    from hf_sparse.audit import identity_audit

    report = identity_audit(tiny, groups=GROUPS, templates=TEMPLATES, batch_size=4, record=False)
    assert report.n_texts == len(TEMPLATES) * len(GROUPS["religion"]) == 6
    final = _final(capsys.readouterr().err, "identity audit: encoding sentences: 100%")
    assert final is not None and "6/6" in final and "texts/s" in final
    quiet = identity_audit(tiny, groups=GROUPS, templates=TEMPLATES, batch_size=4, record=False, progress=False)
    assert capsys.readouterr().err == ""
    assert [g["by_head"] for g in quiet.groups] == [g["by_head"] for g in report.groups]


def test_subgroup_audit_bar_counts_the_dataset(tiny, capsys):
    from hf_sparse.audit import subgroup_metrics

    texts = [f"{w} people are {a}" for w in ("muslim", "gay", "young", "french") for a in ("nice", "awful", "ok")] * 2
    data = {"text": texts, "label": [i % 2 for i in range(len(texts))]}
    subgroup_metrics(tiny, data, min_size=2, batch_size=5, record=False)
    final = _final(capsys.readouterr().err, "subgroup audit: encoding texts: 100%")
    assert final is not None and f"{len(texts)}/{len(texts)}" in final
    subgroup_metrics(tiny, data, min_size=2, batch_size=5, record=False, progress=False)
    assert capsys.readouterr().err == ""


def test_error_slice_bars_count_texts_and_spotlights(tiny, capsys):
    from hf_sparse.audit import find_error_slices

    texts = [f"sentence {i} about {'cats' if i % 3 else 'dogs'}" for i in range(60)]
    data = {"text": texts, "label": [i % 2 for i in range(60)]}
    report = find_error_slices(tiny, data, n_slices=2, n_starts=2, steps=3, batch_size=16, record=False)
    err = capsys.readouterr().err
    assert "60/60" in _final(err, "error slices: encoding texts: 100%")
    assert len(report.slices) == 2 and "4/4" in _final(err, "error slices: searching: 100%")  # 2 slices x 2 starts
    find_error_slices(tiny, data, n_slices=2, n_starts=2, steps=3, batch_size=16, record=False, progress=False)
    assert capsys.readouterr().err == ""


def test_bars_follow_the_global_datasets_switch(tiny, capsys):
    import datasets

    from hf_sparse.audit import identity_audit

    datasets.disable_progress_bars()  # what the command line's --no-progress does
    try:
        identity_audit(tiny, groups=GROUPS, templates=TEMPLATES, record=False)
    finally:
        datasets.enable_progress_bars()
    assert "identity audit" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- describe_features
def test_word_chunks_by_hand():
    from hf_sparse.explain.descriptions import _word_chunks

    assert _word_chunks(["a b", "c d e", "f"], words=4) == [(0, 2), (2, 3)]  # 3, 3+4 >= 4 | 2
    assert _word_chunks(["one two three four five"], words=2) == [(0, 1)]  # a long text stays whole
    assert _word_chunks([], words=4) == []


@pytest.fixture(scope="module")
def fitted(folders, text_data, tmp_path_factory):
    from hf_sparse import SparseHeadForSequenceClassification

    model = SparseHeadForSequenceClassification.from_pretrained(folders["bert"])
    train, val = text_data
    model.fit_sparse_head(train, eval_dataset=val, text_column="sentence", features_per_class=2, n_lambdas=12,
                          cache_dir=tmp_path_factory.mktemp("progress_cache"))
    return model


def test_describe_features_bar_covers_the_word_occlusion(fitted, capsys, monkeypatch):
    import hf_sparse.explain.descriptions as descriptions

    n_attr = 8
    monkeypatch.setattr(descriptions, "ATTRIBUTION_CHUNK_WORDS", 20)  # several chunks of these 5-word texts
    out = fitted.describe_features(n_examples=3, n_attribution_examples=n_attr, progress=True)
    err = capsys.readouterr().err
    # the texts attributed: the union of every used feature's n_attr most activating cached rows
    X = fitted.fit_data.features.features.float()
    used = fitted.sparse_head.active_features.tolist()
    wanted = set().union(*(set(torch.topk(X[:, j], n_attr).indices.tolist()) for j in used))
    final = _final(err, "describing features: word occlusion: 100%")
    assert final is not None and f"{len(wanted)}/{len(wanted)}" in final
    assert err.rfind("describing features: word occlusion") > err.rfind("describing features: top examples")
    # chunking changes no attribution: the same words as one unchunked pass, scores to float rounding
    monkeypatch.setattr(descriptions, "ATTRIBUTION_CHUNK_WORDS", 10**9)
    whole = fitted.describe_features(n_examples=3, n_attribution_examples=n_attr)
    assert capsys.readouterr().err == ""  # progress off (the default)
    for j in used:
        assert [w for w, _, _ in out[j].top_words] == [w for w, _, _ in whole[j].top_words]
        assert [s for _, s, _ in out[j].top_words] == pytest.approx([s for _, s, _ in whole[j].top_words], abs=1e-5)


def test_describe_features_bar_covers_the_image_heatmaps(folders, image_data, tmp_path, capsys):
    from hf_sparse import SparseHeadForImageClassification

    model = SparseHeadForImageClassification.from_pretrained(folders["vit"])
    train, val = image_data
    model.fit_sparse_head(train, eval_dataset=val, features_per_class=2, n_lambdas=10, cache_dir=tmp_path / "cache")
    capsys.readouterr()
    out = model.describe_features(n_examples=2, n_heatmaps=2, progress=True)
    n = 2 * len(out)  # two heatmaps for each used feature (16 evaluation images: enough for all)
    final = _final(capsys.readouterr().err, "describing features: occlusion heatmaps: 100%")
    assert final is not None and f"{n}/{n}" in final and "images/s" in final


# ----------------------------------------------------------------------------- the path
def _three_classes(n=240, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    W = torch.zeros(3, d)
    W[0, :4], W[1, 4:8], W[2, 8:] = 1.0, 1.0, 1.0
    y = (X @ W.T + 0.5 * torch.randn(n, 3, generator=g)).argmax(1)
    return X, y


def test_path_stop_at_target_names_the_point_and_the_reason(capsys, caplog):
    from hf_sparse.solver import fit_path

    X, y = _three_classes()
    caplog.set_level(logging.INFO, logger="hf_sparse")
    path = fit_path(X, y, n_lambdas=40, stop_at_features_per_class=2, progress=True)
    i = len(path)
    per_class = [p.metrics["features_per_class"] for p in path]
    assert 1 < i < 40 and min(per_class[-1]) >= 2 and min(per_class[-2]) < 2  # the first point at the target
    expected = f"stopped at lambda {i} of 40"
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("hf_sparse")]
    assert len(logged) == 1 and expected in logged[0]
    assert "because the target of 2 features per class was reached" in logged[0]
    assert f"the remaining {40 - i} lambdas are not needed" in logged[0]
    final = _final(capsys.readouterr().err, "lambda path: ")
    assert final.startswith(f"lambda path: {expected}, target of 2 features per class reached: 100%")
    assert f"{i}/{i}" in final  # closed where it stopped, not frozen part-way
    assert path.info["n_lambdas"] == 40 and "target of 2 features per class" in path.info["stop_reason"]


def test_path_stop_at_max_features_and_no_stop(capsys, caplog):
    from hf_sparse.solver import fit_path

    X, y = _three_classes()
    caplog.set_level(logging.INFO, logger="hf_sparse")
    path = fit_path(X, y, n_lambdas=40, max_features=3)
    assert path[-1].metrics["n_features"] > 3 >= path[-2].metrics["n_features"]
    [message] = [r.getMessage() for r in caplog.records if r.name.startswith("hf_sparse")]
    assert f"stopped at lambda {len(path)} of 40" in message
    assert f"it uses {path[-1].metrics['n_features']} features, more than max_features=3" in message
    assert capsys.readouterr().err == ""  # progress off
    caplog.clear()
    full = fit_path(X, y, n_lambdas=6, lambda_min_ratio=0.1, progress=True)
    assert len(full) == 6 and full.info["stop_reason"] is None
    assert not [r for r in caplog.records if r.name.startswith("hf_sparse")]
    final = _final(capsys.readouterr().err, "lambda path: 100%")
    assert final is not None and "6/6" in final


def test_the_command_lines_no_progress_does_not_outlive_the_command(capsys):
    """`hf-sparse ... --no-progress` switches the libraries' bars off for its command only: a program (or a test
    session) that runs commands through `main` in its own process gets its bars back (they leaked before, and every
    later audit in the process ran silent)."""
    import datasets
    import huggingface_hub
    import transformers

    from hf_sparse.cli import main

    assert not datasets.utils.are_progress_bars_disabled()
    assert main(["audit", "no_such_dir/", "--suite", "identity", "--no-progress"]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert not datasets.utils.are_progress_bars_disabled()
    assert not huggingface_hub.utils.are_progress_bars_disabled()
    assert transformers.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # bars the caller had switched off stay off
    try:
        main(["audit", "no_such_dir/", "--suite", "identity"])
        assert datasets.utils.are_progress_bars_disabled()
    finally:
        datasets.enable_progress_bars()
