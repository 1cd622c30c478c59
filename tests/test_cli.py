"""The `hf-sparse` command line, run as a user runs it: in subprocesses (`python -m hf_sparse.cli ...` and the
installed `hf-sparse` script).

Every subprocess imports torch and transformers (seconds of CPU each), so the runs are grouped: one batch runs the
`fit` happy path and fit's main errors concurrently; a second batch runs `explain`, `card`, `push` (and `audit`)
on the fitted folder. Each test then checks a run: exit status, that an error is a single line on stderr (no
traceback) saying what was wrong, and the files written. Further error cases and quick runs call `main(argv)` in
this process (`cli` fixture), which goes through the same parsing and error handling.

Nothing touches the network or the real caches: HF_HUB_OFFLINE=1, HF_HOME, the datasets cache and the feature
cache are under temporary folders; `push` uploads to a fake Hub (HfApi patched in the subprocess) or fails
cleanly offline.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from _tiny_models import WORDS, save_text_classifier

#: Subprocesses at once (2 cores; each is mostly single-threaded import work).
PARALLEL = 3
TIMEOUT = 300
AUDIT_FUNCTIONS = ("identity_audit", "subgroup_metrics", "find_error_slices")


def _has_audit() -> bool:
    try:
        audit = importlib.import_module("hf_sparse.audit")
    except ImportError:
        return False
    return all(hasattr(audit, name) for name in AUDIT_FUNCTIONS)


HAS_AUDIT = _has_audit()
CAN_CHMOD = hasattr(os, "geteuid") and os.geteuid() != 0

#: Runs `hf-sparse push` with huggingface_hub's HfApi patched to copy into $FAKE_HUB instead of uploading.
FAKE_HUB = r"""
import os, shutil, sys
from types import SimpleNamespace
from huggingface_hub import HfApi
from huggingface_hub.errors import LocalEntryNotFoundError

hub = os.environ["FAKE_HUB"]

def create_repo(self, repo_id, **kwargs):
    os.makedirs(os.path.join(hub, repo_id), exist_ok=True)
    with open(os.path.join(hub, "calls.txt"), "a") as f:
        f.write(f"create_repo {repo_id} private={kwargs.get('private')}\n")
    return SimpleNamespace(repo_id=repo_id)

def hf_hub_download(self, *args, **kwargs):
    raise LocalEntryNotFoundError("no card yet")

def upload_folder(self, *, repo_id, folder_path, **kwargs):
    shutil.copytree(folder_path, os.path.join(hub, repo_id), dirs_exist_ok=True)
    return SimpleNamespace(commit_url=f"https://hub.example/{repo_id}/commit/1")

HfApi.create_repo, HfApi.hf_hub_download, HfApi.upload_folder = create_repo, hf_hub_download, upload_folder
from hf_sparse.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\n[exit {self.returncode}]\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def _run(argv, env, cwd, prefix=None) -> Run:
    command = (prefix or [sys.executable, "-m", "hf_sparse.cli"]) + [str(a) for a in argv]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    return Run([str(a) for a in argv], done.returncode, done.stdout, done.stderr, time.perf_counter() - started)


def run_batch(jobs: dict, env, cwd) -> dict[str, Run]:
    """Run `{name: argv}` (or `{name: (argv, prefix, extra_env)}`) concurrently; results by name."""
    def one(job):
        argv, prefix, extra = job if isinstance(job, tuple) else (job, None, {})
        return _run(argv, {**env, **extra}, cwd, prefix)

    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {name: pool.submit(one, job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def assert_one_line_error(run: Run, command: str, *needles: str, code: int | None = None) -> str:
    """Non-zero exit, and stderr is exactly one line `hf-sparse <command>: error: ...` holding every needle."""
    assert run.returncode != 0, run
    if code is not None:
        assert run.returncode == code, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run
    assert "Traceback" not in run.stderr, run
    line = lines[0]
    assert line.startswith(f"hf-sparse {command}: error: "), run
    for needle in needles:
        assert needle in line, run
    return line


# ----------------------------------------------------------------------------- workspace
def _labelled_rows(n: int, seed: int, names: bool):
    rng = random.Random(seed)
    for _ in range(n):
        words = rng.choices(WORDS, k=5)
        label = sum(WORDS.index(w) for w in words) % 3
        yield " ".join(words), (f"label_{label}" if names else label)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Working folder: a tiny BERT classifier (labels label_0..2), a CSV with label names, a JSONL with ids."""
    root = tmp_path_factory.mktemp("cli")
    save_text_classifier(root / "bert", "bert", num_labels=3)
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "label"])
        writer.writerows(_labelled_rows(90, seed=0, names=True))
    with open(root / "eval.jsonl", "w", encoding="utf-8") as f:
        for text, label in _labelled_rows(30, seed=1, names=False):
            f.write(json.dumps({"review": text, "label": label}) + "\n")
    with open(root / "bad_labels.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["review", "label"], ["good film", "positive"], ["bad film", "negative"]])
    (root / "texts.txt").write_text("a good and warm film\n\nbad , dull and boring\n", encoding="utf-8")
    (root / "a_file").write_text("not a folder\n")
    (root / "pixel.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a name with an image suffix
    if CAN_CHMOD:
        (root / "read_only").mkdir()
        (root / "read_only").chmod(0o500)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        HF_HUB_OFFLINE="1", HF_HOME=str(root / "hf_home"), HF_SPARSE_FEATURES_CACHE=str(root / "features"),
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")]),
    )
    yield root, env
    if CAN_CHMOD:
        (root / "read_only").chmod(0o700)


FIT = ["fit", "bert", "train.csv", "--text-column", "review", "--n-lambdas", "12", "--no-progress"]


@pytest.fixture(scope="module")
def first(ws):
    """The fit happy path and fit's errors, run together (one through the installed `hf-sparse` script)."""
    root, env = ws
    script = Path(sys.executable).with_name("hf-sparse")
    jobs = {
        "fit": FIT + ["--eval-file", "eval.jsonl", "--features-per-class", "2", "--output", "out"],
        "missing_model": ["fit", "./no_such_model", "train.csv", "--lam", "0.1", "--output", "o1"],
        "missing_dataset": (["fit", "bert", "no_such.csv", "--lam", "0.1", "--output", "o2"],
                            [str(script)] if script.is_file() else None, {}),
        "unknown_column": ["fit", "bert", "train.csv", "--text-column", "sentence", "--lam", "0.1", "--output", "o3"],
        "output_under_file": FIT + ["--lam", "0.1", "--output", "a_file/out"],
    }
    if CAN_CHMOD:
        jobs["read_only_output"] = FIT + ["--lam", "0.1", "--output", "read_only/out"]
    return run_batch(jobs, env, root)


@pytest.fixture(scope="module")
def fitted(ws, first):
    root, _ = ws
    if first["fit"].returncode != 0:
        pytest.fail(f"hf-sparse fit failed:\n{first['fit']}")
    return root / "out"


@pytest.fixture(scope="module")
def second(ws, fitted):
    """explain, card, audit and push on the fitted folder, and the errors that need a subprocess, run together."""
    root, env = ws
    hub = root / "fake_hub"
    jobs = {
        "explain_file": ["explain", "out", "texts.txt", "--html", "why.html"],
        "card": ["card", "out", "--output", "card_out", "--redact"],
        "push": (["push", "out", "me/tiny-sparse", "--private"], [sys.executable, "-c", FAKE_HUB],
                 {"FAKE_HUB": str(hub), "HF_HUB_OFFLINE": "0"}),
    }
    if HAS_AUDIT:
        jobs.update({
            "audit_identity": ["audit", "out", "--suite", "identity", "--target-label", "label_1", "--groups",
                               "religion", "--output", "audited", "--json", "identity.json"],
        })
    return run_batch(jobs, env, root), hub


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """datasets writes the Arrow files of CSV/JSON files it reads under a temporary folder, not the user's cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")


@pytest.fixture
def cli(ws, monkeypatch, capsys, datasets_cache):
    """Run `main(argv)` in this process (for errors and quick runs): returns a `Run` (exit status, stdout, stderr)."""
    import datasets
    import huggingface_hub
    import transformers

    from hf_sparse.cli import main

    root, env = ws
    monkeypatch.chdir(root)
    monkeypatch.setenv("HF_SPARSE_FEATURES_CACHE", env["HF_SPARSE_FEATURES_CACHE"])
    levels = (transformers.utils.logging.get_verbosity(), datasets.utils.logging.get_verbosity(),
              huggingface_hub.utils.logging.get_verbosity())
    bars = (transformers.utils.logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled(),
            huggingface_hub.utils.are_progress_bars_disabled())

    def call(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_info:
            code = exit_info.code
        out, err = capsys.readouterr()
        return Run(list(argv), code, out, err, 0.0)

    yield call
    transformers.utils.logging.set_verbosity(levels[0])
    datasets.utils.logging.set_verbosity(levels[1])
    huggingface_hub.utils.logging.set_verbosity(levels[2])
    if bars[0]:
        transformers.utils.logging.enable_progress_bar()
    if bars[1]:
        datasets.enable_progress_bars()
    if not bars[2]:
        huggingface_hub.utils.enable_progress_bars()


needs_audit = pytest.mark.skipif(not HAS_AUDIT, reason="waiting for hf_sparse.audit")


# ----------------------------------------------------------------------------- fit
def test_fit_saves_a_sparse_model_and_prints_a_summary(first, fitted):
    run = first["fit"]
    assert run.returncode == 0, run
    assert "Traceback" not in run.stderr
    config = json.loads((fitted / "config.json").read_text())
    assert config["model_type"] == "hf_sparse"
    assert config["selection"]["method"] == "features_per_class" and config["selection"]["value"] == 2
    assert config["dense_metrics"]["split"] == "eval" and config["dense_metrics"]["n_examples"] == 30
    assert {"model.safetensors", "hf_sparse_manifest.json", "README.md"} <= {p.name for p in fitted.iterdir()}
    out = run.stdout  # train.csv holds label names ("label_0".."label_2"): the fit mapped them to class ids
    assert "accuracy" in out and "dense" in out and "sparse" in out
    assert "2 per class" in out and "--eval-file eval.jsonl (30 rows)" in out and "out" in out


def test_fit_help_documents_options_and_multi_gpu(cli):
    run = cli("fit", "--help")
    assert run.returncode == 0, run
    for text in ("--features-per-class", "--max-accuracy-drop", "--lam", "--validation-size", "default: 0.99",
                 "accelerate launch", "torchrun", "--trust-remote-code"):
        assert text in run.stdout, text


def test_fit_missing_model_folder(first, ws):
    assert_one_line_error(first["missing_model"], "fit", "./no_such_model", "no such folder", code=1)
    assert not (ws[0] / "o1").exists()  # nothing left behind


def test_fit_missing_dataset_file(first):
    assert_one_line_error(first["missing_dataset"], "fit", "no_such.csv", "no such file", code=1)


def test_fit_unknown_column_lists_the_columns(first, cli):
    line = assert_one_line_error(first["unknown_column"], "fit", "'sentence'", "--text-column", code=1)
    assert "['review', 'label']" in line
    line = assert_one_line_error(cli(*FIT[:5], "--label-column", "stars", "--lam", "0.1", "--output", "o4"),
                                 "fit", "'stars'", "--label-column", code=1)
    assert "['review', 'label']" in line


def test_fit_label_names_that_are_not_the_models(cli):
    run = cli("fit", "bert", "bad_labels.csv", "--text-column", "review", "--lam", "0.1", "--output", "o5")
    assert_one_line_error(run, "fit", "'negative'", "label_0", code=1)


def test_fit_bad_sparsity_target_is_a_usage_error(cli):
    assert_one_line_error(cli(*FIT, "--features-per-class", "0", "--output", "o6"), "fit",
                          "--features-per-class: must be a positive integer", code=2)
    assert_one_line_error(cli(*FIT, "--output", "o7"), "fit", "--features-per-class K", code=2)
    assert_one_line_error(cli(*FIT, "--features-per-class", "2", "--lam", "0.1", "--output", "o8"), "fit",
                          "not allowed with", code=2)
    assert_one_line_error(cli(*FIT, "--max-accuracy-drop", "5", "--output", "o8"), "fit", "fraction", code=2)


def test_fit_output_under_a_file(first):
    assert_one_line_error(first["output_under_file"], "fit", "a_file/out", "a_file is a file", code=1)


@pytest.mark.skipif(not CAN_CHMOD, reason="running as root: a read-only folder is still writable")
def test_fit_read_only_output(first):
    assert_one_line_error(first["read_only_output"], "fit", "read_only/out", "ermission denied", code=1)


def test_fit_unwritable_output_folder(cli, monkeypatch):
    # Works as root too (where chmod cannot make a folder read-only): the write probe is refused.
    import pathlib

    def refuse(self, data):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "write_bytes", refuse)
    run = cli(*FIT, "--lam", "0.1", "--output", "locked")
    assert_one_line_error(run, "fit", "cannot write to --output locked", "Permission denied", code=1)


def test_fit_eval_split_of_a_file(cli):
    run = cli(*FIT, "--eval-split", "validation", "--lam", "0.1", "--output", "o9")
    assert_one_line_error(run, "fit", "--eval-split", "--validation-size", code=2)


# ----------------------------------------------------------------------------- explain
def test_explain_a_text_file_to_text_and_html(second, ws):
    run = second[0]["explain_file"]
    assert run.returncode == 0, run
    assert run.stdout.count("prediction: label_") == 2  # the two non-empty lines of texts.txt
    assert "input: a good and warm film" in run.stdout and "input: bad , dull and boring" in run.stdout
    html = (ws[0] / "why.html").read_text()
    assert html.startswith("<!doctype html>") and html.count("hf-sparse-explanation") == 2


def test_explain_text_option_prints_json(fitted, cli):
    run = cli("explain", "out", "--text", "superb warm film", "--text", "cold", "--json")
    assert run.returncode == 0, run
    data = json.loads(run.stdout)
    assert [d["input"] for d in data] == ["superb warm film", "cold"]
    assert all(d["prediction"] in ("label_0", "label_1", "label_2") and "contributions" in d for d in data)


def test_explain_errors(fitted, cli):
    assert_one_line_error(cli("explain", "out", "no_such.txt"), "explain", "no_such.txt", "no such file", code=1)
    assert_one_line_error(cli("explain", "out", "pixel.png"), "explain", "text model", code=1)
    assert_one_line_error(cli("explain", "bert", "--text", "good"), "explain", "not an hf_sparse checkpoint",
                          "hf-sparse fit", code=1)
    assert_one_line_error(cli("explain", "out"), "explain", "INPUT_FILE or --text", code=2)


# ----------------------------------------------------------------------------- card
def test_card_writes_a_redacted_card(second, ws):
    run = second[0]["card"]
    assert run.returncode == 0, run
    card = ws[0] / "card_out" / "README.md"
    assert card.is_file() and "sparse" in card.read_text().lower()
    assert str(card.name) in run.stdout


def test_card_missing_model(cli, ws):
    assert_one_line_error(cli("card", "no_such_dir/"), "card", "no_such_dir", "no such folder", code=1)
    assert not (ws[0] / "no_such_dir").exists()


# ----------------------------------------------------------------------------- push
def test_push_uploads_the_model_and_card(second):
    runs, hub = second
    run = runs["push"]
    assert run.returncode == 0, run
    assert "me/tiny-sparse" in run.stdout
    repo = hub / "me" / "tiny-sparse"
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in repo.iterdir()}
    assert "create_repo me/tiny-sparse private=True" in (hub / "calls.txt").read_text()


def test_push_offline_says_the_hub_cannot_be_reached(fitted, cli):
    assert_one_line_error(cli("push", "out", "me/tiny-sparse"), "push", "cannot reach the Hub", "HF_HUB_OFFLINE",
                          code=1)
    assert_one_line_error(cli("push", "no_such_dir/", "me/tiny-sparse"), "push", "no_such_dir", "no such folder", code=1)


# ----------------------------------------------------------------------------- audit
@needs_audit
def test_audit_identity_saves_the_report(second, ws):
    run = second[0]["audit_identity"]
    assert run.returncode == 0, run
    audited = ws[0] / "audited"
    assert (audited / "audit.json").is_file() and (audited / "README.md").is_file()
    assert json.loads((ws[0] / "identity.json").read_text())


@needs_audit
def test_audit_slices_prints_a_report(fitted, cli):
    run = cli("audit", "out", "--suite", "slices", "--dataset", "eval.jsonl", "--text-column", "review",
              "--n-slices", "2", "--spotlight-size", "0.2", "--no-save")
    assert run.returncode == 0, run
    assert "Slice 1" in run.stdout or "slice" in run.stdout.lower()
    assert "error slices: searching" in run.stderr  # the search has a progress bar ...
    quiet = cli("audit", "out", "--suite", "slices", "--dataset", "eval.jsonl", "--text-column", "review",
                "--n-slices", "2", "--spotlight-size", "0.2", "--no-save", "--no-progress")
    assert quiet.returncode == 0 and "error slices" not in quiet.stderr, quiet  # ... that --no-progress hides


@needs_audit
def test_audit_errors(fitted, cli):
    run = cli("audit", "out", "--suite", "slices", "--dataset", "eval.jsonl")
    line = assert_one_line_error(run, "audit", "'text'", "--text-column", code=1)
    assert "'review'" in line
    assert_one_line_error(cli("audit", "out", "--suite", "slices"), "audit", "needs --dataset", code=2)
    assert_one_line_error(cli("audit", "no_such_dir/", "--suite", "identity"), "audit", "no such folder", code=1)


def test_audit_wiring_with_a_stand_in_audit_module(fitted, cli, monkeypatch, ws):
    """The CLI side of `audit` (data, arguments, printing, JSON, saving) against stand-in audit functions."""
    import types

    calls = []

    class Report:
        def __init__(self, name):
            self.name = name

        def __str__(self):
            return f"{self.name} report: all fine"

        def to_dict(self):
            return {"suite": self.name}

    def find_error_slices(model, dataset, *, n_slices, text_column, label_column):
        calls.append(("slices", len(dataset), n_slices, text_column, label_column, dataset["label"][:3]))
        return Report("slices")

    def subgroup_metrics(model, dataset, *, text_column, label_column, identity_columns):
        calls.append(("subgroup", identity_columns))
        return Report("subgroup")

    def identity_audit(model, **kwargs):
        calls.append(("identity", kwargs))
        return Report("identity")

    fake = types.SimpleNamespace(identity_audit=identity_audit, find_error_slices=find_error_slices,
                                 subgroup_metrics=subgroup_metrics)
    import hf_sparse

    monkeypatch.setitem(sys.modules, "hf_sparse.audit", fake)
    monkeypatch.setattr(hf_sparse, "audit", fake, raising=False)
    run = cli("audit", "out", "--suite", "slices", "--dataset", "eval.jsonl", "--text-column", "review",
              "--n-slices", "3", "--max-rows", "10", "--output", "audited_stand_in", "--json", "slices.json")
    assert run.returncode == 0, run
    first_labels = [label for _, label in _labelled_rows(3, seed=1, names=False)]  # eval.jsonl's first rows
    assert calls == [("slices", 10, 3, "review", "label", first_labels)]
    assert "slices report: all fine" in run.stdout and "audited_stand_in" in run.stdout
    assert json.loads((ws[0] / "slices.json").read_text()) == {"suite": "slices"}
    assert (ws[0] / "audited_stand_in" / "config.json").is_file()
    run = cli("audit", "out", "--suite", "identity", "--target-label", "1,label_2", "--no-save", "--json", "-")
    assert run.returncode == 0 and json.loads(run.stdout) == {"suite": "identity"}, run
    assert calls[-1] == ("identity", {"target_label": [1, "label_2"]})
    assert_one_line_error(cli("audit", "out", "--suite", "subgroup", "--dataset", "eval.jsonl", "--text-column",
                              "review", "--identity-columns", "gender"), "audit", "'gender'", "--identity-columns",
                          code=1)


# ----------------------------------------------------------------------------- in-process: parser and data
def test_every_subcommand_has_help(capsys):
    from hf_sparse.cli import build_parser

    parser = build_parser()
    for command in ("fit", "explain", "audit", "card", "push", "demo"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: hf-sparse {command}") and "--debug" in out


def test_usage_errors_are_one_line(capsys):
    from hf_sparse.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "out", "--suite", "nonsense"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hf-sparse audit: error: argument --suite: invalid choice")


def test_demo_summary_headline():
    from hf_sparse.cli.demo import headline

    lines = headline({"points": 30, "seconds": 1.23456, "selected": {"features_per_class": [5, 5], "val_accuracy": 0.91234},
                      "worst_slice": None})
    assert lines == ["  summary      value",
                     "  -----------  " + "-" * 44,  # the widest value: 44 characters
                     "  points       30",
                     "  seconds      1.235",
                     "  selected     features_per_class 5, 5, val_accuracy 0.9123",
                     "  worst slice  –"]


def test_data_sources_and_splits(tmp_path, datasets_cache):
    import datasets

    from hf_sparse.cli import data
    from hf_sparse.cli.errors import CLIError

    rows = {"text": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]}
    (tmp_path / "d.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(*rows.values())))
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "d.parquet"))
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)})
    dd.save_to_disk(str(tmp_path / "saved"))
    for source in ("d.tsv", "d.parquet", "saved"):
        ds = data.load_source(str(tmp_path / source), split="train", what="DATASET")
        assert ds["text"] == rows["text"] and ds["label"] == rows["label"], source
    with pytest.raises(CLIError, match=r"no split 'validation'; its splits are \['train', 'test'\]"):
        data.load_source(str(tmp_path / "saved"), split="validation", what="DATASET")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(CLIError, match="unknown file type"):
        data.load_source(str(tmp_path / "d.xlsx"), split="train", what="DATASET")
    train, val = data.split_validation(datasets.Dataset.from_dict(rows), 0.5, seed=0)
    again, _ = data.split_validation(datasets.Dataset.from_dict(rows), 0.5, seed=0)
    assert len(train) == len(val) == 2 and train["text"] == again["text"]


def test_label_names_and_ids_are_checked_against_the_model():
    import datasets
    from transformers import BertConfig

    from hf_sparse.cli import data
    from hf_sparse.cli.errors import CLIError

    named = BertConfig(num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    ds = datasets.Dataset.from_dict({"label": ["pos", "neg", "pos"]})
    assert data.encode_labels(ds, "label", named, "DATASET")["label"] == [1, 0, 1]
    reordered = datasets.Dataset.from_dict({"label": [0, 1]}, features=datasets.Features(
        {"label": datasets.ClassLabel(names=["pos", "neg"])}))
    assert data.encode_labels(reordered, "label", named, "DATASET")["label"] == [1, 0]
    generic = BertConfig(num_labels=2)
    with pytest.raises(CLIError, match="unnamed"):
        data.encode_labels(ds, "label", generic, "DATASET")
    with pytest.raises(CLIError, match=r"outside this model's class ids 0..1"):
        data.encode_labels(datasets.Dataset.from_dict({"label": [0, 3]}), "label", named, "DATASET")
