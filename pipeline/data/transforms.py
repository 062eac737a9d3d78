"""Image preprocessing shared by training and inference."""
from __future__ import annotations

import cv2
import numpy as np
import torch


def to_tensor(image: np.ndarray, mean, std) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> normalised float tensor (3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def random_scale_flip_crop(image: np.ndarray, rng: np.random.Generator, scale_range, crop: int,
                           fill: tuple, label: np.ndarray | None = None):
    """The training augmentation: random rescale, horizontal flip, random crop (padded with fill).
    With a label map (H, W), the same transform is applied to it (nearest neighbour, padded with
    255 = ignore) and (image, label) is returned."""
    scale = rng.uniform(*scale_range)
    image = resize(image, scale)
    if label is not None:
        label = cv2.resize(label, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    if rng.random() < 0.5:
        image = image[:, ::-1]
        label = label[:, ::-1] if label is not None else None
    h, w = image.shape[:2]
    canvas = np.empty((max(h, crop), max(w, crop), 3), np.uint8)
    canvas[:] = fill
    oy, ox = rng.integers(0, canvas.shape[0] - h + 1), rng.integers(0, canvas.shape[1] - w + 1)
    canvas[oy:oy + h, ox:ox + w] = image
    y, x = rng.integers(0, canvas.shape[0] - crop + 1), rng.integers(0, canvas.shape[1] - crop + 1)
    if label is None:
        return canvas[y:y + crop, x:x + crop]
    label_canvas = np.full(canvas.shape[:2], 255, np.uint8)
    label_canvas[oy:oy + h, ox:ox + w] = label
    return canvas[y:y + crop, x:x + crop], label_canvas[y:y + crop, x:x + crop]
