"""Throughput of pipeline.maps.metrics.ConfusionAccumulator vs a plain masked bincount.

Data: 1,449 synthetic VOC-val-sized label maps (500x375, a quarter 375x500),
21 classes, 2-6 rectangles / ellipses on background 0 with a 6 px band of
255 around each object (~5% of pixels), and predictions made from the gt by
shifting it, relabelling some objects and adding speckle noise.

Run from the repo root:  python benchmarks/bench_confusion.py [--quick]   (--quick: 60 maps, 1 pass)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.maps.metrics import ConfusionAccumulator  # noqa: E402

NUM_CLASSES = 21
IGNORE = 255
NUM_MAPS = 1449
REPEATS = 5
BAND = 6
SEED = 0


def make_gt(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    gt = np.zeros((height, width), np.uint8)
    for _ in range(rng.integers(2, 7)):
        cls = rng.integers(1, NUM_CLASSES)
        ry, rx = rng.integers(20, height // 4), rng.integers(20, width // 4)
        cy, cx = rng.integers(ry, height - ry), rng.integers(rx, width - rx)
        y0, y1 = max(cy - ry - BAND, 0), min(cy + ry + BAND + 1, height)
        x0, x1 = max(cx - rx - BAND, 0), min(cx + rx + BAND + 1, width)
        box = gt[y0:y1, x0:x1]
        yy, xx = np.ogrid[y0 - cy:y1 - cy, x0 - cx:x1 - cx]
        if rng.random() < 0.5:  # ellipse
            inside = (yy / ry) ** 2 + (xx / rx) ** 2 <= 1
            in_band = (yy / (ry + BAND)) ** 2 + (xx / (rx + BAND)) ** 2 <= 1
        else:  # rectangle
            inside = (np.abs(yy) <= ry) & (np.abs(xx) <= rx)
            in_band = np.ones(box.shape, bool)
        box[in_band & ~inside] = IGNORE  # VOC-style "void" outline
        box[inside] = cls
    return gt


def make_pred(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    dy, dx = rng.integers(-8, 9, size=2)
    pred = np.roll(gt, (dy, dx), axis=(0, 1))
    pred[pred == IGNORE] = 0
    for cls in np.unique(pred[pred > 0]):
        if rng.random() < 0.3:  # wrong class for a whole object
            pred[pred == cls] = rng.integers(1, NUM_CLASSES)
    speckle = rng.random(gt.shape) < 0.02
    pred[speckle] = rng.integers(0, NUM_CLASSES, size=int(speckle.sum()))
    return pred


def make_dataset(rng: np.random.Generator, num_maps: int = NUM_MAPS):
    pairs = []
    for _ in range(num_maps):
        height, width = (375, 500) if rng.random() < 0.75 else (500, 375)
        gt = make_gt(rng, height, width)
        pairs.append((gt, make_pred(rng, gt)))
    return pairs


def run_project(pairs) -> np.ndarray:
    acc = ConfusionAccumulator(NUM_CLASSES, ignore_index=IGNORE)
    for gt, pred in pairs:
        acc.add(gt, pred)
    return acc.matrix


def run_plain(pairs) -> np.ndarray:
    n = NUM_CLASSES
    total = np.zeros(n * n, np.int64)
    for gt, pred in pairs:
        mask = gt != IGNORE
        # The int64 cast is needed: under NumPy 2, n * uint8 stays uint8 and wraps.
        total += np.bincount(n * gt[mask].astype(np.int64) + pred[mask], minlength=n * n)
    return total.reshape(n, n)


def timed(fn, pairs):
    start = time.perf_counter()
    result = fn(pairs)
    return time.perf_counter() - start, result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="60 maps, one pass each: a smoke test")
    args = p.parse_args()
    num_maps, repeats = (60, 1) if args.quick else (NUM_MAPS, REPEATS)
    start = time.perf_counter()
    pairs = make_dataset(np.random.default_rng(SEED), num_maps)
    total_px = sum(gt.size for gt, _ in pairs)
    ignored = sum(int(np.count_nonzero(gt == IGNORE)) for gt, _ in pairs)
    portrait = sum(gt.shape[0] > gt.shape[1] for gt, _ in pairs)
    print(f"numpy {np.__version__}; generated {len(pairs)} maps ({portrait} portrait) "
          f"in {time.perf_counter() - start:.1f} s")
    print(f"pixels per pass: {total_px / 1e6:.1f} MP, ignored (255): {100 * ignored / total_px:.1f}%")

    times = {"project": [], "plain": []}
    reference = None
    for _ in range(repeats):  # interleaved so drift affects both equally
        for name, fn in (("project", run_project), ("plain", run_plain)):
            seconds, matrix = timed(fn, pairs)
            times[name].append(seconds)
            if reference is None:
                reference = matrix
            elif not np.array_equal(matrix, reference):
                print(f"ERROR: {name} confusion matrix differs from the first run", file=sys.stderr)
                return 1

    mpps = {name: total_px / 1e6 / statistics.median(ts) for name, ts in times.items()}
    print(f"project ConfusionAccumulator: {mpps['project']:7.1f} MP/s median of {repeats} "
          f"({statistics.median(times['project']):.3f} s per pass)")
    print(f"plain masked np.bincount:     {mpps['plain']:7.1f} MP/s median of {repeats} "
          f"({statistics.median(times['plain']):.3f} s per pass)")
    ratio = mpps["project"] / mpps["plain"]
    print(f"ratio project / plain: {ratio:.2f}x (target >= 1.0: {'OK' if ratio >= 1.0 else 'MISSED'})")
    print(f"matrices identical: yes ({int(reference.sum())} counted pixels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
