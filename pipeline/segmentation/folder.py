"""The segmentation network on a folder of new images: a label PNG and a colour overlay per image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.data.folders import folder_images, partial_dir, publish
from pipeline.data.voc import load_rgb
from pipeline.data.palette import label_overlay, save_label_png

from .predict import predict_probs


def segment_folder(model, meta: dict, images: str | Path, out: str | Path, scales, flip: bool, device) -> int:
    """<out>/<stem>.png (label map, VOC palette) and <out>/<stem>_overlay.png per image."""
    model.eval().to(device)
    out = Path(out)
    tmp = partial_dir(out)
    files = folder_images(images)
    for path in tqdm(files, desc="segment"):
        image = load_rgb(path)
        probs = predict_probs(model, image, meta["mean"], meta["std"], scales, flip, device)
        label = probs.argmax(0).astype(np.uint8)
        save_label_png(label, tmp / f"{path.stem}.png")
        Image.fromarray(label_overlay(image, label)).save(tmp / f"{path.stem}_overlay.png")
    publish(tmp, out)
    return len(files)
