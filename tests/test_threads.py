"""Threads: one model serving several threads at once gives every call its own result (issue 13, item 1).

Forwards with `use_dense_head=True` or `output_contributions=True`, `explain`, transformers pipelines and feature
extraction (the one `fit_sparse_head` runs, and `extract_features` on a plain classifier) run at the same time on one
tiny model from 4 threads. Every result must equal the single-threaded result for its own input. To make the
threads interleave on every call (as they do on a real, slower model), the wrapped classifier's forward sleeps a
little before its work and then waits for another thread's call to finish (`interleave`); without that, a tiny model
finishes a call before another thread gets to run and a mix-up would only show now and then.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_sparse import SparseHeadForSequenceClassification  # noqa: E402

from _tiny_models import minilm_tokenizer, save_text_classifier, word_dataset  # noqa: E402

WORKERS = 4
TEXTS = [
    "a good and warm film",
    "bad , dull and boring",
    "superb",
    "cold poor awful thing",
    "nice nice nice",
    "great but cold and a little dull",
    "boring",
    "warm superb fine great good nice",
]
#: Two threads' results for different inputs (or different heads) differ by far more than this.
TOL = 1e-6


def run_in_threads(tasks):
    """Run the callables on `WORKERS` threads at once; their results, in order."""
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda task: task(), tasks))


def while_running(work, serve, servers=WORKERS - 1, at_least=8):
    """Run `work()` on one thread while `servers` threads call `serve(n)` for n = 0, 1, ... until it is done (and at
    least `at_least` times each); `work`'s result and the list of `(n, serve(n))` of every server."""
    done = threading.Event()

    def worker():
        try:
            return work()
        finally:
            done.set()

    def server(k):
        out, n = [], k
        while not done.is_set() or len(out) < at_least:
            out.append((n, serve(n)))
            n += servers
        return out

    results = run_in_threads([worker] + [functools.partial(server, k) for k in range(servers)])
    return results[0], [pair for served in results[1:] for pair in served]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_text_classifier(tmp_path_factory.mktemp("tiny") / "bert", "bert", num_labels=3)


@pytest.fixture()
def model(folder):
    """The tiny BERT with a sparse head (3 features per class) whose logits differ from the dense head's."""
    model = SparseHeadForSequenceClassification.from_pretrained(folder)
    g = torch.Generator().manual_seed(0)
    k, d = model.sparse_head.out_features, model.sparse_head.in_features
    weight = torch.zeros(k, d)
    for c in range(k):
        weight[c, torch.randperm(d, generator=g)[:3]] = 3 * torch.randn(3, generator=g)
    model.install_sparse_head(weight, torch.randn(k, generator=g))
    return model.eval()


@pytest.fixture()
def interleave(model, monkeypatch):
    """Make the threads interleave on every call of the wrapped classifier's forward: in a worker thread, it sleeps
    3 ms before its work and, after it, waits (up to 100 ms) until another call has finished meanwhile. So the whole
    of another call, its final layer included, falls between this call's final layer and its return. Calls from the
    main thread (the single-threaded references) run unchanged."""
    klass = type(model.model)
    original = klass.forward
    finished = threading.Condition()
    count = [0]

    @functools.wraps(original)
    def interleaved_forward(self, *args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            return original(self, *args, **kwargs)
        time.sleep(0.003)
        out = original(self, *args, **kwargs)
        with finished:
            count[0] += 1
            mine = count[0]
            finished.notify_all()
            finished.wait_for(lambda: count[0] > mine, timeout=0.1)
        return out

    monkeypatch.setattr(klass, "forward", interleaved_forward)


def tokenized(model):
    """Each text tokenized alone, in this thread (the tests' own forwards do no tokenization in the threads)."""
    return [model.processor([t], return_tensors="pt") for t in TEXTS]


def forward_result(model, enc, mode):
    with torch.no_grad():
        if mode == "sparse":
            return {"logits": model(**enc).logits}
        if mode == "dense":
            return {"logits": model(**enc, use_dense_head=True).logits}
        out = model(**enc, output_contributions=True)
        return {"logits": out.logits, "features": out.features, "contributions": out.contributions}


def assert_same(got, expected, what):
    assert got.keys() == expected.keys(), what
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=TOL, rtol=TOL, msg=lambda m: f"{what} {key}: {m}")


def explanation_numbers(exp):
    return exp.prediction_id, exp.logit, [(c.feature, c.value, c.contribution) for c in exp.contributions]


def assert_same_explanation(got, expected, what):
    (pid, logit, rows), (pid0, logit0, rows0) = explanation_numbers(got), explanation_numbers(expected)
    assert got.input == expected.input, what
    assert pid == pid0, f"{what}: predicted {pid}, alone {pid0}"
    assert logit == pytest.approx(logit0, abs=TOL), what
    assert [r[0] for r in rows] == [r[0] for r in rows0], what
    np.testing.assert_allclose([r[1:] for r in rows], [r[1:] for r in rows0], atol=TOL, rtol=TOL, err_msg=what)


# ----------------------------------------------------------------------------- forwards
def test_the_heads_really_differ(model):
    """The checks below could not see a mix-up if the sparse and dense heads, or two inputs, gave the same logits."""
    encs = tokenized(model)
    sparse = torch.cat([forward_result(model, e, "sparse")["logits"] for e in encs])
    dense = torch.cat([forward_result(model, e, "dense")["logits"] for e in encs])
    assert (sparse - dense).abs().amin(dim=1).min() > 1e-3
    feats = torch.cat([forward_result(model, e, "contrib")["features"] for e in encs])
    assert torch.cdist(feats, feats).add(torch.eye(len(TEXTS)) * 1e9).min() > 100 * TOL
    # the sparse head's input is the dense head's input: each head applied to it gives that head's logits
    torch.testing.assert_close(model.sparse_head(feats), sparse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats @ model.dense_head.weight.T + model.dense_head.bias, dense, atol=1e-5, rtol=1e-5)


def test_sparse_dense_and_contribution_forwards_in_threads(model, interleave):
    encs = tokenized(model)
    modes = ("sparse", "dense", "contrib")
    expected = {(i, m): forward_result(model, encs[i], m) for i in range(len(TEXTS)) for m in modes}
    jobs = [(n % len(TEXTS), modes[n % 3]) for n in range(72)]
    results = run_in_threads([functools.partial(forward_result, model, encs[i], m) for i, m in jobs])
    for (i, m), got in zip(jobs, results):
        assert_same(got, expected[(i, m)], f"{m} forward of {TEXTS[i]!r}")


def test_explain_in_threads_beside_dense_forwards(model, interleave):
    encs = tokenized(model)
    expected = {t: model.explain(t) for t in TEXTS}
    dense = [forward_result(model, e, "dense") for e in encs]
    jobs = [("explain" if n % 2 else "dense", (n // 2) % len(TEXTS)) for n in range(64)]

    def job(kind, i):
        return model.explain(TEXTS[i]) if kind == "explain" else forward_result(model, encs[i], "dense")

    results = run_in_threads([functools.partial(job, kind, i) for kind, i in jobs])
    for (kind, i), got in zip(jobs, results):
        if kind == "explain":
            assert_same_explanation(got, expected[TEXTS[i]], f"explain({TEXTS[i]!r})")
        else:
            assert_same(got, dense[i], f"dense forward of {TEXTS[i]!r}")


def test_a_batch_explained_in_threads(model, interleave):
    """Lists of texts (batches of different shapes) explained at the same time."""
    batches = [TEXTS[i : i + 3] for i in range(len(TEXTS) - 2)]
    expected = [model.explain(b) for b in batches]
    jobs = [n % len(batches) for n in range(36)]
    results = run_in_threads([functools.partial(model.explain, batches[j]) for j in jobs])
    for j, got in zip(jobs, results):
        assert len(got) == len(expected[j])
        for g, e in zip(got, expected[j]):
            assert_same_explanation(g, e, f"explain({batches[j]!r})")


# ----------------------------------------------------------------------------- pipelines
def pipeline_scores(pipe, text):
    return sorted((d["label"], d["score"]) for d in pipe(text, top_k=None))


def make_pipeline(model):
    from transformers import pipeline

    # Its own tokenizer: a fast tokenizer's padding/truncation settings are state of the tokenizer object, which
    # transformers' pipeline and hf_sparse's extraction set differently.
    return pipeline("text-classification", model=model, tokenizer=minilm_tokenizer(), device="cpu")


def assert_same_scores(got, expected, what):
    assert [label for label, _ in got] == [label for label, _ in expected], what
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=TOL, rtol=TOL, err_msg=what)


def test_pipeline_in_threads_beside_dense_forwards(model, interleave):
    pipe = make_pipeline(model)
    encs = tokenized(model)
    expected = {t: pipeline_scores(pipe, t) for t in TEXTS}
    # the pipeline gives the sparse head's probabilities
    probs = torch.softmax(forward_result(model, encs[0], "sparse")["logits"][0], -1)
    np.testing.assert_allclose([s for _, s in expected[TEXTS[0]]], probs.tolist(), atol=1e-6)
    dense = [forward_result(model, e, "dense") for e in encs]
    jobs = [("pipeline" if n % 2 else "dense", (n // 2) % len(TEXTS)) for n in range(64)]

    def job(kind, i):
        return pipeline_scores(pipe, TEXTS[i]) if kind == "pipeline" else forward_result(model, encs[i], "dense")

    results = run_in_threads([functools.partial(job, kind, i) for kind, i in jobs])
    for (kind, i), got in zip(jobs, results):
        if kind == "pipeline":
            assert_same_scores(got, expected[TEXTS[i]], f"pipeline({TEXTS[i]!r})")
        else:
            assert_same(got, dense[i], f"dense forward of {TEXTS[i]!r}")


# ----------------------------------------------------------------------------- feature extraction
def fit_extraction(model, dataset, cache_dir):
    """The extraction `fit_sparse_head` runs (the dense classifier's head input, cached)."""
    from hf_sparse.modeling.fitting import _extract

    columns = {"text": "sentence", "image": "image", "label": "label"}
    feats = _extract(model, dataset, model.processor, columns, 4, None, str(cache_dir), False, "train")
    return feats.features.float().clone(), np.asarray(feats.labels), feats


def test_fit_extraction_while_the_model_serves_pipelines_forwards_and_explanations(model, interleave, tmp_path):
    dataset = word_dataset(40, seed=1)
    X0, y0, _ = fit_extraction(model, dataset, tmp_path / "alone")
    # the cached features are the head's input: the dense head on them gives the dense logits
    enc = model.processor(list(dataset["sentence"][:4]), return_tensors="pt", padding=True)
    torch.testing.assert_close(X0[:4] @ model.dense_head.weight.T + model.dense_head.bias,
                               forward_result(model, enc, "dense")["logits"], atol=1e-5, rtol=1e-5)
    pipe = make_pipeline(model)
    encs = tokenized(model)
    scores = {t: pipeline_scores(pipe, t) for t in TEXTS}
    sparse = [forward_result(model, e, "sparse") for e in encs]
    explained = {t: model.explain(t) for t in TEXTS}
    kinds = ("pipeline", "sparse", "explain")

    def serve(n):
        kind, i = kinds[n % 3], n % len(TEXTS)
        if kind == "pipeline":
            return pipeline_scores(pipe, TEXTS[i])
        if kind == "explain":
            return model.explain(TEXTS[i])
        return forward_result(model, encs[i], "sparse")

    (X, y, feats), served = while_running(lambda: fit_extraction(model, dataset, tmp_path / "threads"), serve)
    assert feats.fingerprint is not None
    assert feats.fingerprint == fit_extraction(model, dataset, tmp_path / "alone")[2].fingerprint
    np.testing.assert_array_equal(y, y0)
    torch.testing.assert_close(X, X0, atol=TOL, rtol=TOL, msg=lambda m: f"cached features: {m}")
    assert len(served) >= 3 * 8
    for n, got in served:
        kind, text = kinds[n % 3], TEXTS[n % len(TEXTS)]
        if kind == "pipeline":
            assert_same_scores(got, scores[text], f"pipeline({text!r}) during an extraction")
        elif kind == "explain":
            assert_same_explanation(got, explained[text], f"explain({text!r}) during an extraction")
        else:
            assert_same(got, sparse[n % len(TEXTS)], f"sparse forward of {text!r} during an extraction")


def test_extract_features_on_a_plain_classifier_while_it_serves(folder, interleave, tmp_path):
    """`extract_features` on a transformers classifier that other threads call at the same time."""
    from transformers import AutoModelForSequenceClassification

    from hf_sparse.features import extract_features

    base = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = minilm_tokenizer()
    dataset = word_dataset(40, seed=2)

    def extract(where):
        feats = extract_features(base, dataset, tok, text_column="sentence", batch_size=4,
                                 cache_dir=str(tmp_path / where), show_progress=False)
        return feats.features.float().clone()

    X0 = extract("alone")
    encs = [minilm_tokenizer()([t], return_tensors="pt") for t in TEXTS]
    with torch.no_grad():
        logits = [base(**e).logits for e in encs]

    def forward(n):
        with torch.no_grad():
            return base(**encs[n % len(TEXTS)]).logits

    X, served = while_running(lambda: extract("threads"), forward)
    torch.testing.assert_close(X, X0, atol=TOL, rtol=TOL, msg=lambda m: f"cached features: {m}")
    for n, got in served:
        torch.testing.assert_close(got, logits[n % len(TEXTS)], atol=TOL, rtol=TOL)


# ----------------------------------------------------------------------------- the dense classifier
@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_the_dense_classifier_leaves_the_model_alone(arch, tmp_path):
    """`dense_head_installed()` / `dense_classifier()` give a classifier with the dense head; the model keeps its
    sparse head meanwhile (roberta's head sits one level down, at classifier.out_proj)."""
    model = SparseHeadForSequenceClassification.from_pretrained(save_text_classifier(tmp_path / arch, arch))
    g = torch.Generator().manual_seed(1)
    weight = model.dense_head.weight.detach().clone() * (torch.rand(model.dense_head.weight.shape, generator=g) < 0.3)
    model.install_sparse_head(weight, torch.zeros(weight.shape[0]))
    enc = model.processor(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        feats = model(**enc, output_contributions=True).features
        sparse = feats @ weight.T
        dense = feats @ model.dense_head.weight.T + model.dense_head.bias
        with model.dense_head_installed() as base:
            assert base.get_submodule(model.config.head_module) is model.dense_head
            assert type(model.sparse_head).__name__ == "SparseLinear"
            torch.testing.assert_close(base(**enc).logits, dense, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model(**enc).logits, sparse, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.dense_classifier()(**enc).logits, dense, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(**enc).logits, sparse, atol=1e-5, rtol=1e-5)
    # the copy shares every tensor but the head's: nothing is duplicated
    view = model.dense_classifier()
    head = model.config.head_module + "."
    own = {n: t.data_ptr() for n, t in model.model.state_dict().items() if not n.startswith(head)}
    theirs = {n: t.data_ptr() for n, t in view.state_dict().items() if not n.startswith(head)}
    assert theirs == own
    assert {n for n in view.state_dict() if n.startswith(head)} == {head + "weight", head + "bias"}


def test_a_head_call_is_seen_only_by_its_own_thread(model):
    """`HeadCall`: the dense head and the captured input apply to the calling thread's forward only."""
    import threading

    from hf_sparse.modeling.sparse_linear import HeadCall

    encs = tokenized(model)
    with torch.no_grad():
        sparse = model(**encs[1]).logits
        inside, other = {}, {}
        call = HeadCall(model.sparse_head, capture=True, dense=model.dense_head)
        with call:
            t = threading.Thread(target=lambda: other.setdefault("logits", model(**encs[1]).logits))
            t.start()
            t.join()
            inside["logits"] = model.model(**encs[0]).logits
    torch.testing.assert_close(other["logits"], sparse)  # the other thread: the sparse head
    torch.testing.assert_close(inside["logits"], call.features @ model.dense_head.weight.T + model.dense_head.bias)
    assert call.calls == 1
    with pytest.raises(RuntimeError, match="one forward pass at a time"):
        with call:
            with call:
                pass


def test_one_tokenizer_shared_by_encode_and_extraction_in_threads(model):
    """`model.encode` pads and truncates at the tokenizer's limit; the extraction truncates at the model's and pads
    itself. Both use `model.processor`, and a fast tokenizer keeps these settings on the object: without a lock,
    each thread's calls get the other's settings (wrong token ids, no error)."""
    from datasets import Dataset

    from hf_sparse.features.extract import _ShardRunner
    from hf_sparse.features.locate import FeatureSpec
    from hf_sparse.modeling.encode import processor_inputs

    words = "good bad fine awful great poor nice dull superb boring warm cold".split()
    texts = [" ".join(words[(i + j) % len(words)] for j in range(20 + 3 * i)) for i in range(24)]
    runner = _ShardRunner(model.model, Dataset.from_dict({"sentence": texts}), model.processor, FeatureSpec("cls"),
                          modality="text", data_column="sentence", label_column=None, max_length=16, batch_size=8,
                          device=torch.device("cpu"), compute_dtype=torch.float32, progress=None)

    def extraction_tokens():
        return [(rows.tolist(), {k: v.tolist() for k, v in b.items()}) for rows, b in runner._batches(0, len(texts))]

    def encode_tokens():
        return {k: v.tolist() for k, v in processor_inputs(model, texts).items()}

    expected = {"extract": extraction_tokens(), "encode": encode_tokens()}
    assert max(len(ids) for ids in expected["encode"]["input_ids"]) > 16  # the two really differ
    jobs = ["extract" if n % 2 else "encode" for n in range(200)]
    results = run_in_threads([extraction_tokens if job == "extract" else encode_tokens for job in jobs])
    wrong = sum(got != expected[job] for job, got in zip(jobs, results))
    assert wrong == 0, f"{wrong} of {len(jobs)} tokenizer calls made in threads got another call's settings"
