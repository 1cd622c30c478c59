#!/usr/bin/env bash
# Creates a virtual environment with hf_sparse installed (editable, with test extras).
#
# torch: an already-installed torch is kept (the venv sees the system site-packages).
# Otherwise a CPU build is installed where no GPU is present; set HF_SPARSE_TORCH_INDEX
# to a PyTorch wheel index to choose where it comes from. A CUDA wheel is never
# downloaded onto a machine without a GPU: the install stops and says what to set.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
torch_version=${HF_SPARSE_TORCH_VERSION:-2.13.0}

if "$python" -c "import torch" 2>/dev/null; then
    echo "install: keeping the installed torch $("$python" -c 'import torch; print(torch.__version__)')"
    "$python" -m venv --system-site-packages "$venv"
else
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install -q --upgrade pip setuptools wheel 2>/dev/null || true

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    index=()
    [ -n "${HF_SPARSE_TORCH_INDEX:-}" ] && index=(--index-url "$HF_SPARSE_TORCH_INDEX")
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "install: GPU found, installing torch==$torch_version"
        "${pip[@]}" install -q "${index[@]}" "torch==$torch_version"
    else
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
        echo "install: no GPU, installing the CPU build of torch==$torch_version"
        "${pip[@]}" install -q --no-deps "${index[@]}" "torch==$torch_version"
        "${pip[@]}" install -q "torch==$torch_version"
    fi
fi
"${pip[@]}" install -q -e ".[test]"
"$venv/bin/python" -c "import torch, hf_sparse; print('install: torch', torch.__version__, '| hf_sparse', hf_sparse.__version__)"
