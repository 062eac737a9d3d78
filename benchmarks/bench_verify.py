"""The cost of verifying every read of an artifact: its share of the time of the stages that read the
most bytes per second of work, the scorers.

Every ArtifactReader read checks the key's data and attributes against the checksum its writer
stored (once per key and process; pipeline/core/store.py) and counts the seconds it spends doing so.
This benchmark runs two scorers over artifacts of VOC-sized images and reports those seconds as a
share of each scorer's wall time:

- the seed score (pipeline/cams/seeds.py, config.yaml's threshold and sweep) over float16 CAMs of
  1-3 classes per image: the cheapest per-byte reader of the CAMs, so the worst case of the stages
  that read maps (affinity labels, the random walk, refinement spend far more time per image);
- the val mIoU of label maps (pipeline/evaluation/evaluate.py) over uint8 predictions;
- the affinity labels (pipeline/affinity/labels.py, config.yaml's CRF), a per-image stage that reads
  the same CAMs and does the work such stages do (two dense CRFs per image).

Data: N synthetic images of 500 x 375 (a quarter 375 x 500), 21 classes; maps made of Gaussian
blobs, masks from them with a band of 255; written through ArtifactWriter (gzip 4, as the stages do).

Run from the repo root:  python benchmarks/bench_verify.py [--quick]
(--quick: 20 images, 5 of them through the CRF; otherwise 300, and 40 through the CRF)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.affinity.labels import make_labels  # noqa: E402
from pipeline.cams.seeds import evaluate as seed_score, sweep_values  # noqa: E402
from pipeline.core import store  # noqa: E402
from pipeline.core.config import defaults  # noqa: E402
from pipeline.data.voc import VOCDataset  # noqa: E402
from pipeline.evaluation.evaluate import evaluate_predictions  # noqa: E402

CLASSES = ["background", *(f"class{i:02d}" for i in range(1, 21))]
TARGET = 0.02
SEED = 0


def make_split(root: Path, n: int) -> tuple[VOCDataset, Path, Path]:
    """A VOC layout of n masks, and the CAM and prediction artifacts of its images."""
    rng = np.random.default_rng(SEED)
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    ids = [f"img_{i:05d}" for i in range(n)]
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    cams, preds = root / "cams.h5", root / "preds.h5"
    with store.ArtifactWriter(cams, meta={"bench": 1}) as cam_writer, \
            store.ArtifactWriter(preds, meta={"bench": 1}) as pred_writer:
        for i, image_id in enumerate(ids):
            h, w = (375, 500) if i % 4 else (500, 375)
            classes = np.sort(rng.choice(np.arange(1, 21), size=rng.integers(1, 4), replace=False))
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            maps = np.stack([np.exp(-(((yy - rng.uniform(0, h)) / rng.uniform(40, 120)) ** 2
                                      + ((xx - rng.uniform(0, w)) / rng.uniform(40, 120)) ** 2)) for _ in classes])
            label = np.where(maps.max(0) > 0.3, classes[maps.argmax(0)], 0).astype(np.uint8)
            band = (maps.max(0) > 0.2) & (maps.max(0) <= 0.3)
            mask = np.where(band, 255, label).astype(np.uint8)
            Image.fromarray(mask, mode="L").save(root / "SegmentationClass" / f"{image_id}.png")
            colour = rng.integers(0, 256, size=(21, 3), dtype=np.uint8)[label]
            noisy = np.clip(colour.astype(np.int16) + rng.integers(-20, 21, size=colour.shape), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
            cam_writer.write(image_id, maps, classes=classes.astype(np.int64))
            pred_writer.write(image_id, np.roll(label, 5, axis=1))
    return VOCDataset(root, CLASSES, "train"), cams, preds


def share(run) -> tuple[float, float]:
    """(wall seconds of run(), seconds of it spent verifying reads)."""
    before = store.VERIFY_TIME["seconds"]
    start = time.perf_counter()
    run()
    return time.perf_counter() - start, store.VERIFY_TIME["seconds"] - before


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20 images instead of 300")
    args = p.parse_args()
    n, n_crf = (20, 5) if args.quick else (300, 40)
    seeds = defaults("seeds") or {"bg_threshold": 0.15, "sweep": [0.05, 0.6, 0.05]}
    affinity = defaults("affinity")
    with tempfile.TemporaryDirectory() as tmp:
        voc, cams, preds = make_split(Path(tmp), n)
        mb = sum(store.ArtifactReader(cams)[k].nbytes for k in voc.ids) / 2**20
        rows = []
        for name, run in (
            ("seed score (float16 CAMs)", lambda: seed_score(store.ArtifactReader(cams), voc, seeds["bg_threshold"],
                                                             sweep_values(*seeds["sweep"]))),
            ("val mIoU (uint8 label maps)", lambda: evaluate_predictions(store.ArtifactReader(preds), voc)),
        ):
            run()   # warm-up: the page cache holds the files, as in a stage that reads its input once
            wall, verify = share(run)
            rows.append((name, wall, verify))
        crf_voc = voc.subset(voc.ids[:n_crf])
        out = Path(tmp) / "labels.h5"
        wall, verify = share(lambda: make_labels(store.ArtifactReader(cams), crf_voc, out, affinity, workers=1))
        rows.append((f"affinity labels ({n_crf} images)", wall, verify))
    print(f"{n} images of 500 x 375, {mb:.0f} MiB of CAMs decoded")
    print(f"{'stage':32s} {'wall s':>8s} {'verify s':>9s} {'share':>7s}")
    for name, wall, verify in rows:
        print(f"{name:32s} {wall:8.2f} {verify:9.3f} {verify / wall:7.2%}")
    worst = max(verify / wall for _, wall, verify in rows)
    print(f"ratio verify/stage {worst:.4f} (the worst row) (target <= {TARGET}: {'OK' if worst <= TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
