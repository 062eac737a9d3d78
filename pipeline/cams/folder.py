"""The classifier's CAMs on a folder of new images: the classes it finds, a heat map for each."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pipeline.core.cam_methods import VIT_METHODS
from pipeline.data.folders import folder_images, partial_dir, publish
from pipeline.data.voc import load_rgb
from pipeline.data.palette import heat_map
from pipeline.data.transforms import to_tensor

from .extract import class_maps


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
    tmp = partial_dir(out)
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
    publish(tmp, out)
    return len(files)
