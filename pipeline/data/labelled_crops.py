"""Training crops of an image and its label map, augmented together (AffinityNet and the
segmentation network train on these)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import random_scale_flip_crop, to_tensor
from .voc import VOCDataset


class LabelledCrops(Dataset):
    """(normalised image crop, uint8 label crop with 255 = ignore, also in the padding).
    The augmentation of image idx in epoch e is seeded by (seed, e, idx): reruns repeat it."""

    def __init__(self, voc: VOCDataset, label_of: Callable[[str], np.ndarray], mean, std, crop: int,
                 scale_range, seed: int):
        self.voc, self.label_of, self.mean, self.std = voc, label_of, mean, std
        self.crop, self.scale_range, self.seed = crop, scale_range, seed
        self.fill = tuple(round(255 * m) for m in mean)   # pads normalise to zero
        self.epoch = 0

    def __len__(self):
        return len(self.voc)

    def __getitem__(self, idx):
        image_id = self.voc.ids[idx]
        image, label = self.voc.load_image(image_id), self.label_of(image_id)
        if image.shape[:2] != label.shape:
            raise ValueError(f"the label map of '{image_id}' is {label.shape}, its image "
                             f"{self.voc.image_path(image_id)} is {image.shape[:2]}")
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        image, label = random_scale_flip_crop(image, rng, self.scale_range, self.crop, self.fill, label=label)
        return to_tensor(image, self.mean, self.std), torch.from_numpy(np.ascontiguousarray(label))
