"""Reference elastic-net path solvers, all run on one problem and one lambda path.

Every runner takes the same pre-standardized ``X`` (float32 or float64, mean 0
and std 1 per column), integer labels ``y`` in ``[0, k)``, a decreasing
``lambdas`` array *in the benchmark's scaling* and ``alpha``, and returns a
:class:`PathResult`: one ``(W, b)`` per lambda in the softmax k-row form
(``W`` (k, d), ``b`` (k,), float64 numpy), the wall time of the whole path
(``seconds``) and per-lambda times where the solver exposes them.

The benchmark objective (see ``objective.py``) is::

    P(W, b) = mean_i CE(softmax(W x_i + b), y_i) + lam (alpha |W|_1 + (1-alpha)/2 |W|_F^2)

How each solver's problem is mapped onto it (exactly, not approximately):

* **glm_saga 0.1.2** minimizes exactly ``P``.  Its own path function computes
  lam_max as ``max |X^T (Y - Ybar)| / n / alpha``, which equals
  ``objective.lam_max`` for column-centred X; we call its per-lambda routine
  ``train_saga`` in a loop with the state (SAGA table) carried over, exactly as
  ``glm_saga.glm_saga`` does, so it runs on our lambdas (its trailing
  ``lam = 0`` point is skipped).  After each lambda it makes the same
  loss/accuracy pass over the loader as its own loop.  Paper settings:
  lr 0.1, batch 256, tol 1e-4, lookbehind 3 (max 2000 epochs per lambda).
* **scikit-learn saga** minimizes ``(1/n) sum loss + (1/(C n)) (l1_ratio |W|_1
  + (1-l1_ratio)/2 |W|^2)`` (``sag_solver`` scales alpha, beta by 1/n).  For
  k > 2 its loss is the k-row multinomial, so ``C = 1 / (n lam)``,
  ``l1_ratio = alpha``.  For k = 2 it fits one binomial vector, so we use the
  exact binomial equivalent ``lam' = lam (1+alpha)/2``, ``alpha' = 2 alpha /
  (1+alpha)`` (derivation in ``objective.py``) and map ``W = [-beta/2, beta/2]``.
* **adelie** (``grpnet`` machinery): multinomial loss ``(1/K) mean_i CE``
  (observation weights sum to 1) and penalty ``lmda sum_g w_g (alpha |b_g|_2 +
  (1-alpha)/2 |b_g|^2)``.  ``adelie.grpnet`` groups a multinomial problem *by
  feature* (all K coefficients of a feature form one group), which is the group
  lasso, not our problem; so we build the multi-response GLM state ourselves
  (``adelie.state.multiglm_naive``, exactly as ``grpnet`` does) with every
  coefficient its own group of size 1 (penalty factor 1) and the K intercepts
  unpenalized.  Multiplying adelie's objective by K gives ``P`` with
  ``lmda = lam / K``.  ``adelie-binomial`` (k = 2 only) solves the binomial
  equivalent (``lmda = lam'``, ``alpha'``) with ``adelie.glm.binomial``.
* **glmnet** (Python ``glmnet`` 2.2.1, the Fortran ``lognet``): objective
  ``-loglik/n + lam (alpha |beta|_1 + (1-alpha)/2 |beta|^2)``; multinomial for
  k > 2 (K coefficient vectors, same ``lam``), binomial for k = 2 (mapped as
  above).  ``standardize=False`` (X is already standardized), no CV.
* **skglm** (k = 2 only; it has no multinomial datafit): ``Logistic`` datafit
  ``(1/n) sum log(1 + exp(-y_i x_i beta))`` with ``L1_plus_L2(lam', alpha')``,
  intercept fitted, warm starts along the path.

Times exclude the one-off conversion of X to the dtype/layout the solver wants
(float64 C or Fortran order) but include everything the solver does per path.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np

from objective import binomial_lambda, binomial_to_softmax


@dataclasses.dataclass
class PathResult:
    name: str
    weights: list  # list of (W (k, d) float64, b (k,) float64), or None where not run
    seconds: float  # whole-path wall time (measured, or estimated if ``estimated``)
    per_lambda_seconds: list | None = None
    estimated: bool = False
    measured_seconds: float | None = None
    notes: str = ""
    settings: dict = dataclasses.field(default_factory=dict)


def _nclasses(y, k):
    return int(np.max(y)) + 1 if k is None else int(k)


# --------------------------------------------------------------------------- glm_saga

def run_glm_saga(X, y, lambdas, alpha, *, k=None, lr=0.1, batch_size=256, tol=1e-4,
                 lookbehind=3, nepochs=2000, max_lambdas=None, tail_warm_starts=None,
                 seed=0, verbose=False, budget_seconds=None) -> PathResult:
    """glm_saga 0.1.2's path loop on our lambdas.

    ``budget_seconds``: stop at the first epoch that starts past this much time; the lambda it was on is
    reported unfinished (``settings["unfinished"]``: its index, seconds and epochs so far), later ones are not
    run, and the path's seconds are those measured (a lower bound on glm_saga's own).

    ``max_lambdas`` (cap, >= 3) runs the first ``max_lambdas - 2`` lambdas in
    sequence (warm starts, state carried) and the last 2 lambdas of the path
    warm-started from ``tail_warm_starts[i-1]`` (the best known solution at the
    previous lambda, e.g. from a compiled solver) with a fresh SAGA table (as
    glm_saga starts every path).  The missing middle lambdas' times are
    interpolated linearly (in lambda index) between the last head time and the
    first tail time, and the path time is reported as an estimate.
    """
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from glm_saga.elasticnet import (IndexedTensorDataset, elastic_loss_and_acc_loader,
                                     train_saga)

    k = _nclasses(y, k)
    n, d = X.shape
    L = len(lambdas)
    torch.manual_seed(seed)
    if isinstance(X, torch.Tensor):  # e.g. on a GPU: glm_saga then runs there
        Xt, yt = X.float(), torch.as_tensor(y).long()
    else:
        Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32))
        yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    loader = DataLoader(IndexedTensorDataset(Xt, yt), batch_size=batch_size, shuffle=True)
    if budget_seconds is not None:
        loader = _Budgeted(loader, math.inf)  # the deadline is set when its first lambda starts
    linear = nn.Linear(d, k).to(Xt.device)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()

    logs = []

    def logger(*a):
        logs.append(" ".join(str(x) for x in a))
        if verbose:
            print("   [glm_saga]", *a, flush=True)

    if max_lambdas is None or max_lambdas >= L:
        head, tail = list(range(L)), []
    else:
        if max_lambdas < 3:
            raise ValueError("max_lambdas must be >= 3 (head + 2 tail lambdas)")
        if tail_warm_starts is None:
            head, tail = list(range(max_lambdas)), []
        else:
            head, tail = list(range(max_lambdas - 2)), [L - 2, L - 1]

    weights = [None] * L
    times = [None] * L
    epochs = [None] * L

    def one(i, state):
        lam = float(lambdas[i])
        n_logs = len(logs)
        t0 = time.perf_counter()
        state = train_saga(linear, loader, lr, nepochs, lam, alpha, group=False, verbose=None,
                           state=state, n_ex=n, n_classes=k, tol=tol, lookbehind=lookbehind,
                           family="multinomial", logger=logger)
        with torch.no_grad():  # glm_saga's own loop does this pass after every lambda (not cut by a budget)
            elastic_loss_and_acc_loader(linear, getattr(loader, "loader", loader), lam, alpha)
        times[i] = time.perf_counter() - t0
        weights[i] = (linear.weight.detach().double().cpu().numpy().copy(),
                      linear.bias.detach().double().cpu().numpy().copy())
        msg = " ".join(logs[n_logs:])
        if "early stop at" in msg:
            epochs[i] = int(msg.split("early stop at")[1].split("]")[0]) + 1
        elif "did not converge" in msg:
            epochs[i] = nepochs
        if verbose:
            print(f"   [glm_saga] lambda {i}: {times[i]:.2f}s epochs {epochs[i]}", flush=True)
        return state

    state, unfinished = None, None
    if budget_seconds is not None:
        loader.deadline = time.perf_counter() + budget_seconds  # glm_saga's own time from here
    for i in head:
        if budget_seconds is not None:
            loader.epochs, started = 0, time.perf_counter()
        try:
            state = one(i, state)
        except _OutOfBudget:
            unfinished = dict(index=i, seconds=time.perf_counter() - started, epochs=loader.epochs)
            if verbose:
                print(f"   [glm_saga] lambda {i}: out of budget after {unfinished['seconds']:.1f}s, "
                      f"{unfinished['epochs']} epochs", flush=True)
            head = head[:head.index(i)]
            break
    if unfinished is not None:
        measured = float(sum(t for t in times if t is not None)) + unfinished["seconds"]
        return PathResult("glm_saga", weights, measured, times, estimated=False, measured_seconds=measured,
                          notes=(f"budget {budget_seconds:.0f}s: finished lambdas {head}; lambda {unfinished['index']} "
                                 f"unfinished after {unfinished['seconds']:.1f}s ({unfinished['epochs']} epochs)"),
                          settings=dict(lr=lr, batch_size=batch_size, tol=tol, lookbehind=lookbehind,
                                        nepochs=nepochs, epochs=epochs, budget_seconds=budget_seconds,
                                        unfinished=unfinished))
    for i in tail:
        W0, b0 = tail_warm_starts[i - 1] if i - 1 not in head else weights[i - 1]
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(W0, dtype=torch.float32))
            linear.bias.copy_(torch.as_tensor(b0, dtype=torch.float32))  # copy_ moves them to the device
        state = one(i, None)
        # the second tail lambda continues from the first (state carried) when adjacent
    measured = float(sum(t for t in times if t is not None))
    estimated = bool(tail) and len(head) + len(tail) < L
    if estimated:
        t_a, t_b = times[head[-1]], times[tail[0]]
        ia, ib = head[-1], tail[0]
        est = [t if t is not None else t_a + (t_b - t_a) * (i - ia) / (ib - ia)
               for i, t in enumerate(times)]
        total = float(sum(est))
    elif len(head) < L:  # capped without a tail: extrapolate with the mean of the last 3
        last = [times[i] for i in head[-3:]]
        total = measured + (L - len(head)) * float(np.mean(last))
        estimated = True
    else:
        total = measured
    return PathResult("glm_saga", weights, total, times, estimated=estimated,
                      measured_seconds=measured,
                      notes=(f"ran lambdas {head}{' + tail ' + str(tail) if tail else ''}; "
                             f"epochs per lambda {epochs}"),
                      settings=dict(lr=lr, batch_size=batch_size, tol=tol, lookbehind=lookbehind,
                                    nepochs=nepochs, epochs=epochs))


class _OutOfBudget(Exception):
    """glm_saga's time budget ran out (raised at the start of an epoch)."""


class _Budgeted:
    """A data loader that raises :class:`_OutOfBudget` when an epoch would start past ``deadline``
    (``time.perf_counter()``); counts the epochs started (glm_saga's loop iterates it once an epoch)."""

    def __init__(self, loader, deadline: float):
        self.loader, self.deadline, self.epochs = loader, deadline, 0

    def __iter__(self):
        if time.perf_counter() > self.deadline:
            raise _OutOfBudget
        self.epochs += 1
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):  # dataset, batch_size, ...
        return getattr(self.loader, name)


# --------------------------------------------------------------------------- sklearn saga

def run_sklearn_saga(X, y, lambdas, alpha, *, k=None, tol=1e-6, max_iter=1000,
                     seed=0) -> PathResult:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    k = _nclasses(y, k)
    n = X.shape[0]
    X64 = np.ascontiguousarray(X, dtype=np.float64)
    clf = LogisticRegression(C=1.0, l1_ratio=alpha, solver="saga", tol=tol, max_iter=max_iter,
                             warm_start=True, fit_intercept=True, random_state=seed)
    weights, times, iters = [], [], []
    n_warn = 0
    t_all = time.perf_counter()
    for lam in lambdas:
        if k == 2:
            lam_s, alpha_s = binomial_lambda(float(lam), alpha)
        else:
            lam_s, alpha_s = float(lam), alpha
        clf.set_params(C=1.0 / (n * lam_s), l1_ratio=alpha_s)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(X64, y)
        n_warn += sum(issubclass(x.category, ConvergenceWarning) for x in w)
        times.append(time.perf_counter() - t0)
        iters.append(int(np.max(clf.n_iter_)))
        if k == 2:
            weights.append(binomial_to_softmax(clf.coef_[0], clf.intercept_[0]))
        else:
            weights.append((clf.coef_.astype(np.float64).copy(),
                            clf.intercept_.astype(np.float64).copy()))
    total = time.perf_counter() - t_all
    return PathResult("sklearn_saga", weights, total, times,
                      notes=f"epochs per lambda {iters}; {n_warn} lambdas hit max_iter",
                      settings=dict(tol=tol, max_iter=max_iter, epochs=iters))


# --------------------------------------------------------------------------- adelie

def run_adelie(X, y, lambdas, alpha, *, k=None, tol=1e-12, irls_tol=1e-12, n_threads=2,
               dtype=np.float64) -> PathResult:
    """adelie with an *ungrouped* L1 over all k*d coefficients (see module doc)."""
    import adelie as ad
    from adelie import matrix as admat
    from adelie import state as adstate

    k = _nclasses(y, k)
    n, p = X.shape
    Xd = np.asfortranarray(X, dtype=dtype)
    Y = np.zeros((n, k), dtype=dtype)
    Y[np.arange(n), np.asarray(y)] = 1.0
    lmda_path = np.asarray(lambdas, dtype=dtype) / k  # adelie's loss is (1/K) mean CE

    t0 = time.perf_counter()
    glm = ad.glm.multinomial(Y, dtype=dtype)
    K = k
    G = K + p * K  # K unpenalized intercept "features", then one group per coefficient
    groups = np.arange(G, dtype=int)
    group_sizes = np.ones(G, dtype=int)
    pen = np.ones(G, dtype=dtype)
    pen[:K] = 0.0
    Xn = admat.dense(Xd, method="naive", n_threads=n_threads)  # only for the initial gradient
    X_aug = admat.concatenate(
        [admat.kronecker_eye(np.ones((n, 1), dtype=dtype, order="F"), K, n_threads=n_threads),
         admat.kronecker_eye(Xn, K, n_threads=n_threads)],
        axis=1, n_threads=n_threads)
    offsets = np.zeros((n, K), dtype=dtype)
    screen_set = np.arange(G)[pen <= 0]
    screen_beta = np.zeros(len(screen_set), dtype=dtype)
    screen_is_active = np.ones(len(screen_set), dtype=bool)
    active_set = np.empty(G, dtype=int)
    active_set[:len(screen_set)] = np.arange(len(screen_set))
    eta = offsets
    resid = np.empty(eta.shape, dtype=dtype)
    glm.gradient(eta, resid)
    resid = resid.ravel()
    grad = np.empty(X_aug.cols(), dtype=dtype)
    X_aug.mul(resid, np.ones(n * K, dtype=dtype), grad)
    state = adstate.multiglm_naive(
        X=Xd, glm=glm, constraints=None, groups=groups, group_sizes=group_sizes,
        alpha=alpha, penalty=pen, offsets=offsets, screen_set=screen_set,
        screen_beta=screen_beta, screen_is_active=screen_is_active,
        active_set_size=len(screen_set), active_set=active_set, lmda=np.inf,
        grad=grad, eta=eta.ravel(), resid=resid, loss_full=glm.loss_full(), loss_null=None,
        lmda_path=np.array(np.flip(np.sort(lmda_path)), dtype=dtype), lmda_max=None,
        irls_tol=irls_tol, tol=tol, n_threads=n_threads, early_exit=False, intercept=True,
        adev_tol=1.0, ddev_tol=0.0, max_screen_size=None, max_active_size=None,
        min_ratio=float(np.min(lambdas) / np.max(lambdas)), lmda_path_size=len(lambdas))
    state = state.solve(progress_bar=False)
    total = time.perf_counter() - t0

    betas = state.betas.toarray()  # (L, p K)
    lm = np.asarray(state.lmdas)
    weights = []
    for lam in lmda_path:
        j = int(np.argmin(np.abs(lm - lam)))
        if abs(lm[j] - lam) > 1e-9 * lam:
            weights.append(None)
            continue
        B = betas[j].reshape(p, K)  # row-major (feature, class); intercepts kept apart
        b = np.asarray(state.intercepts[j], dtype=np.float64).reshape(K)
        weights.append((B.T.astype(np.float64).copy(), b))
    return PathResult("adelie", weights, total, None,
                      notes=f"{len(lm)} lambdas solved; ungrouped multinomial, float64",
                      settings=dict(tol=tol, irls_tol=irls_tol, n_threads=n_threads,
                                    dtype=np.dtype(dtype).name))


def run_adelie_binomial(X, y, lambdas, alpha, *, k=None, tol=1e-12, irls_tol=1e-12,
                        n_threads=2, dtype=np.float64) -> PathResult:
    import adelie as ad

    k = _nclasses(y, k)
    if k != 2:
        raise ValueError("adelie-binomial is for k=2 only")
    Xd = np.asfortranarray(X, dtype=dtype)
    yb = np.asarray(y, dtype=dtype)
    lam_b = np.array([binomial_lambda(float(l), alpha)[0] for l in lambdas], dtype=dtype)
    _, alpha_b = binomial_lambda(1.0, alpha)
    t0 = time.perf_counter()
    state = ad.grpnet(Xd, ad.glm.binomial(yb, dtype=dtype), alpha=alpha_b, lmda_path=lam_b,
                      tol=tol, irls_tol=irls_tol, n_threads=n_threads, early_exit=False,
                      adev_tol=1.0, ddev_tol=0.0, progress_bar=False, intercept=True)
    total = time.perf_counter() - t0
    betas = state.betas.toarray()
    lm = np.asarray(state.lmdas)
    weights = []
    for lam in lam_b:
        j = int(np.argmin(np.abs(lm - lam)))
        if abs(lm[j] - lam) > 1e-9 * lam:
            weights.append(None)
            continue
        weights.append(binomial_to_softmax(betas[j], state.intercepts[j]))
    return PathResult("adelie_binomial", weights, total, None,
                      notes=f"{len(lm)} lambdas solved; binomial equivalent, float64",
                      settings=dict(tol=tol, irls_tol=irls_tol, n_threads=n_threads))


# --------------------------------------------------------------------------- glmnet

def _import_glmnet():
    """``glmnet`` 2.2.1's ``__init__`` imports ``pkg_resources`` (only for its version
    string), which recent setuptools no longer ship: stub it if missing."""
    import sys
    import types

    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        from importlib.metadata import version

        stub = types.ModuleType("pkg_resources")
        stub.get_distribution = lambda name: types.SimpleNamespace(version=version(name))
        sys.modules["pkg_resources"] = stub
    from glmnet import LogitNet

    return LogitNet


def run_glmnet(X, y, lambdas, alpha, *, k=None, tol=1e-10, max_iter=1_000_000) -> PathResult:
    LogitNet = _import_glmnet()

    k = _nclasses(y, k)
    if k == 2:
        lam_g = np.array([binomial_lambda(float(l), alpha)[0] for l in lambdas])
        _, alpha_g = binomial_lambda(1.0, alpha)
    else:
        lam_g, alpha_g = np.asarray(lambdas, dtype=np.float64), alpha
    X64 = np.asfortranarray(X, dtype=np.float64)
    m = LogitNet(alpha=alpha_g, lambda_path=lam_g, standardize=False, fit_intercept=True,
                 n_splits=0, tol=tol, max_iter=max_iter)
    t0 = time.perf_counter()
    m.fit(X64, np.asarray(y))
    total = time.perf_counter() - t0
    lp = np.asarray(m.lambda_path_)
    weights = []
    for i, lam in enumerate(lam_g):
        if i >= m.n_lambda_:
            weights.append(None)
            continue
        coef = m.coef_path_[..., i]
        b0 = m.intercept_path_[..., i]
        if k == 2:
            # the wrapper models P(class 1): eta = x.beta + beta0
            weights.append(binomial_to_softmax(coef[0], np.atleast_1d(b0)[0]))
        else:
            weights.append((np.asarray(coef, dtype=np.float64).copy(),
                            np.asarray(b0, dtype=np.float64).copy()))
    return PathResult("glmnet", weights, total, None,
                      notes=f"{m.n_lambda_} of {len(lam_g)} lambdas returned",
                      settings=dict(tol=tol, max_iter=max_iter))


# --------------------------------------------------------------------------- skglm

def run_skglm(X, y, lambdas, alpha, *, k=None, tol=1e-10, max_iter=200) -> PathResult:
    from skglm import GeneralizedLinearEstimator
    from skglm.datafits import Logistic
    from skglm.penalties import L1_plus_L2
    from skglm.solvers import AndersonCD

    k = _nclasses(y, k)
    if k != 2:
        raise ValueError("skglm has no multinomial datafit: k=2 only")
    X64 = np.asfortranarray(X, dtype=np.float64)
    ys = np.where(np.asarray(y) == 1, 1.0, -1.0)
    _, alpha_s = binomial_lambda(1.0, alpha)
    est = GeneralizedLinearEstimator(datafit=Logistic(), penalty=L1_plus_L2(1.0, alpha_s),
                                     solver=AndersonCD(tol=tol, max_iter=max_iter,
                                                       fit_intercept=True, warm_start=True))
    weights, times = [], []
    t_all = time.perf_counter()
    for lam in lambdas:
        est.penalty = L1_plus_L2(binomial_lambda(float(lam), alpha)[0], alpha_s)
        t0 = time.perf_counter()
        est.fit(X64, ys)
        times.append(time.perf_counter() - t0)
        weights.append(binomial_to_softmax(est.coef_.ravel(), est.intercept_))
    total = time.perf_counter() - t_all
    return PathResult("skglm", weights, total, times, settings=dict(tol=tol, max_iter=max_iter))


RUNNERS: dict[str, Callable[..., PathResult]] = {
    "glm_saga": run_glm_saga,
    "sklearn_saga": run_sklearn_saga,
    "adelie": run_adelie,
    "adelie_binomial": run_adelie_binomial,
    "glmnet": run_glmnet,
    "skglm": run_skglm,
}

#: compiled CPU path solvers (candidates for "the fastest compiled solver")
COMPILED = ("adelie", "adelie_binomial", "glmnet", "skglm")
