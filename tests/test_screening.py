"""The working set of a path point (`solver/screening.py`, `_PathFitter.solve`): the strong rule's candidates, capped
and ranked by their scores extrapolated to the new lambda.

Checked by hand (which candidates a rank admits, the extrapolation), in the fitter's plumbing (the rank it passes is
the extrapolation of its last two gradients), and on a path: ranked by the extrapolated scores, the first rounds
leave out fewer of the weights that the next point makes active than ranked by the last point's scores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import hf_sparse.solver.path_fitter as path_fitter
from hf_sparse.solver.design import Design
from hf_sparse.solver.path_fitter import _PathFitter
from hf_sparse.solver.problem import Problem
from hf_sparse.solver.screening import extrapolated_gradient, working_set
from hf_sparse.solver.secant import MAX_RATIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from synthetic import deep_features  # noqa: E402


def test_working_set_admits_the_candidates_with_the_largest_rank():
    """27 strong-rule candidates and no active weight: 10 join (the cap's floor). Without a rank the 10 largest
    scores; with one, the 10 largest ranks among the candidates, never a weight the strong rule refused."""
    scores = torch.linspace(3.0, 0.1, 40)  # falling by 0.074: the first 27 pass the threshold 1.0
    none_active = torch.zeros(40, dtype=torch.bool)
    candidates = scores >= 1.0
    assert int(candidates.sum()) == 27
    by_score = working_set(scores, 1.0, none_active)
    assert torch.nonzero(by_score).flatten().tolist() == list(range(10))
    rank = torch.arange(40, dtype=torch.float32)  # prefers the last entries: those past 26 are not candidates
    by_rank = working_set(scores, 1.0, none_active, rank=rank)
    assert torch.nonzero(by_rank).flatten().tolist() == list(range(17, 27))
    active = torch.zeros(40, dtype=torch.bool)
    active[35:] = True  # active weights stay, whatever their score or rank
    assert bool(working_set(scores, 1.0, active, rank=rank)[35:].all())
    assert torch.equal(working_set(scores, 1.0, none_active, limit=False, rank=rank), candidates)  # no cap: all


def test_extrapolated_gradient_by_hand():
    """The line through (2.0, G0) and (1.0, G1), read at 0.5; exact for a gradient linear in lambda. A repeated
    lambda, a step back up the path or one longer than ``MAX_RATIO`` times the last (the path's first, 1e-6 below
    lam_max's own point) give the last gradient."""
    g = extrapolated_gradient(torch.tensor([2.0, -1.0]), 1.0, torch.tensor([1.0, -1.0]), 2.0, 0.5)
    assert g.tolist() == [2.5, -1.0]
    A, B = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    assert torch.allclose(extrapolated_gradient(A + 0.3 * B, 0.3, A + 0.7 * B, 0.7, 0.05), A + 0.05 * B, atol=1e-14)
    same = torch.tensor([4.0])
    for earlier_lam, new_lam in ((1.0, 0.5), (2.0, 1.5), (1.0 + 1e-6, 0.5), (2.0, 1.0 - 1.01 * MAX_RATIO)):
        assert extrapolated_gradient(same, 1.0, torch.tensor([0.0]), earlier_lam, new_lam) is same
    assert extrapolated_gradient(same, 1.0, torch.tensor([0.0]), 2.0, 1.0 - MAX_RATIO).item() == 4.0 + 4.0 * MAX_RATIO


def _fitter(k: int, d: int, n: int, seed: int = 0) -> _PathFitter:
    X, y = deep_features(n, d, k, seed=seed)
    design = Design.build(torch.as_tensor(X), device="cpu", dtype=torch.float32)
    problem = Problem.build(design, torch.as_tensor(y), family="multinomial", n_outputs=k, sample_weight=None)
    return _PathFitter(problem, alpha=0.99, group=False, tol=1e-6, val=None, method="block")


def test_the_fitter_ranks_candidates_by_the_extrapolation_of_its_last_two_gradients(monkeypatch):
    fitter = _fitter(k=5, d=24, n=400)
    top = fitter.lam_max()
    ranks = []
    real = path_fitter.working_set

    def recording(*args, rank=None, **kwargs):
        ranks.append(rank)
        return real(*args, rank=rank, **kwargs)
    monkeypatch.setattr(path_fitter, "working_set", recording)
    gradients = [(fitter.prev_lam, fitter.prev_gradient)]
    lams = [0.7 * top, 0.5 * top, 0.35 * top]
    for lam in lams:
        fitter.solve(lam)
        gradients.append((lam, fitter.prev_gradient))
    assert ranks[0] is None  # lam_max's point has no point before it
    for i in (1, 2):  # from the second point: the last two points' gradients, extrapolated to the new lambda
        (lam0, G0), (lam1, G1) = gradients[i - 1], gradients[i]
        pen = fitter.problem.penalty(lams[i], 0.99, False)
        assert torch.equal(ranks[i], pen.scores(extrapolated_gradient(G1, lam1, G0, lam0, lams[i])))


def test_extrapolated_scores_leave_out_fewer_of_the_next_points_weights():
    """A path of 30 classes, 15 lambdas to 1e-2 lam_max, where the cap binds: for each point, the working sets that the
    last point's scores and the extrapolated ones would give, and how many of the point's active weights each leaves
    out (weights the first round cannot move). Measured on the proxies: 715 against 64 (k=100), 854 against 275
    (k=1,000). At this small shape 106 against 85 (seeds 1 and 2: 95 / 80, 102 / 77): the extrapolation must leave
    out at most nine tenths as many, and the cap must have bound."""
    fitter = _fitter(k=30, d=50, n=2000)
    top = fitter.lam_max()
    lams = [top * 0.01 ** (i / 15) for i in range(1, 16)]
    points = [(fitter.prev_lam, fitter.prev_gradient, fitter.state.W != 0)]
    for lam in lams:
        fitter.solve(lam)
        points.append((lam, fitter.prev_gradient, fitter.state.W != 0))
    missed = {"last": 0, "extrapolated": 0}
    capped = 0
    for i in range(2, len(points)):
        (lam0, G0, _), (lam1, G1, active), (lam, _, final) = points[i - 2], points[i - 1], points[i]
        pen, last = (fitter.problem.penalty(x, 0.99, False) for x in (lam, lam1))
        scores, threshold = pen.scores(G1), 2 * pen.l1 - last.l1
        capped += not torch.equal(working_set(scores, threshold, active),
                                  working_set(scores, threshold, active, limit=False))
        rank = pen.scores(extrapolated_gradient(G1, lam1, G0, lam0, lam))
        for name, r in (("last", None), ("extrapolated", rank)):
            missed[name] += int((final & ~working_set(scores, threshold, active, rank=r)).sum())
    assert capped >= 5
    assert missed["extrapolated"] <= 0.9 * missed["last"], missed
