"""The path solver against independent float64 references, and its contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import ElasticNet as SkElasticNet
from sklearn.linear_model import MultiTaskElasticNet

from hf_sparse.solver import RegularizationPath, fit_path

from solver_helpers import ALPHA, RTOL, make_data, sklearn_logistic, suboptimality
from solver_reference import fista, standardize, targets


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("family", ["multinomial", "multilabel", "gaussian"])
def test_objective_matches_float64_reference(family, group):
    k = 3
    X, y = make_data(family, k=k)
    path = fit_path(torch.from_numpy(X), torch.as_tensor(y), family=family, alpha=ALPHA, n_lambdas=12,
                    lambda_min_ratio=0.02, group=group, tol=1e-8, dtype=torch.float64)
    Xs, _, _ = standardize(X)
    Y = targets(y, family, k)
    for i in (2, 6, 11):
        lam = path[i].lam
        if family == "gaussian" and not group:
            ref = np.stack([SkElasticNet(alpha=lam, l1_ratio=ALPHA, tol=1e-14, max_iter=100_000)
                            .fit(Xs, Y[:, c]).coef_ for c in range(k)])
            reference = (ref, Y.mean(0) - ref @ Xs.mean(0))
        elif family == "gaussian" and group:
            model = MultiTaskElasticNet(alpha=lam, l1_ratio=ALPHA, tol=1e-14, max_iter=100_000).fit(Xs, Y)
            reference = (model.coef_, model.intercept_)
        elif family == "multinomial" and not group:
            reference = sklearn_logistic(Xs, y, lam, ALPHA)
        else:
            reference = fista(Xs, Y, lam, ALPHA, family, group=group)
        assert suboptimality(path, X, y, family, k, i, reference, group) <= RTOL
        assert path[i].metrics["gap"] <= 1e-8


@pytest.mark.slow  # ~35 s on the shared 2-core box
def test_float32_default_reaches_tolerance_at_alpha_099():
    X, y = make_data("multinomial", n=600, d=20, k=4, seed=3)
    path = fit_path(X, y, n_lambdas=10, lambda_min_ratio=0.01)  # float32, alpha 0.99, tol 1e-6
    Xs, _, _ = standardize(X)
    Y = targets(y, "multinomial", 4)
    for i in (4, 9):
        reference = fista(Xs, Y, path[i].lam, 0.99, "multinomial", iterations=30000)
        assert suboptimality(path, X, y, "multinomial", 4, i, reference) <= RTOL
        assert path[i].metrics["converged"]


def test_two_class_softmax_has_two_rows_and_matches_sklearn():
    X, y = make_data("multinomial", k=2, seed=1)
    path = fit_path(X, y, alpha=ALPHA, n_lambdas=10, lambda_min_ratio=0.02, dtype=torch.float64, tol=1e-9)
    assert path[5].weight.shape == (2, X.shape[1])
    torch.testing.assert_close(path[5].weight[0], -path[5].weight[1])
    Xs, _, _ = standardize(X)
    lam = path[7].lam
    # softmax rows [-beta/2, beta/2] <=> logistic beta with L1 lam*alpha and L2 lam*(1-alpha)/2:
    # scikit-learn's (l1_ratio, C) for that pair
    l1, l2 = lam * ALPHA, lam * (1 - ALPHA) / 2
    lam_sk, ratio = l1 + l2, l1 / (l1 + l2)
    coef, intercept = sklearn_logistic(Xs, y, lam_sk, ratio)
    reference = (np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2]))
    assert suboptimality(path, X, y, "multinomial", 2, 7, reference) <= RTOL


def test_sample_weights_match_sklearn():
    X, y = make_data("multinomial", k=3, seed=2)
    weights = np.random.default_rng(0).uniform(0, 3, len(y))
    path = fit_path(X, y, alpha=ALPHA, n_lambdas=8, lambda_min_ratio=0.05, sample_weight=weights,
                    dtype=torch.float64, tol=1e-9)
    Xs, _, _ = standardize(X)
    reference = sklearn_logistic(Xs, y, path[6].lam, ALPHA, weights)
    assert suboptimality(path, X, y, "multinomial", 3, 6, reference, weights=weights) <= RTOL
    # integer weights are the same as repeating rows
    counts = np.random.default_rng(1).integers(0, 3, len(y))
    lams = path.lambdas[:5]
    weighted = fit_path(X, y, alpha=ALPHA, lambdas=lams, sample_weight=counts, dtype=torch.float64, tol=1e-10)
    repeated = fit_path(np.repeat(X, counts, 0), np.repeat(y, counts), alpha=ALPHA, lambdas=lams,
                        dtype=torch.float64, tol=1e-10)
    # (standardization differs: repeated rows change mean/std, so compare objectives' predictions)
    assert weighted[4].metrics["n_features"] > 0 and repeated[4].metrics["n_features"] > 0


@pytest.mark.parametrize("group", [False, True])
def test_lam_max_is_exact(group):
    X, y = make_data("multinomial", k=3, seed=4)
    path = fit_path(X, y, n_lambdas=3, lambda_min_ratio=0.5, group=group)
    assert path[0].metrics["nnz"] == 0 and path.lam_max == pytest.approx(path[0].lam)
    below = fit_path(X, y, lambdas=[path.lam_max * 0.999], group=group)
    assert below[0].metrics["nnz"] > 0


@pytest.mark.parametrize("sample_weight", [False, True])
def test_lam_max_of_a_softmax_head_against_its_closed_form(sample_weight):
    """At lam_max every weight is zero and the bias is optimal: each class's probability is its weighted frequency
    (a class without rows: 0), so lam_max is the largest |X_std^T w (freq - Y)| / alpha, written out here in float64.
    The bias is found by Newton steps in k dimensions (no pass over the rows): its gradient must vanish."""
    from hf_sparse.solver.design import Design
    from hf_sparse.solver.fit import _PathFitter
    from hf_sparse.solver.problem import Problem

    rng = np.random.default_rng(11)
    n, d, k = 500, 6, 7
    X = rng.standard_normal((n, d))
    y = rng.choice([0, 1, 2, 4, 5, 6], size=n, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])  # class 3 has no rows
    w = rng.random(n) if sample_weight else np.ones(n)
    problem = Problem.build(Design.build(torch.as_tensor(X), device="cpu", dtype=torch.float64), torch.as_tensor(y),
                            family="multinomial", n_outputs=k, sample_weight=torch.as_tensor(w))
    fitter = _PathFitter(problem, alpha=ALPHA, group=False, tol=1e-6, val=None, method="block")
    lam = fitter.lam_max()
    Y = np.eye(k)[y]
    freq = (w / w.sum()) @ Y
    Xs = (X - X.mean(0)) / X.std(0)
    want = np.abs(Xs.T @ ((w / w.sum())[:, None] * (freq - Y))).max() / ALPHA
    assert lam == pytest.approx(want * (1 + 1e-6), rel=1e-9)
    assert float(problem.bias_gradient(fitter.state.Z).abs().max()) < 1e-12
    assert float(torch.softmax(fitter.state.b, 0)[3]) < 1e-16  # the empty class: its optimum is minus infinity


def test_constant_column_and_raw_space_predictions():
    X, y = make_data("multinomial", k=3, seed=5)
    X[:, 3] = 7.0
    path = fit_path(X, y, n_lambdas=10, lambda_min_ratio=0.01, X_val=X, y_val=y)
    last = path[-1]
    assert torch.isfinite(last.weight).all() and (last.weight[:, 3] == 0).all()
    logits = torch.from_numpy(X) @ last.weight.T + last.bias
    accuracy = (logits.argmax(1).numpy() == y).mean()
    assert accuracy == pytest.approx(last.metrics["val_accuracy"])


def test_metrics_and_path_shape():
    X, y = make_data("multinomial", k=3)
    path = fit_path(X, y, n_lambdas=7, lambda_min_ratio=0.05, X_val=X[:100], y_val=y[:100])
    assert len(path) == 7
    lams = path.lambdas
    assert (lams[1:] < lams[:-1]).all()
    m = path[-1].metrics
    for key in ("nnz", "features_per_class", "n_features", "train_loss", "train_accuracy", "val_loss",
                "val_accuracy", "gap", "iterations", "seconds"):
        assert key in m
    assert m["nnz"] == sum(m["features_per_class"]) == int((path[-1].weight != 0).sum())


def test_select_features_per_class_gives_exactly_k():
    X, y = make_data("multinomial", n=400, d=20, k=3, seed=6)
    path = fit_path(X, y, n_lambdas=20, lambda_min_ratio=0.01, X_val=X, y_val=y)
    i = path.select(features_per_class=4)
    assert path.selected.metrics["features_per_class"] == [4, 4, 4]
    assert min(path[i].metrics["features_per_class"]) >= 4
    assert i == 0 or min(path[i - 1].metrics["features_per_class"]) < 4
    # the refit point is optimal on its support: no other point with that support does better
    assert path.selection["rule"] == "features_per_class"


def test_select_by_accuracy_and_lambda_and_relax():
    X, y = make_data("multinomial", n=400, d=20, k=3, seed=7)
    path = fit_path(X[:300], y[:300], n_lambdas=20, lambda_min_ratio=0.01, X_val=X[300:], y_val=y[300:])
    accs = path.metric("val_accuracy")
    i = path.select(max_accuracy_drop=0.02)
    assert accs[i] >= max(accs) - 0.02 and all(a < max(accs) - 0.02 for a in accs[:i])
    assert path.select(lam=path[5].lam * 1.01) == 5
    path.select(features_per_class=3, relax=True)
    gain = path.selection["relax_gain"]
    assert set(gain) == {"metric", "gain", "kept"}
    assert path.selected.metrics["features_per_class"] == [3, 3, 3]
    with pytest.raises(ValueError, match="exactly one"):
        path.select(features_per_class=3, lam=0.1)


def test_save_load_round_trip_and_tampering(tmp_path):
    X, y = make_data("multinomial", k=3)
    path = fit_path(X, y, n_lambdas=6, lambda_min_ratio=0.05)
    path.select(features_per_class=2)
    path.save(tmp_path / "p")
    loaded = RegularizationPath.load(tmp_path / "p")
    assert len(loaded) == len(path) and torch.equal(loaded.lambdas, path.lambdas)
    for a, b in zip(path, loaded):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) and a.metrics == b.metrics
    assert torch.equal(loaded.selected.weight, path.selected.weight)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["path.json", "path.safetensors"]
    with pytest.raises(ValueError, match="pass X= and y="):
        loaded.select(features_per_class=1)
    loaded.select(features_per_class=1, X=X, y=y)
    assert loaded.selected.metrics["features_per_class"] == [1, 1, 1]
    weights = tmp_path / "p" / "path.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="checksum"):
        RegularizationPath.load(tmp_path / "p")
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="path.safetensors"):
        RegularizationPath.load(tmp_path / "p")


def test_streamed_memmap_equals_in_memory(tmp_path):
    X, y = make_data("multinomial", n=500, d=16, k=3)
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=X.shape)
    mm[:] = X
    mm.flush()
    lams = fit_path(X, y, n_lambdas=6, lambda_min_ratio=0.05).lambdas
    a = fit_path(X, y, lambdas=lams, dtype=torch.float64, tol=1e-10)
    b = fit_path(np.load(tmp_path / "X.npy", mmap_mode="r"), y, lambdas=lams, chunk_rows=128,
                 dtype=torch.float64, tol=1e-10)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.weight, q.weight, atol=1e-6, rtol=1e-5)


def test_progress_bar_and_plot(capsys):
    X, y = make_data("multinomial", k=3)
    path = fit_path(X, y, n_lambdas=5, lambda_min_ratio=0.1, progress=True, X_val=X, y_val=y)
    assert "lambda path" in capsys.readouterr().err
    fig = path.plot()
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "accuracy" in labels and "features per class" in labels
    assert all(ax.get_xscale() == "log" for ax in fig.axes)


@pytest.mark.parametrize("make_bad, message", [
    (lambda X, y: (np.where(np.arange(len(X))[:, None] == 4, np.nan, X), y), r"NaN or inf values in rows \[4\]"),
    (lambda X, y: (X, y[:-1]), "different lengths"),
    (lambda X, y: (X[:0], y[:0]), "empty"),
    (lambda X, y: (X, np.zeros_like(y)), "fewer than two classes"),
    (lambda X, y: (X, y - 1), "negative class"),
    (lambda X, y: (X, y + 0.5), "integer class indices"),
    (lambda X, y: (X[:, 0], y), "2-D"),
])
def test_bad_input_errors(make_bad, message):
    X, y = make_data("multinomial", k=3)
    Xb, yb = make_bad(X, y)
    with pytest.raises((ValueError, TypeError), match=message):
        fit_path(Xb, yb, n_lambdas=3)


def test_bad_option_errors():
    X, y = make_data("multinomial", k=3)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]"):
        fit_path(X, y, alpha=0)
    with pytest.raises(ValueError, match="non-negative"):
        fit_path(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="out of range"):
        fit_path(X, y, n_classes=2)
    with pytest.raises(ValueError, match="Unknown family"):
        fit_path(X, y, family="poisson")
    with pytest.raises(ValueError, match="decreasing"):
        fit_path(X, y, lambdas=[0.01, 0.1])
    with pytest.raises(ValueError, match="multilabel y must be 2-D"):
        fit_path(X, y, family="multilabel")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit_in_two_processes(tmp_path, launcher: str = "torchrun", **data) -> RegularizationPath:
    """The path of ``_dist_solver_worker.py`` run on 2 CPU processes (``data``: its ``.npz`` arrays), as rank 0 saved
    it. ``launcher``: ``"torchrun"`` (``torch.distributed.run``) or ``"accelerate"`` (``accelerate launch``: on CPU
    processes its multi-GPU launcher with ``ACCELERATE_USE_CPU=1``, which makes them a gloo group)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    np.savez(tmp_path / "data.npz", **data)
    worker = Path(__file__).with_name("_dist_solver_worker.py")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port())]
    elif launcher == "accelerate":
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(_free_port())]
    else:
        raise ValueError(f"unknown launcher {launcher!r}")
    done = subprocess.run(cmd + [str(worker), str(tmp_path / "data.npz"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return RegularizationPath.load(tmp_path / "out")


@pytest.mark.slow
@pytest.mark.parametrize("family, group", [("multinomial", False), ("multilabel", True)])
def test_two_processes_equal_one(tmp_path, family, group):
    X, y = make_data(family, n=401, d=10, k=3, seed=8)  # odd n: unequal shards
    single = fit_path(X, y, family=family, group=group, n_lambdas=6, lambda_min_ratio=0.05,
                      dtype=torch.float64, tol=1e-10)
    distributed = _fit_in_two_processes(tmp_path, X=X, y=y, lambdas=single.lambdas.numpy(), family=family,
                                        group=group)
    torch.testing.assert_close(distributed.mean, single.mean)
    for a, b in zip(single, distributed):
        torch.testing.assert_close(a.weight, b.weight, atol=1e-7, rtol=1e-6)
        torch.testing.assert_close(a.bias, b.bias, atol=1e-7, rtol=1e-6)
        assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=1e-9)


@pytest.mark.slow
def test_two_processes_with_different_thread_counts_form_the_same_class_blocks(tmp_path, monkeypatch):
    """The block method routes each class block to the compiled kernel or to BLAS by the thread count (a kernel
    that runs classes in parallel leaves threads idle below 4 classes a thread); the processes sum their parts, so
    every process must route alike: one process with 1 thread and one with 2, 6 classes of up to 150 slots (the
    compiled kernel at 1 thread, BLAS past 128 slots at 2 on its own), equal the one-process path."""
    import numba

    import hf_sparse.solver.class_blocks as class_blocks

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs numba to allow 2 threads")
    rng = np.random.default_rng(3)
    n, d, k = 401, 150, 6
    X = rng.standard_normal((n, d))
    y = (X @ rng.standard_normal((d, k)) + 3 * rng.gumbel(size=(n, k))).argmax(1)
    sizes = []
    build = class_blocks.ClassBlocks.build
    monkeypatch.setattr(class_blocks.ClassBlocks, "build", lambda *a, **kw: sizes.append(
        int(a[2].sum(1).max()) + 1) or build(*a, **kw))
    with pytest.warns(RuntimeWarning, match="stopped above"):  # the block method at 6 classes (not its regime)
        # leaves the densest point above 1e-10: what is compared here is the two runs, not the certificate
        single = fit_path(X, y, n_lambdas=4, lambda_min_ratio=1e-3, dtype=torch.float64, tol=1e-10, method="block")
    assert max(sizes) > class_blocks._FEW_CLASSES_MAX_SLOTS  # some blocks past 128 slots
    distributed = _fit_in_two_processes(tmp_path, X=X, y=y, lambdas=single.lambdas.numpy(), family="multinomial",
                                        group=False, method="block", threads=np.array([1, 2]))
    for a, b in zip(single, distributed):
        torch.testing.assert_close(a.weight, b.weight, atol=1e-7, rtol=1e-6)
        assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=1e-9)


@pytest.mark.slow
def test_two_processes_with_sign_steps_and_different_thread_counts_equal_one(tmp_path, monkeypatch):
    """The coupled model's sign steps (forced: coordinate descent stops after a sweep) factor the model with LAPACK,
    whose rounding may follow the thread count (MKL documents it); each process solves the model itself and they
    must not drift apart, so they take the mean of their solutions. One process with 1 thread and one with 2 equal
    the one-process path. (At this size their solutions also agree without the mean: the test does not show a
    drift, only that the processes still agree with it.)"""
    import hf_sparse.solver.sign_solve as sign_solve

    X, y = make_data("multinomial", n=401, d=30, k=4, seed=9)
    taken = []
    original = sign_solve._sign_step
    monkeypatch.setattr(sign_solve, "FIRST_SWEEPS", 1)
    monkeypatch.setattr(sign_solve, "ROUND_SWEEPS", 1)
    monkeypatch.setattr(sign_solve, "_sign_step", lambda *a: taken.append(1) or original(*a))
    single = fit_path(X, y, n_lambdas=6, lambda_min_ratio=0.01, dtype=torch.float64, tol=1e-10)
    assert taken  # the sign steps ran
    distributed = _fit_in_two_processes(tmp_path, X=X, y=y, lambdas=single.lambdas.numpy(), family="multinomial",
                                        group=False, sign_steps=np.array(True), torch_threads=np.array([1, 2]))
    for a, b in zip(single, distributed):
        torch.testing.assert_close(a.weight, b.weight, atol=1e-7, rtol=1e-6)
        torch.testing.assert_close(a.bias, b.bias, atol=1e-7, rtol=1e-6)
        assert b.metrics["converged"]


@pytest.mark.slow
@pytest.mark.parametrize("method, launcher", [("block", "torchrun"), ("bound", "torchrun"), ("block", "accelerate")])
def test_two_processes_equal_one_in_the_torch_code_of_a_gpu(tmp_path, monkeypatch, method, launcher):
    """The torch code a GPU runs (forced on these CPU processes: residuals, curvatures and class blocks in row
    chunks, the blocks as batched products over batches of rows), in two processes as in one: what
    ``accelerate launch`` on several GPUs runs, launched by torchrun and by ``accelerate launch`` itself."""
    import hf_sparse.solver.class_blocks as class_blocks
    from _torch_route import force_torch_route

    force_torch_route(monkeypatch.setattr)
    monkeypatch.setattr(class_blocks, "GRAM_ROWS_PER_BATCH", {"cpu": 16})  # the GPU's batches of rows, smaller
    rng = np.random.default_rng(5)
    n, d, k = 401, 12, 8
    X = rng.standard_normal((n, d))
    y = (X @ (rng.standard_normal((d, k)) * (rng.random((d, k)) < 0.4)) + rng.gumbel(size=(n, k))).argmax(1)
    single = fit_path(X, y, n_lambdas=5, lambda_min_ratio=0.05, dtype=torch.float64, tol=1e-10, method=method)
    assert all(single.metric("converged"))
    distributed = _fit_in_two_processes(tmp_path, launcher, X=X, y=y, lambdas=single.lambdas.numpy(),
                                        family="multinomial", group=False, method=method, torch_route=np.array(1))
    assert distributed.info["world_size"] == 2  # two processes did fit it (a launcher that ran one would pass below)
    for a, b in zip(single, distributed):
        torch.testing.assert_close(a.weight, b.weight, atol=1e-7, rtol=1e-6)
        assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=1e-9)


def test_stop_at_features_per_class_and_binary_relaxed_refit():
    X, y = make_data("multinomial", n=400, d=20, k=2, seed=9)
    path = fit_path(X[:300], y[:300], n_lambdas=40, lambda_min_ratio=1e-3, stop_at_features_per_class=3,
                    X_val=X[300:], y_val=y[300:])
    assert min(path[-1].metrics["features_per_class"]) >= 3 > min(path[-2].metrics["features_per_class"])
    path.select(features_per_class=3, relax=True)
    chosen = path[path.selection["index"]]
    relaxed = path.selected
    assert relaxed.metrics["features_per_class"] == [3, 3]
    assert torch.equal(relaxed.support, path._refit(chosen.lam, _top3(chosen, path), chosen).support)
    # the light penalty lets the weights grow: the data-fit term goes down
    assert relaxed.metrics["train_loss"] < chosen.metrics["train_loss"] - 1e-4


def _top3(point, path):
    return _top(point, path, 3)


def _top(point, path, k):
    scaled = point.weight.abs() * path.std
    support = torch.zeros_like(scaled, dtype=torch.bool)
    support.scatter_(1, torch.topk(scaled, k, dim=1).indices, True)
    return support & (scaled > 0)


def test_relaxed_refit_keeps_every_selected_feature_of_collinear_data():
    # Features that are nearly one direction (as a long fine-tune leaves them): an L1 refit at lam/100 keeps only
    # 2 of the 4 selected features per class; the relaxed refit must keep all of them.
    g = torch.Generator().manual_seed(3)
    base = torch.randn(600, 1, generator=g)
    X = base + 0.01 * torch.randn(600, 20, generator=g)
    y = (base[:, 0] + 0.3 * torch.randn(600, generator=g) > 0).long()
    path = fit_path(X, y, n_lambdas=30, lambda_min_ratio=1e-3)
    path.select(features_per_class=4)
    selected = path.selected
    path.select(features_per_class=4, relax=True)
    assert path.selection["relax_gain"]["kept"]
    assert selected.metrics["features_per_class"] == [4, 4] == path.selected.metrics["features_per_class"]
    assert torch.equal(path.selected.support, selected.support)
