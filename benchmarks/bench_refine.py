"""Cost of the refinements on VOC-sized images (500 x 375), and how the CRF stage scales.

1. Seconds per image of the softmax CRF, the label CRF and PAMR (10 iterations, dilations
   1..24), on a demo image resized to 500 x 375 with 3 maps; median of 5. (A CRF's cost
   depends on the image: pure noise fills the bilateral lattice and is ~3x slower.)
2. Images per second of the refine stage (CRF only) over 24 demo-generated 500 x 375 images,
   with 1 and with 2 worker processes; the ratio shows whether it scales with workers.
Run from the repo root:  python benchmarks/bench_refine.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._timing import median_seconds  # noqa: E402
from pipeline import config  # noqa: E402
from pipeline.crf import crf_labels, crf_softmax  # noqa: E402
from pipeline.data import demo  # noqa: E402
from pipeline.data.voc import VOCDataset  # noqa: E402
from pipeline.pamr import pamr  # noqa: E402
from pipeline.refine import refine  # noqa: E402
from pipeline.store import ArtifactReader, ArtifactWriter  # noqa: E402

CLASSES = ["background", *demo.LOOKS]
CFG = config.load(Path(__file__).resolve().parents[1] / "config.yaml")["refine"] | {"steps": ["crf"]}


def per_image(voc: VOCDataset):
    rng = np.random.default_rng(0)
    image = cv2.resize(voc.load_image(voc.ids[0]), (500, 375), interpolation=cv2.INTER_LINEAR)
    maps = rng.random((3, 375, 500)).astype(np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    torch.set_num_threads(1)
    print("per 500x375 image, 3 maps, one thread (median of 5 after a warm-up):")
    print(f"  CRF softmax unary  {median_seconds(lambda: crf_softmax(image, maps, CFG['crf_softmax'])):.3f} s")
    print(f"  CRF label unary    {median_seconds(lambda: crf_labels(image, maps.argmax(0), 3, CFG['crf_label'])):.3f} s")
    print(f"  PAMR               {median_seconds(lambda: pamr(x, torch.from_numpy(maps)[None], **CFG['pamr'])):.3f} s")


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
    print(f"refine stage (CRF), {len(voc)} images of 375-500 px: 1 worker {rates[1]:.2f} img/s, "
          f"2 workers {rates[2]:.2f} img/s, ratio {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        demo.generate(Path(tmp) / "data", CLASSES, seed=1, n_train=24, n_val=1, min_size=375, max_size=500)
        voc = VOCDataset(Path(tmp) / "data", CLASSES, "train")
        per_image(voc)
        stage_throughput(Path(tmp), voc)
