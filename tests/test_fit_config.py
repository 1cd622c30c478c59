"""One sparsity target end to end, the declared fit options, and refits that reach the path's tolerance.

- `SparsityTarget` is checked once (solver/target.py), with the errors the user sees; `FeatureCounts` names the
  measured quantities apart (checked by hand);
- `FitConfig` declares the options of `fit_sparse_head`, `refit_sparse_head` and `hf-sparse fit`: the signatures
  and the CLI's help come from it; unknown keywords are refused with the list of valid ones;
- refits on a fixed support (the exact-k selection and the relaxed ridge refit, `solver/refit.py`) reach the
  path's tolerance: their objective is within 1e-6 (relative) of a float64 L-BFGS solution of the same restricted
  problem (before `refit.py`, 1e-5 to 2e-4 on these cases);
- `solver/refit.py` and `solver/select.py` do not import `solver/fit.py` (the loop fit -> path -> select -> fit).
"""

from __future__ import annotations

import ast
import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from hf_sparse.modeling import fitting
from hf_sparse.modeling.fit_config import FIT, REFIT, FitConfig
from hf_sparse.solver import RegularizationPath, fit_path
from hf_sparse.solver.refit import make_refitter
from hf_sparse.solver.select import select_point
from hf_sparse.solver.target import FeatureCounts, SparsityTarget

from solver_reference import objective, standardize, targets, to_standardized

SOLVER = Path(fitting.__file__).resolve().parents[1] / "solver"


# ----------------------------------------------------------------------------------------------- the sparsity target
def test_target_is_exactly_one_rule_with_clear_errors():
    assert SparsityTarget(features_per_class=5).as_kwargs() == {"features_per_class": 5}
    assert SparsityTarget(max_accuracy_drop=0.01).rule == "max_accuracy_drop"
    assert SparsityTarget(lam=0.5).value == 0.5
    normalized = SparsityTarget(features_per_class=5.0)
    assert normalized.value == 5 and type(normalized.value) is int
    with pytest.raises(ValueError, match=r"Pass exactly one of features_per_class= \(e.g. 5\), max_accuracy_drop= "
                                         r"\(e.g. 0.01\) or lam= to choose the point of the path to install; got none"):
        SparsityTarget()
    with pytest.raises(ValueError, match=r"exactly one of .* got \['features_per_class', 'lam'\]"):
        SparsityTarget(features_per_class=3, lam=0.1)
    bad = [
        (dict(features_per_class=0), "features_per_class must be a positive integer (1 or more), got 0."),
        (dict(features_per_class=2.5), "features_per_class must be a positive integer (1 or more), got 2.5."),
        (dict(features_per_class=True), "features_per_class must be a positive integer (1 or more), got True."),
        (dict(features_per_class="5"), "features_per_class must be a positive integer (1 or more), got '5'."),
        (dict(max_accuracy_drop=-0.1), "max_accuracy_drop must be a non-negative number; got -0.1."),
        (dict(max_accuracy_drop=float("nan")), "max_accuracy_drop must be a non-negative number; got nan."),
        (dict(max_accuracy_drop=5), "max_accuracy_drop must be a fraction of accuracy in [0, 1] (0.01 = one point); "
                                    "got 5."),
        (dict(lam=0), "lam must be a finite number above 0; got 0."),
        (dict(lam=math.inf), "lam must be a finite number above 0; got inf."),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError) as err:
            SparsityTarget(**kwargs)
        assert str(err.value).startswith(message), (kwargs, str(err.value))


def test_target_coerce_takes_one_form_only():
    target = SparsityTarget(lam=0.1)
    assert SparsityTarget.coerce(target) is target
    assert SparsityTarget.coerce({"max_accuracy_drop": 0.02}) == SparsityTarget(max_accuracy_drop=0.02)
    assert SparsityTarget.coerce(None, features_per_class=3, lam=None) == SparsityTarget(features_per_class=3)
    with pytest.raises(ValueError, match=r"Pass the sparsity target once: got target=.* and also \['lam'\]"):
        SparsityTarget.coerce(target, lam=0.2)
    with pytest.raises(TypeError, match=r"Unknown sparsity target \['k'\]"):
        SparsityTarget.coerce({"k": 3})


def test_feature_counts_by_hand():
    support = torch.tensor([[True, False, True, False], [True, False, False, False], [False, False, True, True]])
    counts = FeatureCounts.from_support(support)
    # per class 2, 1, 2; features 0, 2, 3 used; 5 weights
    assert (counts.per_class, counts.n_features, counts.nnz) == ([2, 1, 2], 3, 5)
    assert (counts.mean_per_class, counts.max_per_class, counts.min_per_class) == (5 / 3, 2, 1)


def _data(k=3, n=400, d=20, seed=6):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 4))
    X = np.maximum(latent @ rng.standard_normal((4, d)) + 0.7 * rng.standard_normal((n, d)), 0)
    X = X * rng.uniform(0.5, 3, d) + rng.uniform(-1, 2, d)
    W = rng.standard_normal((k, d)) * (rng.random((k, d)) < 0.3)
    y = (standardize(X)[0] @ W.T + 0.5 * rng.standard_normal((n, k))).argmax(1)
    return X.astype(np.float32), y


def test_select_takes_the_target_object_and_the_keywords_alike():
    X, y = _data()
    path = fit_path(torch.from_numpy(X), torch.as_tensor(y), n_lambdas=15, lambda_min_ratio=0.01, X_val=X, y_val=y)
    for kwargs in (dict(features_per_class=3), dict(max_accuracy_drop=0.02), dict(lam=float(path[4].lam))):
        i = path.select(**kwargs)
        weight = path.selected.weight
        assert select_point(path, SparsityTarget(**kwargs)) == i
        assert torch.equal(path.selected.weight, weight)
    with pytest.raises(ValueError, match="exactly one of"):
        path.select()
    with pytest.raises(ValueError, match="Pass the sparsity target once"):
        select_point(path, SparsityTarget(lam=0.1), lam=0.1)
    with pytest.raises(ValueError, match="features_per_class=21 is more than the 20 features there are"):
        path.select(features_per_class=21)


# ------------------------------------------------------------------------------------------------------- refits
def _restricted_reference(Xs, Y, support, signs, lam, alpha, W0, b0):
    """float64 minimizer over the weights on `support` (others zero) and the bias of
    mean softmax loss + lam * (alpha * signs . W + (1 - alpha) / 2 |W|^2): the elastic-net objective where the signs
    are those of the solution (checked by the caller), a smooth problem for L-BFGS."""
    k, d = support.shape
    idx = np.nonzero(support)
    m = len(idx[0])
    l1, l2 = lam * alpha, lam * (1 - alpha)
    n = len(Xs)

    def f(theta):
        W = np.zeros((k, d))
        W[idx] = theta[:m]
        Z = Xs @ W.T + theta[m:]
        R = (softmax(Z, 1) - Y) / n
        value = -(log_softmax(Z, 1) * Y).sum() / n + l1 * (signs * W).sum() + l2 / 2 * (W * W).sum()
        gW = R.T @ Xs + l1 * signs + l2 * W
        return value, np.concatenate([gW[idx], R.sum(0)])

    result = minimize(f, np.concatenate([W0[idx], b0]), jac=True, method="L-BFGS-B",
                      options=dict(gtol=1e-13, ftol=1e-16, maxiter=20_000, maxcor=50))
    W = np.zeros((k, d))
    W[idx] = result.x[:m]
    return W, result.x[m:]


@pytest.mark.parametrize("k, seed, relax", [(3, 6, False), (3, 6, True), (5, 1, False), (5, 1, True)])
def test_refits_reach_the_paths_tolerance_against_a_float64_reference(k, seed, relax):
    X, y = _data(k=k, seed=seed)
    path = fit_path(torch.from_numpy(X), torch.as_tensor(y), n_lambdas=20, lambda_min_ratio=0.01)
    path.select(features_per_class=4, relax=relax)
    assert path.selection["refit"]  # the top-4 cut changed the support: a refit happened
    if relax:
        assert path.selection["relax_gain"]["kept"]
    point = path.selected
    alpha = 0.0 if relax else path.alpha
    Xs, mean, std = standardize(X)
    Y = targets(y, "multinomial", k)
    W, b = to_standardized(point.weight.numpy(), point.bias.numpy(), mean, std)
    support = point.support.numpy()
    W_ref, b_ref = _restricted_reference(Xs, Y, support, np.sign(W), point.lam, alpha, W, b)
    if alpha > 0:  # the smooth reference is the elastic-net optimum only with the same signs
        assert (np.sign(W_ref)[support] == np.sign(W)[support]).all()
    ours = objective(Xs, Y, W, b, point.lam, alpha, "multinomial")
    best = objective(Xs, Y, W_ref, b_ref, point.lam, alpha, "multinomial")
    assert (ours - best) / abs(best) <= path.info["tol"]  # 1e-6; measured about 1e-11
    assert point.metrics["converged"] and point.metrics["gap"] is None
    assert point.metrics["objective"] == pytest.approx(ours, rel=1e-6)


def test_refit_of_a_loaded_path_equals_the_paths_own(tmp_path):
    X, y = _data(k=3, seed=6)
    path = fit_path(torch.from_numpy(X), torch.as_tensor(y), n_lambdas=20, lambda_min_ratio=0.01)
    path.select(features_per_class=4)
    path.save(tmp_path / "p")
    loaded = RegularizationPath.load(tmp_path / "p")
    start = loaded[loaded.selection["index"]]
    refit = make_refitter(loaded, X, y)(path.selected.lam, path.selected.support, start)
    torch.testing.assert_close(refit.weight, path.selected.weight, rtol=1e-5, atol=1e-6)
    # the loaded path holds float32 statistics: the objective agrees to float32 rounding of the standardization
    assert refit.metrics["objective"] == pytest.approx(path.selected.metrics["objective"], rel=1e-7)


def _solver_imports(name: str) -> set[str]:
    """The solver modules `solver/<name>.py` imports (relative imports, at module level or inside functions)."""
    tree = ast.parse((SOLVER / f"{name}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.module and node.module.startswith("hf_sparse.solver."):
                found.add(node.module.split(".")[2])
    return found


def test_selection_and_refits_do_not_import_the_path_fitter():
    assert "fit" not in _solver_imports("select") and "fit" not in _solver_imports("refit")
    assert "refit" in _solver_imports("select")
    # the target is plain Python: no solver module (and so no torch) is needed to check one
    assert _solver_imports("target") == set()
    assert "make_refitter" not in (SOLVER / "fit.py").read_text()


# ---------------------------------------------------------------------------------------------- declared options
def _keywords(function) -> dict:
    return {p.name: p.default for p in inspect.signature(function).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_fit_and_refit_signatures_are_the_declared_options():
    fit = _keywords(fitting.fit_sparse_head)
    assert list(fit) == FitConfig.names(FIT)
    assert fit == {name: FitConfig.default(name) for name in FitConfig.names(FIT)}
    refit = _keywords(fitting.refit_sparse_head)
    assert list(refit) == FitConfig.names(REFIT)
    # the one different default: alpha=None is the last fit's alpha
    assert refit == {name: FitConfig.default(name) for name in FitConfig.names(REFIT)} | {"alpha": None}
    assert set(FitConfig.names(FIT)) - set(FitConfig.names(REFIT)) == {
        "tokenizer", "image_processor", "text_column", "image_column", "label_column", "cache_dir"}
    # each option's one description is in help()
    for function, scope in ((fitting.fit_sparse_head, FIT), (fitting.refit_sparse_head, REFIT)):
        doc = " ".join(inspect.getdoc(function).split())
        for name in FitConfig.names(scope):
            assert f"{name} (default {FitConfig.default(name)!r}): {FitConfig.help(name)}." in doc, name


def test_unknown_keywords_name_the_valid_ones():
    # the check runs before anything else: no model is needed to see it
    with pytest.raises(TypeError) as err:
        fitting.fit_sparse_head(None, None, alhpa=0.9, features_per_class=2)
    message = str(err.value)
    assert message.startswith("fit_sparse_head() got unknown option 'alhpa' (did you mean 'alpha'?). Its options "
                              "are: model, train_dataset, eval_dataset, tokenizer, image_processor, text_column,")
    assert message.endswith(", cache_dir, progress.")
    with pytest.raises(TypeError, match=r"refit_sparse_head\(\) got unknown options 'text_column', 'foo'\. "
                                        r"Its options are: model, features_per_class,"):
        fitting.refit_sparse_head(None, text_column="x", foo=1)
    with pytest.raises(TypeError, match=r"fit_on_cached_features\(\) got unknown option 'n_lambda' \(did you mean "
                                        r"'n_lambdas'\?\)"):
        fitting.fit_on_cached_features(None, None, {"lam": 0.1}, n_lambda=5)


def test_edit_features_declares_its_options_and_the_methods_are_the_functions():
    from hf_sparse import SparseHeadForImageClassification, SparseHeadForSequenceClassification
    from hf_sparse.audit import edits

    # the signature written out by hand: help() and IDEs show every option, with its default
    assert _keywords(edits.edit_features) == {"refit": False, "dataset": None, "audit": True, "text_column": None,
                                              "label_column": None, "batch_size": 64, "max_length": 128,
                                              "record": True}
    assert list(inspect.signature(edits.edit_features).parameters)[:3] == ["model", "remove", "reweight"]
    with pytest.raises(TypeError) as err:  # refused before the model is looked at
        edits.edit_features(None, remove=[1], refti=True)
    assert str(err.value) == ("edit_features() got unknown option 'refti' (did you mean 'refit'?). Its options are: "
                              "model, remove, reweight, refit, dataset, audit, text_column, label_column, batch_size, "
                              "max_length, record.")
    # the methods are these functions (no **kwargs wrapper hiding the options)
    for cls in (SparseHeadForSequenceClassification, SparseHeadForImageClassification):
        assert cls.edit_features is edits.edit_features
        assert cls.fit_sparse_head is fitting.fit_sparse_head
        assert cls.refit_sparse_head is fitting.refit_sparse_head


def test_fit_config_checks_its_own_options_once():
    from hf_sparse.solver.balance import BALANCE_MODES

    assert FitConfig.metadata("balance")["choices"] == BALANCE_MODES
    with pytest.raises(ValueError, match=r"balance must be one of \('groups', 'group', 'labels'\) or None; got "
                                         r"'cells'\."):
        FitConfig(balance="cells")
    with pytest.raises(ValueError, match=r"selection_metric must be one of \('accuracy', 'worst_group_accuracy'\) or "
                                         r"None; got 'f1'\."):
        FitConfig(selection_metric="f1")
    config = FitConfig.build(FitConfig(lam=0.1, alpha=0.9), n_lambdas=7)
    assert (config.lam, config.alpha, config.n_lambdas) == (0.1, 0.9, 7)
    assert config.target() == SparsityTarget(lam=0.1)
    with pytest.raises(ValueError, match="exactly one of"):
        FitConfig().target()
    assert set(config.options(FIT)) == set(_keywords(fitting.fit_sparse_head))


def test_cli_options_come_from_the_fit_config(capsys):
    from hf_sparse.cli import build_parser
    from hf_sparse.cli.fit import CLI_OPTIONS

    parser = build_parser()
    fit = parser._subparsers._group_actions[0].choices["fit"]
    actions = {a.dest: a for a in fit._actions}
    for name in CLI_OPTIONS:
        action = actions[name]
        assert action.help.replace("%%", "%").startswith(FitConfig.help(name)), name
        assert action.option_strings[0] == "--" + name.replace("_", "-")
    assert actions["balance"].choices == FitConfig.metadata("balance")["choices"]
    args = parser.parse_args(["fit", "m", "d", "-o", "out", "--features-per-class", "3", "--alpha", "0.9"])
    # the CLI's own defaults: --relax on; no column given (the modality decides which one is the data's)
    assert (args.features_per_class, args.alpha, args.relax, args.text_column) == (3, 0.9, True, None)
    assert (args.n_lambdas, args.lambda_min_ratio, args.batch_size) == (100, 1e-3, 64)
    assert args.whole_path is True
    assert parser.parse_args(["fit", "m", "d", "-o", "out", "--lam", "0.1", "--no-whole-path"]).whole_path is False
    for argv, message in (
        (["--features-per-class", "0"], "argument --features-per-class: must be a positive integer (1 or more), got 0"),
        (["--features-per-class", "two"], "argument --features-per-class: must be a positive integer (1 or more), "
                                          "got 'two'"),
        (["--max-accuracy-drop", "5"], "argument --max-accuracy-drop: must be a fraction of accuracy in [0, 1]"),
        (["--lam", "-1"], "argument --lam: must be a finite number above 0; got -1.0"),
    ):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["fit", "m", "d", "-o", "out", *argv])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    assert re.search(r"--alpha ALPHA\s+elastic-net mixing: the L1 share", fit.format_help())


def test_a_refit_of_an_encoder_model_records_no_dense_head(tmp_path):
    """`from_encoder` has no dense head (its classifier is a zero placeholder): the fit and a refit both record only
    where the metrics were taken, not the placeholder's accuracy (the refit used to record it)."""
    from transformers import AutoModel

    from _tiny_models import minilm_tokenizer, text_config, word_dataset
    from hf_sparse import SparseHeadForSequenceClassification

    torch.manual_seed(0)
    AutoModel.from_config(text_config("bert")).save_pretrained(tmp_path / "bert")
    minilm_tokenizer().save_pretrained(tmp_path / "bert")
    model = SparseHeadForSequenceClassification.from_encoder(tmp_path / "bert", id2label={0: "a", 1: "b", 2: "c"})
    data = word_dataset(90, seed=1)
    config = FitConfig(text_column="sentence", features_per_class=2, n_lambdas=15, cache_dir=str(tmp_path / "cache"))
    model.fit_sparse_head(data.select(range(60)), data.select(range(60, 90)), **config.options(FIT))
    expected = {"split": "eval", "n_examples": 30, "note": "no dense head: a pretrained encoder (from_encoder)"}
    assert model.config.dense_metrics == expected
    assert model.config.selection["method"] == "features_per_class" and model.config.selection["value"] == 2
    model.refit_sparse_head(lam=model.config.selected_lambda)
    assert model.config.dense_metrics == expected
    assert model.config.feature_source.startswith("mean pooling of the ")
    assert model.config.selection["method"] == "lam"


def test_the_declared_options_load_without_torch():
    """The CLI builds its parser from FitConfig: reading the declarations must not import torch."""
    import subprocess
    import sys

    code = ("import sys, hf_sparse.modeling.fit_config as f; f.FitConfig.names(); f.FitConfig.help('alpha'); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
