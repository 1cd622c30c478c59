"""The block solver's GPU kernels over each class's free columns (``solver/pair_kernels.py``), run on the CPU in
Triton's interpreter (conftest sets ``TRITON_INTERPRET=1``): each product against a float64 hand computation, and
a path whose steps take them against the dense torch code a GPU ran before (issue 16, item 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("triton", reason="the GPU kernels need Triton (the test extras install it)")

from hf_sparse.solver import fit_path  # noqa: E402
from hf_sparse.solver import pair_kernels  # noqa: E402
from hf_sparse.solver.class_products import ClassPattern  # noqa: E402
from hf_sparse.solver.pair_kernels import PairKernels, restricted_products  # noqa: E402


def _problem(n=301, m=40, k=23, density=0.12, seed=0):
    """Columns, probabilities, labels, row weights and a free mask with an empty class and an empty column."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, m, generator=g)
    P = torch.softmax(3 * torch.randn(n, k, generator=g, dtype=torch.float64), 1)
    labels = torch.randint(0, k, (n,), generator=g)
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    free = torch.rand(k, m, generator=g) < density
    free[5, :] = True  # a class with nearly every column free (the most pairs: others in its block stop early)
    free[3] = False  # a class with no free column
    free[:, 7] = False  # a column with no free class
    return X, P, labels, w, free


@pytest.mark.parametrize("n", [1, 64, 301])
def test_change_of_predictions_is_the_product_over_the_free_pairs(n):
    X, _, _, _, free = _problem(n=n)
    g = torch.Generator().manual_seed(1)
    W = torch.randn(free.shape, generator=g, dtype=torch.float64) * free
    bias = torch.randn(free.shape[0], generator=g, dtype=torch.float64)
    expected = X.double() @ W.T + bias
    torch.testing.assert_close(PairKernels.from_mask(free).matvec(X, W, bias=bias), expected, rtol=0, atol=1e-12)
    out = torch.full((n, free.shape[0]), np.nan, dtype=torch.float64)
    assert PairKernels.from_mask(free).matvec(X, W, out=out) is out  # overwritten in place, bias zero
    torch.testing.assert_close(out, X.double() @ W.T, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [5, 301, 3000])
def test_gradient_at_the_free_pairs_and_residual_sums_match_float64(n):
    X, P, labels, w, free = _problem(n=n)
    Y = torch.nn.functional.one_hot(labels, free.shape[0]).double()
    R = w[:, None] * (P - Y)
    values, sums = PairKernels.from_mask(free).gradient(X, P, labels, w)
    torch.testing.assert_close(values, (R.T @ X.double())[free], rtol=0, atol=1e-11)  # the mask's row-major order
    torch.testing.assert_close(sums, R.sum(0), rtol=0, atol=1e-11)
    dense = PairKernels.from_mask(free).dense(values)
    assert torch.equal(dense != 0, free & (dense != 0)) and torch.equal(dense[free], values)
    # the CPU's compiled kernel gives the same pairs in the same order
    compiled, compiled_sums = ClassPattern.from_mask(free).gradient(X, P, labels, w)
    torch.testing.assert_close(values, compiled, rtol=0, atol=1e-11)


@pytest.mark.parametrize("n", [7, 2000])
def test_shared_terms_are_the_slope_and_curvature_along_moving_a_columns_classes_together(n):
    X, P, _, w, free = _problem(n=n)
    q = P @ free.double()  # each column's free classes' probability
    x = X.double()
    first, curvature = PairKernels.from_mask(free).shared_terms(X, P, w)
    torch.testing.assert_close(first, (w[:, None] * x * q).sum(0), rtol=0, atol=1e-11)
    qc = q.clamp(0, 1)
    torch.testing.assert_close(curvature, (w[:, None] * x ** 2 * qc * (1 - qc)).sum(0), rtol=0, atol=1e-11)
    assert first[7] == 0 and curvature[7] == 0  # the column without free classes


def test_class_blocks_match_float64_with_the_curvatures_made_in_the_kernel():
    """Each class's ``[X_F, 1]' diag(w p (1 - p)) [X_F, 1]`` (bias slot ``m``, padding ``m + 1``): one slot, a few,
    and a block past 32 slots (the 64-wide kernel), at ~1e-7 of its largest entry (float32 products)."""
    X, P, _, w, _ = _problem(n=700, m=70)
    n, m = X.shape
    rng = np.random.default_rng(0)
    sizes = np.array([3, 1, 17, 5, 40])
    classes = np.array([0, 4, 7, 11, 22])
    slots = np.full((5, 40), m + 1)
    for i, size in enumerate(sizes):
        slots[i, :size - 1] = rng.choice(m, size - 1, replace=False)
        slots[i, size - 1] = m
    H = pair_kernels.class_grams(X, P, w, slots, sizes, classes)
    assert H.shape == (5, 64, 64) and H.dtype == torch.float64
    ext = torch.cat([X.double(), torch.ones(n, 1, dtype=torch.float64), torch.zeros(n, 1, dtype=torch.float64)], 1)
    for i, c in enumerate(classes):
        A = ext[:, torch.as_tensor(slots[i])]
        expected = A.T @ ((w * P[:, c] * (1 - P[:, c]))[:, None] * A)
        torch.testing.assert_close(H[i, :40, :40], expected, rtol=0, atol=3e-7 * float(expected.abs().max()))
        assert not H[i, 40:].any() and not H[i, :, 40:].any()
    with pytest.raises(ValueError, match="up to 64 slots"):
        pair_kernels.class_grams(X, P, w, np.zeros((1, 65), dtype=np.int64), np.array([65]), np.array([0]))


_COMPILE_SCRIPT = """
import json, os, subprocess, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from hf_sparse.solver.pair_kernels import _kernels

matvec, gradient, shared_terms, class_grams = _kernels()
X = {"X": "*fp32", "stride_x": "i32"}
P = {"P": "*fp64", "stride_p": "i32"}
kernels = [
    (matvec, {**X, "ptr": "*i64", "most": "*i64", "cols": "*i64", "values": "*fp64", "bias": "*fp64", "out": "*fp64",
              "stride_out": "i32", "n": "i32", "k": "i32"}, {"BLOCK_R": 64, "BLOCK_C": 32}, 4),
    (gradient, {**X, **P, "labels": "*i64", "weight": "*fp64", "pair_classes": "*i64", "pair_cols": "*i64",
                "partial": "*fp64", "n": "i32", "n_pairs": "i32", "rows_per_split": "i32"},
     {"BLOCK_R": 64, "BLOCK_P": 32}, 4),
    (shared_terms, {**X, **P, "weight": "*fp64", "ptr": "*i64", "most": "*i64", "classes": "*i64",
                    "partial": "*fp64", "n": "i32", "m": "i32", "rows_per_split": "i32"},
     {"BLOCK_R": 64, "BLOCK_J": 32}, 4),
] + [(class_grams, {**X, **P, "weight": "*fp64", "classes": "*i64", "slots": "*i64", "partial": "*fp32", "n": "i32",
                    "m": "i32", "rows_per_split": "i32"}, {"QP": q, "BLOCK_R": 64}, 4 if q <= 32 else 8)
      for q in (16, 32, 64)]
from triton.backends.nvidia.compiler import get_ptxas
ptxas = get_ptxas(90).path  # the one Triton itself takes for this chip (Triton 3.9's PTX is newer than its legacy one)
out = []
for fn, types, constants, warps in kernels:
    signature = {**types, **dict.fromkeys(constants, "constexpr")}
    names = list(signature)
    source = ASTSource(fn=fn, signature=signature, constexprs={(names.index(c),): v for c, v in constants.items()})
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(compiled.asm["ptx"])
    report = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", f.name, "-o", os.devnull],
                            capture_output=True, text=True, check=True).stderr
    out.append([fn.__name__, constants, [line for line in report.splitlines() if "spill" in line]])
print(json.dumps(out))
"""


@pytest.mark.slow  # about 20 s: six kernels compiled
def test_every_kernel_compiles_for_an_h100_without_spilling_registers():
    """Triton's own compiler and ptxas, on the CPU (no GPU needed): every kernel and width the solver launches
    compiles for sm_90 with no register spills. The first version did not compile at all (Triton 3.6's layout pass
    failed on a masked load whose result indexed a second load), which only a GPU run would have shown."""
    import json
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(found) == 6
    for name, constants, spills in found:
        assert spills and all(" 0 bytes spill stores" in line for line in spills), (name, constants, spills)


def test_kernels_refuse_what_they_do_not_take():
    X, P, labels, w, free = _problem()
    with pytest.raises(ValueError, match="float64"):
        PairKernels.from_mask(free).gradient(X, P.float(), labels, w)
    with pytest.raises(ValueError, match="contiguous rows"):
        PairKernels.from_mask(free).shared_terms(X.T.contiguous().T, P, w)


def test_the_environment_turns_the_kernels_off(monkeypatch):
    pair_kernels.available.cache_clear()
    monkeypatch.setenv("HF_SPARSE_TRITON", "0")
    try:
        assert not pair_kernels.available()
    finally:
        pair_kernels.available.cache_clear()
    monkeypatch.delenv("HF_SPARSE_TRITON")
    assert pair_kernels.available()


def test_the_cpu_takes_its_compiled_kernels_and_a_gpu_triton_s():
    X, _, _, _, free = _problem()
    assert isinstance(restricted_products(X, free), ClassPattern)
    assert restricted_products(None, free) is None  # columns streamed, not held: the dense products
    assert not PairKernels.applies(X)  # CPU tensors: the kernels only run there in the tests' interpreter


@pytest.mark.parametrize("kernel_slots", [64, 4])
def test_block_path_with_the_kernels_equals_the_dense_torch_code(monkeypatch, kernel_slots):
    """The block method's steps on the GPU's route, with the kernels (interpreted here) and without: the same
    objective at every point, each certified, and the kernels did run. ``kernel_slots``: class blocks up to that
    size from the kernel, the larger by batched products (4: both routes in one build)."""
    import hf_sparse.solver.class_blocks as class_blocks
    from _torch_route import force_pair_kernels, force_torch_route

    force_torch_route(monkeypatch.setattr)
    monkeypatch.setattr(class_blocks, "GRAM_ROWS_PER_BATCH", {"cpu": 16})
    rng = np.random.default_rng(3)
    n, d, k = 240, 10, 12
    X = rng.standard_normal((n, d))
    y = (X @ (rng.standard_normal((d, k)) * (rng.random((d, k)) < 0.4)) + rng.gumbel(size=(n, k))).argmax(1)
    options = dict(n_lambdas=6, lambda_min_ratio=0.05, dtype=torch.float64, tol=1e-9, method="block")
    dense = fit_path(X, y, **options)

    calls = []
    for name in ("matvec", "gradient", "shared_terms"):
        original = getattr(PairKernels, name)
        monkeypatch.setattr(PairKernels, name, lambda self, *a, _f=original, _n=name, **kw: calls.append(_n) or _f(
            self, *a, **kw))
    grams = pair_kernels.class_grams
    monkeypatch.setattr(pair_kernels, "class_grams", lambda *a, **kw: calls.append("class_grams") or grams(*a, **kw))
    force_pair_kernels(monkeypatch.setattr, gram_slots=kernel_slots)
    kernels = fit_path(X, y, **options)
    assert {"matvec", "gradient", "shared_terms", "class_grams"} <= set(calls)
    assert all(kernels.metric("converged")) and all(dense.metric("converged"))
    for a, b in zip(dense, kernels):
        assert b.metrics["gap"] <= 1e-9 * 1.0001 or b.metrics["gap"] <= 1e-9 * abs(b.metrics["objective"])
        assert b.metrics["objective"] == pytest.approx(a.metrics["objective"], rel=1e-8)
        torch.testing.assert_close(a.weight, b.weight, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_two_processes_with_the_kernels_equal_one(tmp_path, monkeypatch):
    """The kernels' partial sums over each process's rows, summed across processes (``accelerate launch`` on
    several GPUs; here two CPU processes in Triton's interpreter, launched by torchrun): the same path as one
    process with the dense torch code."""
    import hf_sparse.solver.class_blocks as class_blocks
    from _torch_route import force_torch_route
    from test_solver import _fit_in_two_processes

    force_torch_route(monkeypatch.setattr)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    rng = np.random.default_rng(5)
    n, d, k = 401, 12, 8
    X = rng.standard_normal((n, d))
    y = (X @ (rng.standard_normal((d, k)) * (rng.random((d, k)) < 0.4)) + rng.gumbel(size=(n, k))).argmax(1)
    monkeypatch.setattr(class_blocks, "GRAM_ROWS_PER_BATCH", {"cpu": 16})
    single = fit_path(X, y, n_lambdas=5, lambda_min_ratio=0.05, dtype=torch.float64, tol=1e-10, method="block")
    assert all(single.metric("converged"))
    distributed = _fit_in_two_processes(tmp_path, "torchrun", X=X, y=y, lambdas=single.lambdas.numpy(),
                                        family="multinomial", group=False, method="block", torch_route=np.array(1),
                                        pair_kernels=np.array(1))
    assert distributed.info["world_size"] == 2
    for a, b in zip(single, distributed):
        torch.testing.assert_close(a.weight, b.weight, atol=1e-7, rtol=1e-6)
        assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=1e-9)
