"""The layers of ../shared/DESIGN.md hold in the code, and importing the package stays cheap.

- the import graph, read from the source (every `import` / `from ... import`, at module level or inside functions):
  each of solver -> features -> modeling -> explain -> audit -> card -> cli imports only the layers before it, and
  the shared modules (constants, utils, ...) import no layer;
- `import hf_sparse.solver` does not import transformers, and `hf-sparse --help` does not import torch (subprocesses);
- transformers' Auto classes still know the model classes after a plain `import hf_sparse`;
- the checkpoint-artifact registry: a registered artifact is saved, listed in the manifest and loaded back;
- every module stays small (issue #14): no .py file in hf_sparse/ is over MAX_LINES lines.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hf_sparse"

#: The layers, from the bottom: each may import only the ones before it.
LAYERS = ("solver", "features", "modeling", "explain", "metrics", "audit", "card", "cli")
#: Modules under hf_sparse/ that every layer may use; they import no layer themselves.
SHARED = ("constants", "utils", "text_safety", "plotting", "tables", "data_paths")
#: Modules that compose the layers (the public model classes, the demo): only the command line, the last layer,
#: imports them.
TOP = ("models", "demo", "synthetic")


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, hf_sparse module) for every import of hf_sparse in `source`, wherever it is (functions included);
    `from hf_sparse import X` names X's module when X is a submodule or a lazily loaded public name."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            if base == "hf_sparse":  # the package itself: a submodule, a lazy public name, or __version__
                for alias in node.names:
                    found.append((node.lineno, _top_level_name(alias.name)))
            else:
                found.append((node.lineno, base))
    return [(line, name) for line, name in found if name == "hf_sparse" or name.startswith("hf_sparse.")]


def _top_level_name(name: str) -> str:
    if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file():
        return f"hf_sparse.{name}"
    import hf_sparse

    lazy = getattr(hf_sparse, "_LAZY", {})
    return lazy.get(name, "hf_sparse")


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """What `module` (with `source`) imports against the layer order: a layer imports the layers before it and the
    shared modules (the command line also the composed top); a shared module imports only shared modules."""
    own = _part(module)
    problems = []
    for line, target in imported_modules(source, module, is_package):
        other = _part(target)
        if other == own or not other:
            continue
        if own in LAYERS:
            allowed = set(LAYERS[: LAYERS.index(own)]) | set(SHARED) | (set(TOP) if own == "cli" else set())
        elif own in SHARED:
            allowed = set(SHARED)
        else:
            continue  # the top composes everything
        if other not in allowed:
            problems.append(f"{module}:{line} imports {target} ({other} is not below {own})")
    return problems


def test_every_layer_imports_only_the_layers_below_it():
    problems = []
    modules = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        module, is_package = _module_name(path)
        modules += 1
        problems += layer_violations(path.read_text(encoding="utf-8"), module, is_package)
    assert modules > 50  # the walk saw the package
    assert problems == []


def test_modeling_features_and_solver_never_import_upward():
    """The issue's rule, spelled out: no import of explain/audit/card/cli (or the composed top) below them."""
    upper = set(LAYERS[3:]) | set(TOP)
    found = []
    for layer in ("solver", "features", "modeling"):
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            module, is_package = _module_name(path)
            for line, target in imported_modules(path.read_text(encoding="utf-8"), module, is_package):
                if _part(target) in upper:
                    found.append(f"{module}:{line} -> {target}")
    assert found == []


def test_the_checker_finds_upward_imports_hidden_in_functions():
    source = textwrap.dedent("""
        from .configuration import SparseHeadConfig
        from ..solver import fit_path

        def save(model):
            from ..card import write_model_card
            import hf_sparse.audit.report
            from hf_sparse import SparseHeadForSequenceClassification
            from .. import __version__
    """)
    problems = layer_violations(source, "hf_sparse.modeling.base")
    assert [p.split(" imports ")[1] for p in problems] == [
        "hf_sparse.card (card is not below modeling)",
        "hf_sparse.audit.report (audit is not below modeling)",
        "hf_sparse.models (models is not below modeling)",
    ]
    assert layer_violations("from ..modeling import SparseLinear", "hf_sparse.explain.mixin") == []
    assert layer_violations("import hf_sparse.solver", "hf_sparse.utils") == [
        "hf_sparse.utils:1 imports hf_sparse.solver (solver is not below utils)"
    ]


#: Issue #14: one concept per file, none over this many lines (split a file that grows past it).
MAX_LINES = 400


def long_files(root: Path, limit: int = MAX_LINES) -> list[str]:
    """'path: N lines (more than limit)' for every .py file under `root` longer than `limit` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            found.append(f"{path.relative_to(root.parent).as_posix()}: {n} lines (more than {limit}; split it along "
                         "its concepts)")
    return found


def test_no_module_is_over_400_lines():
    assert len(list(PACKAGE.rglob("*.py"))) > 50  # the walk saw the package
    assert long_files(PACKAGE) == []


def test_the_line_check_names_the_file_and_its_length(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "small.py").write_text("x = 1\n" * 400, encoding="utf-8")  # exactly the limit: fine
    (package / "sub" / "big.py").write_text("x = 1\n" * 401, encoding="utf-8")
    (package / "notes.txt").write_text("x\n" * 1000, encoding="utf-8")  # not Python
    assert long_files(package) == ["pkg/sub/big.py: 401 lines (more than 400; split it along its concepts)"]


# ------------------------------------------------------------------------------------------ import time
def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


def test_importing_the_solver_does_not_import_transformers():
    done = _run("import hf_sparse.solver, sys; print(sorted(m for m in ('transformers', 'torch', 'datasets') "
                "if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.replace("'", '"')) == ["torch"]  # the solver is torch code; nothing of HF


def test_cli_help_does_not_import_torch():
    done = _run(textwrap.dedent("""
        import sys
        from hf_sparse.cli import main
        try:
            main(["--help"])
        except SystemExit as stop:
            assert stop.code == 0, stop.code
        print("LOADED", sorted(m for m in ("torch", "transformers", "datasets") if m in sys.modules))
    """))
    assert done.returncode == 0, done.stderr
    assert "usage: hf-sparse" in done.stdout
    assert done.stdout.splitlines()[-1] == "LOADED []"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A saved tiny hf_sparse text checkpoint (with its tokenizer)."""
    from _tiny_models import tiny_sparse_model

    folder = tmp_path_factory.mktemp("layers")
    tiny_sparse_model(folder).save_pretrained(folder / "out", model_card=False)
    return folder / "out"


#: How a user may get to transformers' Auto classes: hf_sparse first or last, and through a tokenizer import or the
#: pipelines, both of which load the Auto model classes while transformers is still importing itself.
LOADS = {
    "hf_sparse first": "import hf_sparse\nfrom transformers import AutoModelForSequenceClassification as A\n"
                       "model = A.from_pretrained(CKPT)",
    "transformers first": "from transformers import AutoModelForSequenceClassification as A\nimport hf_sparse\n"
                          "model = A.from_pretrained(CKPT)",
    "tokenizer first": "import hf_sparse\nfrom transformers import AutoTokenizer\n"
                       "from transformers import AutoModelForSequenceClassification as A\nmodel = A.from_pretrained(CKPT)",
    "pipeline": "import hf_sparse\nfrom transformers import pipeline\n"
                "model = pipeline('text-classification', model=CKPT).model",
}


@pytest.mark.parametrize("load", list(LOADS))
def test_auto_classes_load_a_checkpoint_after_a_plain_import(checkpoint, load):
    code = f"CKPT = {str(checkpoint)!r}\n" + LOADS[load] + "\nprint(type(model).__module__, type(model).__name__)"
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning" not in done.stderr
    assert done.stdout.split() == ["hf_sparse.models", "SparseHeadForSequenceClassification"]


# ------------------------------------------------------------------------------------------ artifact registry
def test_a_registered_artifact_is_saved_checked_and_loaded(tmp_path):
    from _tiny_models import tiny_sparse_model

    from hf_sparse.constants import MANIFEST_NAME
    from hf_sparse.modeling.artifacts import Artifact, register_artifact, unregister_artifact

    loaded = {}

    def save(model, directory, options):
        (directory / "notes.json").write_text(json.dumps({"head_only": options["head_only"]}), encoding="utf-8")
        return ["notes.json"]

    def load(model, local_files):
        loaded["notes"] = json.loads(Path(local_files["notes.json"]).read_text(encoding="utf-8"))

    register_artifact(Artifact("notes", files=("notes.json",), save=save, load=load))
    try:
        model = tiny_sparse_model(tmp_path)
        written = model.save_pretrained(tmp_path / "out", head_only=True, model_card=False)
        assert str(tmp_path / "out" / "notes.json") in written
        manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text(encoding="utf-8"))
        assert "notes.json" in manifest["files"]
        type(model).from_pretrained(tmp_path / "out")
        assert loaded == {"notes": {"head_only": True}}
    finally:
        unregister_artifact("notes")
    # Unregistered, the file is no longer the checkpoint's: a new save keeps it (as any file of the user's) but
    # does not list it in the manifest.
    model.save_pretrained(tmp_path / "out", head_only=True, model_card=False)
    assert (tmp_path / "out" / "notes.json").exists()
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert "notes.json" not in manifest["files"]
