"""The sparse random walk (pipeline.random_walk) against the dense-matrix walk.

Setting (issue 4): a 512 x 512 image at stride 4 -> a 128 x 128 grid, N = 16,384 pixels;
radius 5 (69 neighbours), beta 8, t = 2^8 = 256 steps, 3 maps (background + 2 classes).
Features are smooth random fields, so affinities vary as on real images.

  sparse: transition_weights (K x h x w planes) + 256 shifted-sum steps
  dense:  the same T scattered into an N x N matrix (2 GiB in float64), then 256 products
          T @ v (psa squares T instead, 8 products of N^3: far slower at this N)

Both run in float64, as pipeline.propagate does, each in its own process; peak memory is the
rise of the process's peak RSS over its RSS before the walk (inputs already built).
Run from the repo root:  python benchmarks/bench_random_walk.py
"""
from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.random_walk import random_walk, transition_weights  # noqa: E402

GRID, DIM, RADIUS, BETA, STEPS, MAPS = 128, 64, 5, 8, 256, 3


def inputs():
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, DIM, GRID // 8, GRID // 8, generator=g, dtype=torch.float64)
    features = F.interpolate(coarse, size=(GRID, GRID), mode="bilinear", align_corners=False)[0] * 4
    maps = torch.rand(MAPS, GRID, GRID, generator=g, dtype=torch.float64)
    return features, maps


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def sparse_walk(features, maps):
    offsets, weights = transition_weights(features, RADIUS, BETA)
    return random_walk(maps, offsets, weights, STEPS)


def dense_walk(features, maps):
    offsets, weights = transition_weights(features, RADIUS, BETA)
    n = GRID * GRID
    T = torch.zeros(n, n, dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    for (dy, dx), plane in zip(offsets, weights):
        inside = (ys + dy >= 0) & (ys + dy < GRID) & (xs + dx >= 0) & (xs + dx < GRID)
        rows = (ys * GRID + xs)[inside]
        T[rows, ((ys + dy) * GRID + xs + dx)[inside]] = plane[inside]
    v = maps.reshape(MAPS, -1).T.contiguous()
    for _ in range(STEPS):
        v = T @ v
    return v.T.reshape(maps.shape)


def measure(name, queue):
    torch.set_num_threads(2)
    features, maps = inputs()
    before = rss_bytes()
    start = time.perf_counter()
    out = {"sparse": sparse_walk, "dense": dense_walk}[name](features, maps)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put((name, seconds, peak - before, out.numpy()))


def run(name):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(name, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main():
    print(f"grid {GRID}x{GRID} (512x512 at stride 4), radius {RADIUS}, beta {BETA}, {STEPS} steps, {MAPS} maps")
    sparse_runs = [run("sparse") for _ in range(3)]
    _, dense_s, dense_mem, dense_out = run("dense")
    sparse_s = float(np.median([r[1] for r in sparse_runs]))
    sparse_mem = float(np.median([r[2] for r in sparse_runs]))
    diff = float(np.abs(sparse_runs[0][3] - dense_out).max())
    print(f"sparse: {sparse_s:8.2f} s (median of 3)  peak +{sparse_mem / 2**20:9.1f} MiB")
    print(f"dense:  {dense_s:8.2f} s                 peak +{dense_mem / 2**20:9.1f} MiB")
    print(f"speed ratio dense/sparse {dense_s / sparse_s:.1f}x (target >= 10x), "
          f"memory ratio {dense_mem / max(sparse_mem, 1):.1f}x (target >= 50x), max |difference| {diff:.2e}")


if __name__ == "__main__":
    main()
