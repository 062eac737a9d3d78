"""Image preprocessing shared by training and inference."""
from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image


def to_tensor(image: np.ndarray, mean, std) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> normalised float tensor (3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def scaled_size(image: np.ndarray, scale: float) -> tuple[int, int]:
    """(width, height) of the image rescaled by scale, rounded, at least 1 pixel."""
    h, w = image.shape[:2]
    return max(1, round(w * scale)), max(1, round(h * scale))


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    """Bilinear rescale without antialiasing (training augmentation, segmentation test scales)."""
    return cv2.resize(image, scaled_size(image, scale), interpolation=cv2.INTER_LINEAR)


def rescale_bicubic(image: np.ndarray, scale: float) -> np.ndarray:
    """RGB uint8 (H, W, 3) rescaled by PIL's bicubic filter, the CAM scales of psa and IRN. PIL
    widens the filter when shrinking (antialiasing), so scale 0.5 averages 8 x 8 pixels where
    cv2's INTER_LINEAR samples 2 x 2."""
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(scaled_size(image, scale), Image.Resampling.BICUBIC)
    return np.array(resized)   # writable, unlike np.asarray of a PIL image


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
