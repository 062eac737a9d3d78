"""The VOC colour map and the pictures drawn with it: label maps as palette PNGs and colour
overlays, class maps as heat maps. Shared by the report and the PNG hand-offs."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def voc_palette() -> list[int]:
    """The standard VOC colour map (bit-interleaved class index), flattened for PIL."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def colour_labels(label: np.ndarray) -> np.ndarray:
    """uint8 label map -> RGB in the VOC palette (255, ignore, in its cream colour)."""
    palette = np.asarray(voc_palette(), np.uint8).reshape(-1, 3)
    return palette[label]


def heat_map(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """A map in [0, 1] as a jet heat map blended over the image."""
    jet = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (0.5 * image + 0.5 * jet).astype(np.uint8)


def label_overlay(image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The label map's VOC colours blended over the image; background and ignore left as they are."""
    out = image.astype(np.float32)
    objects = (label != 0) & (label != 255)
    out[objects] = 0.5 * out[objects] + 0.5 * colour_labels(label)[objects]
    return out.astype(np.uint8)


def save_label_png(label: np.ndarray, path: str | os.PathLike) -> None:
    """A uint8 label map as a palette PNG (mode P, VOC colours, 255 kept as the index 255): the
    format of VOC's SegmentationClass/ that DeepLab and mmsegmentation read back as class ids."""
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"{path}: a label map must be 2-D uint8, got {label.dtype} {label.shape}")
    image = Image.fromarray(label)          # mode L; putpalette makes it P
    image.putpalette(voc_palette())
    image.save(Path(path), format="PNG")
