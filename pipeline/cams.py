"""Class activation maps: CAM = relu(W_c . F), multi-scale + flip, per-class max-normalised."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data.transforms import resize, to_tensor
from .data.voc import VOCDataset
from .models.classifier import Classifier
from .store import ArtifactWriter


def class_activation(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """features (B, C, h, w), weight (K, C) -> relu(W . F) of shape (B, K, h, w)."""
    return F.relu(torch.einsum("bchw,kc->bkhw", features, weight))


@torch.no_grad()
def multiscale_cam(model: Classifier, image: np.ndarray, class_ids: np.ndarray, scales, flip: bool,
                   mean, std, device) -> np.ndarray:
    """Sum of the CAMs over scales (and flips), upsampled to the image, each class / its max.

    class_ids are dataset ids (1..C); the classifier's row for id c is c - 1.
    Returns float32 (K, H, W) with values in [0, 1].
    """
    h, w = image.shape[:2]
    total = torch.zeros((len(class_ids), h, w))
    if len(class_ids) == 0:
        return total.numpy()
    weight = model.classifier.weight[torch.as_tensor(class_ids) - 1].flatten(1)
    for scale in scales:
        x = to_tensor(resize(image, scale), mean, std)[None]
        if flip:
            x = torch.cat([x, x.flip(-1)])
        cam = class_activation(model.features(x.to(device)), weight)
        cam = cam[:1] + cam[1:].flip(-1) if flip else cam
        total += F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[0].cpu()
    total /= total.flatten(1).max(1).values.view(-1, 1, 1) + 1e-5
    return total.numpy()


def _as_is(sample):
    return sample  # keep numpy arrays (the default collate would turn them into tensors)


class _Images(Dataset):
    def __init__(self, voc: VOCDataset, ids):
        self.voc, self.ids = voc, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        image_id = self.ids[i]
        return image_id, self.voc.load_image(image_id), self.voc.image_labels(image_id)


def extract(model: Classifier, meta: dict, voc: VOCDataset, out: str | Path, scales, flip: bool,
            device, workers: int = 1) -> int:
    """Write one float16 (K, H, W) map per image with attribute `classes`; resumes from NAME.partial."""
    model.eval().to(device)
    params = {"scales": list(scales), "flip": flip, "classes": voc.classes}
    with ArtifactWriter(out, meta=params) as writer:
        done = writer.done_keys()
        todo = [i for i in voc.ids if i not in done]
        loader = DataLoader(_Images(voc, todo), batch_size=None, num_workers=workers,
                            collate_fn=_as_is)
        for image_id, image, class_ids in tqdm(loader, desc=f"CAMs {Path(out).stem}", total=len(todo)):
            maps = multiscale_cam(model, image, class_ids, scales, flip, meta["mean"], meta["std"], device)
            writer.write(image_id, maps, classes=np.asarray(class_ids, np.int64))
    return len(todo)
