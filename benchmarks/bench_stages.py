"""The heavy per-image stages (extract_cams, propagate, refine) idle and beside one busy process.

Each stage runs as the Snakefile runs it (`python -m stages.<stage> ... --threads <config threads>`
on the CPU) and is timed as a whole process, first alone, then while one competing CPU-bound
process (`python -c "while True: pass"`, started and stopped here) runs, back to back; the table
gives both times and their ratio, target busy / idle <= 2. The load average (/proc/loadavg, as
`uptime` prints it) is printed with every measurement: other jobs on the machine count too.

Inputs: the demo's images, classifier and AffinityNet when --results names a built demo
(`snakemake --cores 2 results/demo/affinity/cam.pt` first), otherwise a stand-in built here from
the demo generator's images (the demo's sizes) and the two networks with untrained heads: a
stage's cost depends on the image sizes and the networks' shapes, not on what they learned.
Run from the repo root:

    python benchmarks/bench_stages.py [--images 48] [--results results/demo] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.core import config as cfgmod  # noqa: E402

DATASET = "demo"


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def stand_in(root: Path, config: dict, images: int) -> dict:
    """Demo-generated images and freshly initialised networks, saved as the training stages save them."""
    from pipeline.data import demo
    from pipeline.models.affinity_net import AffinityNet, save_affinity_net
    from pipeline.models.backbone import normalisation
    from pipeline.models.classifier import build_classifier, save_checkpoint

    ds = config["datasets"][DATASET]
    gen = ds["generator"]
    demo.generate(root / "data", ds["classes"], seed=gen["seed"], n_train=images, n_val=1,
                  min_size=gen["min_size"], max_size=gen["max_size"])
    cls_cfg = cfgmod.stage_config(config, DATASET, "classifier")
    mean, std = normalisation(cls_cfg["backbone"])
    save_checkpoint(build_classifier(cls_cfg, len(ds["classes"]) - 1, cls_cfg["weights"]), root / "classifier.pt",
                    classes=ds["classes"], mean=list(mean), std=list(std), val_map=0.0)
    aff = cfgmod.stage_config(config, DATASET, "affinity")
    net = AffinityNet(aff["backbone"], aff["levels"], aff["dims"], aff["stride"], aff["output_stride"], aff["weights"])
    save_affinity_net(net, root / "affinity.pt", mean=list(mean), std=list(std), radius=aff["radius"])
    return {"data": root / "data", "classifier": root / "classifier.pt", "affinity": root / "affinity.pt"}


def built_demo(results: Path) -> dict:
    inputs = {"data": results / "data", "classifier": results / "classifier.pt",
              "affinity": results / "affinity" / "cam.pt"}
    missing = [str(p) for p in inputs.values() if not p.exists()]
    if missing:
        raise SystemExit(f"--results {results}: missing {', '.join(missing)}; build them first with "
                         f"snakemake --cores 2 {results / 'affinity' / 'cam.pt'}")
    return inputs


def commands(config: dict, inputs: dict, work: Path, run: str) -> dict[str, list[str]]:
    """The three stages' command lines, as the Snakefile writes them, outputs under work/run."""
    classes = json.dumps(config["datasets"][DATASET]["classes"])
    data = ["--root", str(inputs["data"]), "--classes", classes, "--split", "train", "--shard", "1-of-1"]
    threads = str(config["threads"])
    cams_cfg = cfgmod.stage_config(config, DATASET, "cams")
    cams_cfg = {k: cams_cfg[k] for k in ("scales", "flip", "fullycam_levels")}
    out = work / run
    py = [sys.executable, "-m"]
    return {
        "extract_cams": [*py, "stages.extract_cams", *data, "--classifier", str(inputs["classifier"]),
                         "--method", "cam", "--cfg", json.dumps(cams_cfg), "--device", "cpu", "--threads", threads,
                         "--out", str(out / "cam.h5"), "--tally", str(out / "cam.json")],
        # propagate and refine read the idle run's outputs: every run of a stage has the same input
        "propagate": [*py, "stages.propagate", *data, "--eval-split", "train", "--cams", str(work / "idle" / "cam.h5"),
                      "--affinity", str(inputs["affinity"]), "--method", "cam",
                      "--cfg", json.dumps(cfgmod.stage_config(config, DATASET, "random_walk")),
                      "--device", "cpu", "--threads", threads, "--out", str(out / "rw.h5"),
                      "--tally", str(out / "rw.json")],
        "refine": [*py, "stages.refine", *data, "--eval-split", "train", "--maps", str(work / "idle" / "rw.h5"),
                   "--source", "rw", "--method", "cam", "--bg-threshold", "0.15",
                   "--cfg", json.dumps(cfgmod.stage_config(config, DATASET, "refine")), "--workers", threads,
                   "--out", str(out / "pseudo.h5"), "--tally", str(out / "pseudo.json")],
    }


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=48, help="stand-in images (ignored with --results)")
    p.add_argument("--results", type=Path, default=None, help="a built demo's results directory")
    p.add_argument("--repeats", type=int, default=2, help="idle/busy pairs per stage (median)")
    p.add_argument("--quick", action="store_true", help="2 stand-in images, one pair: a smoke test")
    args = p.parse_args()
    if args.quick:
        args.images, args.repeats, args.results = 2, 1, None
    config = cfgmod.load(REPO / "config.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = built_demo(args.results) if args.results else stand_in(work / "inputs", config, args.images)
        n = len((inputs["data"] / "ImageSets" / "Segmentation" / "train.txt").read_text().split())
        print(f"{n} train images of {inputs['data']}, threads {config['threads']} (config.yaml), "
              f"{os.cpu_count()} CPUs; stage = the whole `python -m stages.<stage>` process, "
              f"median of {args.repeats} idle/busy pair(s)")
        print(f"{'stage':<13} {'idle s':>8} {'load':>5} {'busy s':>8} {'load':>5} {'busy/idle':>9}")
        worst = 0.0
        for stage in ("extract_cams", "propagate", "refine"):
            idle, busy, loads = [], [], []
            for r in range(args.repeats):
                loads.append(load())
                idle.append(timed(commands(config, inputs, work, "idle" if r == 0 else f"idle{r}")[stage]))
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                try:
                    time.sleep(0.5)   # let it take its core
                    loads.append(load())
                    busy.append(timed(commands(config, inputs, work, f"busy{r}")[stage]))
                finally:
                    hog.kill()
                    hog.wait()
            ratio = statistics.median(busy) / statistics.median(idle)
            worst = max(worst, ratio)
            print(f"{stage:<13} {statistics.median(idle):8.2f} {loads[0]:>5} {statistics.median(busy):8.2f} "
                  f"{loads[1]:>5} {ratio:9.2f}", flush=True)
        print(f"ratio busy/idle, worst stage: {worst:.2f}x (target <= 2: {'OK' if worst <= 2 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
