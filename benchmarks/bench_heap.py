"""Large CAM scales with freed memory kept (pipeline/__init__.py) against glibc's defaults.

VOC's CAMs run up to scale 2 (1000 x 750 px): every activation of such a pass is a block of
tens of MiB, which glibc by default hands back to the kernel when freed, so the next pass
faults its pages in again. The same CAM pass (the demo's classifier settings, freshly
initialised: cost does not depend on the weights; image + flip) runs in two fresh processes,
one with WSSS_KEEP_FREED_MEMORY=0; each reports the median time and the page faults of one
pass. Target: glibc's defaults >= 1.5x slower at the largest side.
Run from the repo root:

    python benchmarks/bench_heap.py [--sides 176 440 880] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.5


def measure(sides: list[int], repeats: int) -> dict:
    """In this process: seconds and minor page faults of one CAM pass per side."""
    import resource

    import numpy as np

    sys.path.insert(0, str(REPO))
    from benchmarks._timing import median_seconds
    from pipeline.cams.extract import multiscale_cam
    from pipeline.core import config as cfgmod
    from pipeline.core.device import set_threads
    from pipeline.models.backbone import normalisation
    from pipeline.models.classifier import build_classifier

    config = cfgmod.load(REPO / "config.yaml")
    set_threads(config["threads"])
    cfg = cfgmod.stage_config(config, "demo", "classifier")
    model = build_classifier(cfg, 6, "none").eval()
    mean, std = normalisation(cfg["backbone"])
    rng = np.random.default_rng(0)
    result = {}
    for side in sides:
        image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        run = lambda: multiscale_cam(model, image, np.array([1]), [1.0], True, mean, std, "cpu")  # noqa: E731
        seconds = median_seconds(run, repeats)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        run()
        result[side] = {"seconds": seconds, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sides", type=int, nargs="+", default=[176, 440, 880], help="square image sides")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="sides 64 and 440, one repeat: a smoke test")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.sides, args.repeats = [64, 440], 1
    if args.child:
        print(json.dumps(measure(args.sides, args.repeats)))
        return 0
    runs = {}
    for keep in ("1", "0"):
        out = subprocess.run([sys.executable, __file__, "--child", "--repeats", str(args.repeats), "--sides",
                              *map(str, args.sides)], capture_output=True, text=True, check=True,
                             env={**os.environ, "WSSS_KEEP_FREED_MEMORY": keep})
        runs[keep] = {int(k): v for k, v in json.loads(out.stdout.splitlines()[-1]).items()}
    print(f"one CAM pass (image + flip, scale 1), median of {args.repeats} after a warm-up, fresh process each")
    for side in args.sides:
        kept, freed = runs["1"][side], runs["0"][side]
        print(f"  {side:4d} px: kept {kept['seconds']:6.3f} s ({kept['faults']:7d} page faults)   "
              f"glibc defaults {freed['seconds']:6.3f} s ({freed['faults']:7d})   "
              f"{freed['seconds'] / kept['seconds']:4.2f}x")
    largest = args.sides[-1]
    ratio = runs["0"][largest]["seconds"] / runs["1"][largest]["seconds"]
    print(f"ratio glibc defaults / kept at {largest} px: {ratio:.2f}x "
          f"(target >= {TARGET}x: {'OK' if ratio >= TARGET else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
