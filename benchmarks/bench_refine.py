"""Cost of the refinements on VOC-sized images (500 x 375), and how the CRF stage scales.

1. Seconds per image of the softmax CRF, the label CRF and PAMR (10 iterations, dilations
   1..24), on a demo image resized to 500 x 375 with 3 maps; median of 5. (A CRF's cost
   depends on the image: pure noise fills the bilateral lattice and is ~3x slower.)
2. Images per second of the refine stage (CRF only) over 24 demo-generated 500 x 375 images,
   with 1 and with 2 worker processes; the ratio shows whether it scales with workers.
   Target: 2 workers >= 1.5x the images per second of 1 (on 2 free cores).
Run from the repo root:  python benchmarks/bench_refine.py [--quick]   (--quick: 4 images of 120 x 160, 1 run)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._timing import median_seconds  # noqa: E402
from pipeline.core import config  # noqa: E402
from pipeline.core.device import set_threads  # noqa: E402
from pipeline.core.store import ArtifactReader, ArtifactWriter  # noqa: E402
from pipeline.data import demo  # noqa: E402
from pipeline.data.voc import VOCDataset  # noqa: E402
from pipeline.maps.crf import crf_labels, crf_softmax  # noqa: E402
from pipeline.refine.pamr import pamr  # noqa: E402
from pipeline.refine.pseudo_labels import refine  # noqa: E402

import torch  # noqa: E402  (after pipeline, which sets OpenMP's policy before torch loads)

CLASSES = ["background", *demo.LOOKS]
CFG = config.load(Path(__file__).resolve().parents[1] / "config.yaml")["refine"] | {"steps": ["crf"]}
TARGET = 1.5


def per_image(voc: VOCDataset, size: tuple[int, int], repeats: int):
    rng = np.random.default_rng(0)
    h, w = size
    image = cv2.resize(voc.load_image(voc.ids[0]), (w, h), interpolation=cv2.INTER_LINEAR)
    maps = rng.random((3, h, w)).astype(np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    set_threads(1)
    print(f"per {w}x{h} image, 3 maps, one thread (median of {repeats} after a warm-up):")
    print(f"  CRF softmax unary  {median_seconds(lambda: crf_softmax(image, maps, CFG['crf_softmax']), repeats):.3f} s")
    print(f"  CRF label unary    "
          f"{median_seconds(lambda: crf_labels(image, maps.argmax(0), 3, CFG['crf_label']), repeats):.3f} s")
    print(f"  PAMR               "
          f"{median_seconds(lambda: pamr(x, torch.from_numpy(maps)[None], **CFG['pamr']), repeats):.3f} s")


def stage_throughput(tmp: Path, voc: VOCDataset):
    rng = np.random.default_rng(1)
    with ArtifactWriter(tmp / "maps.h5") as writer:
        for image_id in voc.ids:
            ids = [0, *voc.image_labels(image_id)]
            h, w = voc.load_image(image_id).shape[:2]
            writer.write(image_id, rng.random((len(ids), h, w)).astype(np.float32), classes=np.asarray(ids))
    rates = {}
    for workers in (1, 2):
        out = tmp / f"pseudo{workers}.h5"
        start = time.perf_counter()
        refine(ArtifactReader(tmp / "maps.h5"), voc, voc, out, CFG, 0.15, "rw", workers)
        rates[workers] = len(voc) / (time.perf_counter() - start)
    ratio = rates[2] / rates[1]
    print(f"refine stage (CRF), {len(voc)} images: 1 worker {rates[1]:.2f} img/s, 2 workers {rates[2]:.2f} img/s")
    print(f"ratio 2 workers / 1: {ratio:.2f}x (target >= {TARGET}: {'OK' if ratio >= TARGET else 'MISSED'})")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="4 images of 120-160 px, one run: a smoke test")
    args = p.parse_args()
    images, sides, size, repeats = (4, (120, 160), (120, 160), 1) if args.quick else (24, (375, 500), (375, 500), 5)
    with tempfile.TemporaryDirectory() as tmp:
        demo.generate(Path(tmp) / "data", CLASSES, seed=1, n_train=images, n_val=1, min_size=sides[0], max_size=sides[1])
        voc = VOCDataset(Path(tmp) / "data", CLASSES, "train")
        per_image(voc, size, repeats)
        stage_throughput(Path(tmp), voc)
