"""The multi-scale + flip protocol shared by every map method (CNN and ViT)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.precision import autocast, to_device
from pipeline.data.transforms import rescale_bicubic, to_tensor


def scale_sum(image: np.ndarray, k: int, scales, flip: bool, mean, std, device, layer_maps,
              unit_layers: bool = False, normalise: str = "max", align_corners: bool = False) -> np.ndarray:
    """The multi-scale + flip protocol shared by every method: the image is rescaled bicubically
    (rescale_bicubic, as psa and IRN) to each scale; layer_maps(x) gives, per layer,
    maps (B, K, h, w) for the batch [image, flipped image]; each is flipped back, upsampled to
    the image and added (scaled to max 1 first when unit_layers); the sum is scaled per class
    to max 1 (normalise "max") or to [0, 1] from its min to its max ("minmax"). The upsampling is
    bilinear, with `align_corners` (GETAM's protocol sets it). layer_maps runs in the stage's mixed
    precision (pipeline/core/precision.py); its maps are summed in float32.
    Returns float32 (K, H, W)."""
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise '{normalise}' is unknown; expected one of {sorted(NORMALISATIONS)}")
    h, w = image.shape[:2]
    total = torch.zeros((k, h, w))
    if k == 0:
        return total.numpy()
    for scale in scales:
        x = to_tensor(rescale_bicubic(image, scale), mean, std)[None]
        if flip:
            x = torch.cat([x, x.flip(-1)])
        with autocast(device):
            layers = layer_maps(to_device(x, device))
        for maps in layers:
            maps = maps.float()
            maps = maps[:1] + maps[1:].flip(-1) if flip else maps
            maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=align_corners)[0].cpu()
            total += unit_max(maps) if unit_layers else maps
    return NORMALISATIONS[normalise](total).numpy()


def unit_max(maps: torch.Tensor) -> torch.Tensor:
    """Each map divided by its own max. The guard is tiny (1e-12): gradient maps are small in
    absolute terms (a Grad-CAM is the CAM / (h w)), so an additive 1e-5 would bias them."""
    return maps / maps.flatten(1).max(1).values.clamp(min=1e-12).view(-1, 1, 1)


def unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Each map from its own min (0) to its own max (1); a constant map becomes 0 (no evidence
    where the class is), as MCTformer's (x - min) / (max - min + 1e-8)."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
    return (maps - low) / (high - low).clamp(min=1e-12)


NORMALISATIONS = {"max": unit_max, "minmax": unit_range}
