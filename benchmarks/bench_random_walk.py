"""The sparse random walk (pipeline.affinity.random_walk) against the dense-matrix walk, idle and busy.

Setting: a 512 x 512 image at stride 4 -> a 128 x 128 grid, N = 16,384 pixels;
radius 5 (69 neighbours), beta 8, t = 2^8 = 256 steps, 3 maps (background + 2 classes).
Features are smooth random fields, so affinities vary as on real images.

  sparse: T built as a CSR matrix (float32, as pipeline.affinity.propagate runs it), 256 products T @ v
  dense:  the same T as a full N x N float64 matrix (2 GiB), 256 products T @ v: the walk as it
          was computed before, whose result is the reference for the float32 walk's difference

Each walk runs in its own process with the config's `threads` (pipeline.core.device.set_threads), so
peak memory is the rise of that process's peak RSS over its RSS with the inputs built. Every
measurement is taken twice, back to back: idle, and beside one competing CPU-bound process
(`python -c "while True: pass"`, started here; --no-busy skips it); the load average is printed
with each. Then the sparse walk on a 256 x 256 grid (1024 x 1024 at stride 4; the dense T would
take 32 GiB), and whether squaring T (as psa and IRN square their dense T) pays on a sparse T:
T^2 built once, then 128 products.
Run from the repo root:

    python benchmarks/bench_random_walk.py [--quick] [--no-busy]
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.affinity.random_walk import random_walk, transition_matrix  # noqa: E402
from pipeline.core import config as cfgmod  # noqa: E402  (first: it sets OpenMP's policy before torch loads)
from pipeline.core.device import set_threads  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

DIM, RADIUS, BETA, MAPS = 64, 5, 8, 3
TARGET = 100.0


def inputs(grid: int, dtype):
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, DIM, max(grid // 8, 2), max(grid // 8, 2), generator=g, dtype=torch.float64)
    features = F.interpolate(coarse, size=(grid, grid), mode="bilinear", align_corners=False)[0] * 4
    maps = torch.rand(MAPS, grid, grid, generator=g, dtype=torch.float64)
    return features.to(dtype), maps.to(dtype)


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def sparse_walk(grid: int, steps: int):
    features, maps = inputs(grid, torch.float32)
    return features, maps, lambda: random_walk(maps, transition_matrix(features, RADIUS, BETA), steps)


def dense_walk(grid: int, steps: int):
    features, maps = inputs(grid, torch.float64)

    def walk():
        T = transition_matrix(features, RADIUS, BETA).to_dense()
        v = maps.reshape(MAPS, -1).T.contiguous()
        for _ in range(steps):
            v = T @ v
        return v.T.reshape(maps.shape)
    return features, maps, walk


def squared_walk(grid: int, steps: int):
    """T^2 (sparse x sparse, once), then steps / 2 products: psa's and IRN's squaring on a sparse T."""
    features, maps = inputs(grid, torch.float32)

    def walk():
        T = transition_matrix(features, RADIUS, BETA)
        return random_walk(maps, T @ T, steps // 2)
    return features, maps, walk


WALKS = {"sparse": sparse_walk, "dense": dense_walk, "squared": squared_walk}


def measure(kind: str, grid: int, steps: int, threads: int, queue) -> None:
    set_threads(threads)
    WALKS[kind](8, 2)[2]()   # warm-up: the libraries' first-use allocations are not the walk's memory
    _, _, walk = WALKS[kind](grid, steps)
    before = rss_bytes()
    start = time.perf_counter()
    out = walk()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put((seconds, peak - before, out.double().numpy()))


def run(kind: str, grid: int, steps: int, threads: int):
    """(seconds, peak bytes, result) of one walk in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(kind, grid, steps, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


@contextlib.contextmanager
def competing_process(busy: bool):
    if not busy:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)   # let it take its core
        yield
    finally:
        hog.kill()
        hog.wait()


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a 24 x 24 grid, 16 steps, one run: a smoke test")
    p.add_argument("--no-busy", action="store_true", help="idle only, no competing process")
    args = p.parse_args()
    threads = cfgmod.load(REPO / "config.yaml")["threads"]
    grid, big, steps, repeats = (24, 32, 16, 1) if args.quick else (128, 256, 256, 3)
    conditions = ["idle"] if args.no_busy else ["idle", "busy"]
    print(f"grid {grid}x{grid} ({4 * grid}x{4 * grid} at stride 4), radius {RADIUS}, beta {BETA}, {steps} steps, "
          f"{MAPS} maps, {threads} threads (config); sparse float32 (median of {repeats}), dense float64 (1 run)")
    ratios, sparse_seconds = [], {}
    for condition in conditions:
        with competing_process(condition == "busy"):
            load_before = load()
            sparse = [run("sparse", grid, steps, threads) for _ in range(repeats)]
            dense_s, dense_mem, dense_out = run("dense", grid, steps, threads)
        sparse_s = sparse_seconds[condition] = statistics.median(r[0] for r in sparse)
        sparse_mem = statistics.median(r[1] for r in sparse)
        diff = abs(sparse[0][2] - dense_out).max()
        same = (sparse[0][2].argmax(0) == dense_out.argmax(0)).mean()
        speed, memory = dense_s / sparse_s, dense_mem / max(sparse_mem, 1)
        ratios += [speed, memory]
        print(f"{condition} (load {load_before}): sparse {sparse_s:7.2f} s, peak +{sparse_mem / 2**20:7.1f} MiB; "
              f"dense {dense_s:7.2f} s, peak +{dense_mem / 2**20:7.1f} MiB")
        print(f"{condition}: speed ratio dense/sparse {speed:.1f}x, memory ratio {memory:.1f}x (target >= "
              f"{TARGET:.0f}x each); float32 vs float64: max |difference| {diff:.1e}, same argmax {100 * same:.2f}%")
    if args.quick:   # the larger grid and the squaring only in the full run
        conditions = []
    for condition in conditions:
        with competing_process(condition == "busy"):
            load_before = load()
            big_s, big_mem, _ = run("sparse", big, steps, threads)
        print(f"{condition} (load {load_before}): sparse on a {big}x{big} grid (N = {big * big:,}): {big_s:.2f} s, "
              f"peak +{big_mem / 2**20:.1f} MiB (dense T would be {big ** 4 * 8 / 2**30:.1f} GiB)")
    if not args.quick:
        load_before = load()
        squared_s, squared_mem, _ = run("squared", grid, steps, threads)
        print(f"idle (load {load_before}): squared T (T^2 built, {steps // 2} products) {squared_s:.2f} s, "
              f"peak +{squared_mem / 2**20:.1f} MiB, against {sparse_seconds['idle']:.2f} s "
              f"for {steps} products with T (idle, above)")
    worst = min(ratios)
    print(f"ratio dense/sparse, worst of speed and memory over idle{'' if args.no_busy else ' and busy'}: {worst:.1f}x "
          f"(target >= {TARGET:.0f}x: {'OK' if worst >= TARGET else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
