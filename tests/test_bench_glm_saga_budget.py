"""The benchmark's time budget for glm_saga (benchmarks/reference_solvers.py, ``--glm-saga-budget``)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from objective import lam_max, lambda_path  # noqa: E402
from reference_solvers import run_glm_saga  # noqa: E402


def test_a_budget_stops_glm_saga_and_reports_what_it_finished():
    """With a budget glm_saga stops at the first epoch past it: the lambdas it finished keep their weights and
    times, the one it was on is reported unfinished (seconds and epochs so far), the rest are not run, and the
    path's seconds are what was measured (at least the budget: a lower bound on its own time)."""
    pytest.importorskip("glm_saga", reason="glm_saga comes with the bench extra (pip install -e '.[bench]')")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 6)).astype(np.float32)
    y = (X[:, :3] @ rng.standard_normal((3, 20))).argmax(1)  # 20 classes: glm_saga's lambdas take many epochs
    lambdas = lambda_path(lam_max(X.astype(np.float64), y, 0.99, k=20), 8, 1e-2)
    budget = 1.0
    result = run_glm_saga(X, y, lambdas, 0.99, k=20, budget_seconds=budget)
    unfinished = result.settings["unfinished"]
    i = unfinished["index"]
    assert i < len(lambdas) and unfinished["epochs"] >= 1
    assert all(t is not None and w is not None for t, w in zip(result.per_lambda_seconds[:i], result.weights[:i]))
    assert all(t is None and w is None for t, w in zip(result.per_lambda_seconds[i:], result.weights[i:]))
    assert result.seconds >= 0.99 * budget and not result.estimated  # its lambdas' own seconds, loop overhead aside
    assert result.seconds == pytest.approx(sum(result.per_lambda_seconds[:i]) + unfinished["seconds"])


def test_the_budgeted_loader_raises_at_the_first_epoch_past_its_deadline():
    """The wrapper glm_saga iterates (no glm_saga needed): each epoch is a fresh iteration of the loader, counted;
    one that would start past the deadline raises; length and attributes are the loader's."""
    import time

    from reference_solvers import _Budgeted, _OutOfBudget

    class Loader(list):
        batch_size = 2

    loader = _Budgeted(Loader([1, 2, 3]), time.perf_counter() + 3600)
    assert [list(loader), list(loader)] == [[1, 2, 3], [1, 2, 3]] and loader.epochs == 2
    assert len(loader) == 3 and loader.batch_size == 2
    loader.deadline = time.perf_counter() - 1
    with pytest.raises(_OutOfBudget):
        iter(loader)
    assert loader.epochs == 2
