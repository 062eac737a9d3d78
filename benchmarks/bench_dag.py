"""How long Snakemake takes to build the VOC DAG (`snakemake -n --cores 8 results/voc/miou.json`)
on a fixture with PASCAL VOC's split sizes (10,582 train_aug images, empty files), for 1 and 8
shards, against the tiny-dataset DAG: the jobs are per stage and shard, not per image, so the
time should barely grow with the image count. Prints the medians of 3 runs and their ratio
(target <= 2). Run from the repo root (needs only the demo install, not pytest):

    python benchmarks/bench_dag.py [--quick]
"""
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
sys.path.insert(0, str(REPO))
from benchmarks._voc_layout import listed_voc  # noqa: E402

TARGET = 2.0


def dry_run(cwd: Path, shards: int) -> tuple[float, int]:
    """(seconds, jobs) of one dry run."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "8",
                          "--config", f"shards={shards}", "--", "results/voc/miou.json"],
                         cwd=cwd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, int(re.search(r"^total\s+(\d+)$", run.stdout, re.M).group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1,000 images instead of VOC's, one run, one shard count")
    args = p.parse_args()
    big = (1000, 200, 200) if args.quick else (10582, 1464, 1449)
    sizes = {f"VOC-sized ({big[0]:,} train_aug)": big, "tiny (40 train_aug)": (40, 20, 10)}
    runs_each, shard_counts = (1, (1,)) if args.quick else (3, (1, 8))
    one_shard = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (train_aug, train, val) in sizes.items():
            cwd = Path(tmp) / name.split()[0]
            listed_voc(cwd / "data/VOCdevkit/VOC2012", train_aug, train, val)
            for shards in shard_counts:
                runs = [dry_run(cwd, shards) for _ in range(runs_each)]
                median = statistics.median(s for s, _ in runs)
                print(f"{name:30s} shards={shards}: {runs[0][1]:3d} jobs, DAG built in {median:5.2f} s "
                      f"(median of {runs_each})")
                one_shard.setdefault(name, median)
    big, small = one_shard.values()
    ratio = big / small
    print(f"ratio VOC-sized / tiny (shards=1): {ratio:.2f} (target <= {TARGET}: {'OK' if ratio <= TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
