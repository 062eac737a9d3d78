"""IRN's random walk: IRN's dense formulation against ours (sparse CSR), on the same boundary map.

Setting: VOC's 512 x 512 crop at stride 4 -> a 128 x 128 grid, N = 16,384 pixels; IRN's walk:
path affinities 1 - max B along the path within radius 5 (69 neighbours), beta 10, 2^8 steps,
seeds CAM x (1 - B) for 2 classes. The boundary map is a synthetic one: the borders of a random
partition of the grid (values near 1, blurred) over a weak random field, so paths cross real walls.

  dense (IRN's propagate_to_edge): the N x N affinity matrix, raised to beta, each column divided
          by its sum, squared 8 times (T^256), seeds @ T; float32 as IRN runs it
  sparse (ours, pipeline.affinity.irn.irn_walk): T = D^-1 A^beta as a CSR matrix, 256 products T @ v

Both give the labels argmax([0.25, walk / max]) on the grid (IRN's background after dividing by
the global maximum); the benchmark prints how many agree and the largest difference of the
normalised walks. Each walk runs in a fresh process; peak memory is the rise of that process's
peak RSS over its RSS with the inputs built (CPU) or torch's peak allocation (CUDA). IRN's dense
squarings cost N^3 each: on a CPU the 128 x 128 grid takes hours (8 products of two 1 GiB
matrices), so measure it on a GPU (--device cuda), on a smaller grid (--grid 64), or with
--dense products: IRN's same dense T applied 256 times (the memory floor of IRN's walk).
Run from the repo root:

    python benchmarks/bench_irn_walk.py [--quick] [--device auto|cpu|cuda] [--grid 128] [--dense square|products]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.core import config as cfgmod  # noqa: E402  (first: it sets OpenMP's policy before torch loads)
from pipeline.affinity.irn import irn_walk, path_pairs  # noqa: E402
from pipeline.affinity.random_walk import overlap  # noqa: E402
from pipeline.core.device import set_threads  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

RADIUS, BETA, MAPS, BACKGROUND = 5, 10.0, 2, 0.25
TARGET = 100.0


def inputs(grid: int, device: str):
    """(B (grid, grid), seeds (MAPS, grid, grid)), float32 on device, the same for every run."""
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(12, 2, generator=g) * grid
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                            indexing="ij")
    region = ((ys[None] - centres[:, 0, None, None]) ** 2 + (xs[None] - centres[:, 1, None, None]) ** 2).argmin(0)
    wall = torch.zeros(grid, grid)
    wall[:-1] += (region[:-1] != region[1:]).float()
    wall[:, :-1] += (region[:, :-1] != region[:, 1:]).float()
    wall = F.avg_pool2d(wall.clamp(max=1)[None, None], 3, 1, 1)[0, 0] * 2.5
    boundary = (wall + 0.1 * torch.rand(grid, grid, generator=g)).clamp(0, 1)
    seeds = torch.stack([(region == k).float() * torch.rand(grid, grid, generator=g) for k in range(MAPS)])
    return boundary.to(device), seeds.to(device)


def sparse_walk(boundary, seeds, logt):
    return irn_walk(boundary, seeds, RADIUS, BETA, 2 ** logt)


def dense_matrix(boundary):
    """IRN's dense T: A (identity on the diagonal) raised to beta, each column divided by its sum."""
    h, w = boundary.shape
    n = h * w
    A = torch.eye(n, device=boundary.device)
    index = torch.arange(n, device=boundary.device).reshape(h, w)
    for (dy, dx), a in path_pairs(boundary, RADIUS):
        src, dst = overlap(h, w, dy, dx)
        i, j = index[src].flatten(), index[dst].flatten()
        A[i, j] = a.flatten()
        A[j, i] = a.flatten()
    T = A.pow_(BETA)
    return T.div_(T.sum(0, keepdim=True))


def dense_walk(boundary, seeds, logt):
    """IRN's propagate_to_edge: T squared logt times, then seeds x (1 - B) @ T."""
    T = dense_matrix(boundary)
    for _ in range(logt):
        T = T @ T
    x = (seeds * (1 - boundary)).reshape(len(seeds), -1)
    return (x @ T).reshape(seeds.shape)


def dense_products_walk(boundary, seeds, logt):
    """IRN's dense T applied 2^logt times instead of squared: the same matrix in memory (a floor under
    the squaring's, which holds two more), N^2 work a step instead of N^3 a squaring."""
    T = dense_matrix(boundary)
    x = (seeds * (1 - boundary)).reshape(len(seeds), -1)
    for _ in range(2 ** logt):
        x = x @ T
    return x.reshape(seeds.shape)


WALKS = {"sparse": sparse_walk, "dense": dense_walk, "dense_products": dense_products_walk}


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def measure(kind: str, grid: int, logt: int, device: str, threads: int, queue) -> None:
    set_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = False   # float32 products, as the CPU runs them
    with torch.no_grad():
        WALKS[kind](*inputs(8, device), 1)   # warm-up: first-use allocations are not the walk's memory
        boundary, seeds = inputs(grid, device)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            before = rss_bytes()
        start = time.perf_counter()
        out = WALKS[kind](boundary, seeds, logt)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        if device == "cuda":
            peak = torch.cuda.max_memory_allocated() - before
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    # a numpy array crosses the queue by value: a torch tensor would be shared through a file
    # descriptor that dies with this process
    queue.put((seconds, peak, out.double().cpu().numpy()))


def run(kind: str, grid: int, logt: int, device: str, threads: int):
    """(seconds, peak bytes, walked maps) of one walk in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(kind, grid, logt, device, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def labels(walked: torch.Tensor) -> torch.Tensor:
    """IRN's labels on the grid: argmax over [0.25, walk / its global maximum]."""
    normalised = walked / walked.max()
    return torch.cat([torch.full_like(normalised[:1], BACKGROUND), normalised]).argmax(0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a 24 x 24 grid, 2^4 steps: a smoke test")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--grid", type=int, default=128, help="grid side (VOC's 512 crop at stride 4: 128)")
    p.add_argument("--dense", default="square", choices=["square", "products"],
                   help="square: IRN's 8 squarings of T (hours on a CPU at 128 x 128); products: its T applied "
                        "256 times (the same dense matrix, minutes)")
    p.add_argument("--logt", type=int, default=8, help="2^logt steps (IRN: 8); a squaring's peak memory does "
                   "not depend on how many follow, so --logt 1 measures IRN's peak at 1/8 of its time")
    args = p.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    threads = cfgmod.load(REPO / "config.yaml")["threads"]
    grid, logt = (24, 4) if args.quick else (args.grid, args.logt)
    print(f"grid {grid}x{grid} (N = {grid * grid:,}), radius {RADIUS}, beta {BETA:g}, 2^{logt} steps, {MAPS} maps, "
          f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else f", {threads} threads"))
    sparse_s, sparse_mem, sparse_out = run("sparse", grid, logt, device, threads)
    sparse_out = torch.from_numpy(sparse_out)
    dense = "dense" if args.dense == "square" else "dense_products"
    dense_s, dense_mem, dense_out = run(dense, grid, logt, device, threads)
    dense_out = torch.from_numpy(dense_out)
    same = (labels(sparse_out) == labels(dense_out)).double().mean().item()
    diff = (sparse_out / sparse_out.max() - dense_out / dense_out.max()).abs().max().item()
    print(f"sparse (ours): {sparse_s:8.3f} s, peak +{sparse_mem / 2**20:9.1f} MiB")
    print(f"dense (IRN, {'T squared' if args.dense == 'square' else 'T applied'} {logt if args.dense == 'square' else 2 ** logt} "
          f"times): {dense_s:8.3f} s, peak +{dense_mem / 2**20:9.1f} MiB")
    print(f"same labels {100 * same:.2f}%, max |difference| of the normalised walks {diff:.1e}; "
          f"time ratio dense/sparse {dense_s / sparse_s:.1f}x")
    memory = dense_mem / max(sparse_mem, 1)
    print(f"ratio dense/sparse memory: {memory:.1f}x (target >= {TARGET:.0f}x: {'OK' if memory >= TARGET else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
