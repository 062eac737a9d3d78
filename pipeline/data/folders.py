"""Folders of images in, folders of PNGs out: the hand-offs to the tools WSSS users already run.

A label artifact (pseudo-labels, predictions: uint8 maps keyed by image id) becomes a folder of VOC
palette PNGs named by image id, the layout psa, IRN and MCTformer give DeepLab / mmsegmentation.
The trained networks read new images through folder_images and the readers' load_rgb
(pipeline/segmentation/folder.py, pipeline/cams/folder.py).

A folder is written under `<out>.partial` and renamed when complete, so an interrupted export
never looks finished.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.core.store import ArtifactReader

from .palette import save_label_png

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def partial_dir(out: Path) -> Path:
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def export_label_pngs(artifact: str | Path, out: str | Path) -> int:
    """Every label map of the artifact as <out>/<image id>.png; returns how many."""
    out = Path(out)
    tmp = partial_dir(out)
    with ArtifactReader(artifact) as maps:
        for image_id in tqdm(maps.keys(), desc=f"PNG {Path(artifact).name}"):
            label = maps[image_id]
            if label.dtype != np.uint8 or label.ndim != 2:
                raise ValueError(f"{artifact}: '{image_id}' holds {label.dtype} {label.shape}, not a uint8 "
                                 "label map (export pseudo-labels or predictions, not class maps)")
            save_label_png(label, tmp / f"{image_id}.png")
        count = len(maps)
    publish(tmp, out)
    return count


def folder_images(folder: str | Path) -> list[Path]:
    """The image files of a folder (by suffix, sorted); an empty or missing folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files
