"""How long Snakemake takes to build the COCO DAG (`snakemake -n --cores 8 results/coco/miou.json`) on a
fixture with COCO 2014's split sizes (82,081 + 40,137 image entries in the annotation files, empty
image files), with 1 and 16 shards, against the target of 10 s and against a tiny COCO fixture. The
build checks the layout and that every listed image exists; the jobs are per stage and shard.
Prints the medians of 3 runs (--quick, for the tests: a 2,000 + 1,000 image fixture, one run each,
no tiny fixture)."""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from coco_fixture import listed_coco  # noqa: E402

TARGET_SECONDS = 10.0


def dry_run(cwd: Path, shards: int) -> tuple[float, int]:
    """(seconds, jobs) of one dry run."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "8",
                          "--config", f"shards={shards}", "--", "results/coco/miou.json"],
                         cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"dry run failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return seconds, int(re.search(r"^total\s+(\d+)$", run.stdout, re.M).group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small fixture, one run each (for the tests)")
    args = p.parse_args()
    big = (2000, 1000) if args.quick else (82081, 40137)
    sizes = {f"COCO-sized ({big[0]:,} + {big[1]:,})": big, **({} if args.quick else {"tiny (12 + 4)": (12, 4)})}
    repeats = 1 if args.quick else 3
    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (train, val) in sizes.items():
            cwd = Path(tmp) / name.split()[0]
            listed_coco(cwd / "data/coco", train, val)
            for shards in (1, 16):
                runs = [dry_run(cwd, shards) for _ in range(repeats)]
                medians[name, shards] = statistics.median(s for s, _ in runs)
                print(f"{name:32s} shards={shards:2d}: {runs[0][1]:3d} jobs, DAG built in "
                      f"{medians[name, shards]:5.2f} s (median of {repeats})")
    big_name, *tiny_name = sizes
    worst = max(medians[big_name, s] for s in (1, 16))
    if tiny_name:
        print(f"COCO-sized / tiny (shards=1): {medians[big_name, 1] / medians[tiny_name[0], 1]:.2f}")
    ratio = worst / TARGET_SECONDS
    print(f"ratio slowest COCO-sized build / {TARGET_SECONDS:.0f} s: {ratio:.2f} "
          f"(target <= 1.0: {'OK' if ratio <= 1.0 else 'MISSED'})")


if __name__ == "__main__":
    main()
