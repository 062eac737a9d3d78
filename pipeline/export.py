"""Hand-offs to the tools WSSS users already run, and the trained networks on new images.

- A label artifact (pseudo-labels, predictions: uint8 maps keyed by image id) as a folder of VOC
  palette PNGs named by image id, the layout psa, IRN and MCTformer give DeepLab / mmsegmentation.
- The segmentation network on a folder of images: a label PNG and a colour overlay per image.
- The classifier's CAMs on a folder of images: the classes it finds, a heat map for each.

A folder is written under `<out>.partial` and renamed when complete, so an interrupted export
never looks finished.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .cams import class_maps
from .data.palette import heat_map, label_overlay, save_label_png
from .data.transforms import to_tensor
from .methods import VIT_METHODS
from .predict import predict_probs
from .store import ArtifactReader

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _partial_dir(out: Path) -> Path:
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _publish(tmp: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def export_label_pngs(artifact: str | Path, out: str | Path) -> int:
    """Every label map of the artifact as <out>/<image id>.png; returns how many."""
    out = Path(out)
    tmp = _partial_dir(out)
    with ArtifactReader(artifact) as maps:
        for image_id in tqdm(maps.keys(), desc=f"PNG {Path(artifact).name}"):
            label = maps[image_id]
            if label.dtype != np.uint8 or label.ndim != 2:
                raise ValueError(f"{artifact}: '{image_id}' holds {label.dtype} {label.shape}, not a uint8 "
                                 "label map (export pseudo-labels or predictions, not class maps)")
            save_label_png(label, tmp / f"{image_id}.png")
        count = len(maps)
    _publish(tmp, out)
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


def load_rgb(path: Path) -> np.ndarray:
    """Any image PIL reads as RGB uint8: grey-scale is repeated, alpha composited on black."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                image = image.convert("RGBA")
                flat = Image.new("RGBA", image.size, (0, 0, 0, 255))
                image = Image.alpha_composite(flat, image)
            return np.array(image.convert("RGB"))   # a writable copy
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path} is not a readable image: {exc}") from exc


def segment_folder(model, meta: dict, images: str | Path, out: str | Path, scales, flip: bool, device) -> int:
    """<out>/<stem>.png (label map, VOC palette) and <out>/<stem>_overlay.png per image."""
    model.eval().to(device)
    out = Path(out)
    tmp = _partial_dir(out)
    files = folder_images(images)
    for path in tqdm(files, desc="segment"):
        image = load_rgb(path)
        probs = predict_probs(model, image, meta["mean"], meta["std"], scales, flip, device)
        label = probs.argmax(0).astype(np.uint8)
        save_label_png(label, tmp / f"{path.stem}.png")
        Image.fromarray(label_overlay(image, label)).save(tmp / f"{path.stem}_overlay.png")
    _publish(tmp, out)
    return len(files)


def image_scores(model, meta: dict, image: np.ndarray, device) -> np.ndarray:
    """The classifier's sigmoid score of every foreground class on the whole image."""
    with torch.no_grad():
        x = to_tensor(image, meta["mean"], meta["std"])[None].to(device)
        return torch.sigmoid(model(x))[0].cpu().numpy()


def cams_folder(model, meta: dict, images: str | Path, out: str | Path, method: str, scales, flip: bool,
                threshold: float, device, levels=()) -> int:
    """Per image, the classes scoring at least `threshold` (the image has no tags), a heat map
    <out>/<stem>_<class>.png of each one's CAM, and <out>/<stem>.json with every class's score."""
    is_vit = meta.get("kind", "cnn") != "cnn"
    if (method in VIT_METHODS) != is_vit:
        raise ValueError(f"CAM method '{method}' needs {'a ViT' if method in VIT_METHODS else 'the CNN'} classifier, "
                         f"this checkpoint is a {meta.get('kind', 'cnn')} classifier")
    model.eval().to(device)
    out = Path(out)
    tmp = _partial_dir(out)
    names = meta["classes"][1:]
    files = folder_images(images)
    for path in tqdm(files, desc=f"{method} maps"):
        image = load_rgb(path)
        scores = image_scores(model, meta, image, device)
        found = [int(c) + 1 for c in np.flatnonzero(scores >= threshold)]
        maps = class_maps(model, meta, image, np.asarray(found, np.int64), method, scales, flip, device, levels)
        for class_id, cam in zip(found, maps):
            Image.fromarray(heat_map(image, cam)).save(tmp / f"{path.stem}_{names[class_id - 1]}.png")
        report = {"scores": dict(zip(names, map(float, scores))), "found": [names[c - 1] for c in found],
                  "threshold": threshold, "method": method}
        (tmp / f"{path.stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    _publish(tmp, out)
    return len(files)
