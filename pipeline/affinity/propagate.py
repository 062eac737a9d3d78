"""Propagate each image's CAMs by the random walk over AffinityNet's affinities (the `rw` stage).

Per image: the image is padded to a multiple of the affinity stride, AffinityNet gives the
feature grid, the maps [background, CAMs] (background = (1 - max_c CAM)^alpha) are average-pooled
onto that grid, walked 2^logt steps, upsampled back and cropped to the image.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.affinity.random_walk import feature_affinities, walk
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import ArtifactReader, ArtifactWriter, file_digest
from pipeline.data.transforms import to_tensor
from pipeline.data.voc import VOCDataset
from pipeline.maps.background import background_score
from pipeline.maps.io import argmax_label, confusion_split, image_and_maps
from pipeline.models.affinity_net import AffinityNet


@torch.no_grad()
def propagate_image(model: AffinityNet, image: np.ndarray, cams: np.ndarray, mean, std, device,
                    cfg: dict) -> np.ndarray:
    """image uint8 (H, W, 3), cams (K, H, W) in [0, 1] -> float32 (1 + K, H, W): background first."""
    s = model.stride
    h, w = image.shape[:2]
    x = F.pad(to_tensor(image, mean, std), (0, -w % s, 0, -h % s))   # zero = the mean colour
    return walk_maps(feature_affinities(model(x[None].to(device))[0], cfg["radius"]), cams, s, cfg)


def pooled_maps(maps: np.ndarray, stride: int) -> torch.Tensor:
    """maps (C, H, W) padded with 0 to a multiple of stride and average-pooled: (C, ceil(H / s), ceil(W / s))."""
    h, w = maps.shape[1:]
    stack = F.pad(torch.from_numpy(np.ascontiguousarray(maps, np.float32)), (0, -w % stride, 0, -h % stride))
    return F.avg_pool2d(stack[None], stride)[0]


def upsampled(walked: torch.Tensor, stride: int, h: int, w: int) -> torch.Tensor:
    """Grid maps (C, h', w') bilinearly upsampled by stride and cropped to (C, h, w)."""
    return F.interpolate(walked[None], scale_factor=stride, mode="bilinear", align_corners=False)[0][:, :h, :w]


@torch.no_grad()
def walk_maps(affinities: torch.Tensor, cams: np.ndarray, stride: int, cfg: dict) -> np.ndarray:
    """cams (K, H, W) and their background score, average-pooled onto the affinity grid (the image
    padded to a multiple of stride), walked 2^logt steps over the neighbour affinities (h, w, K') on
    the disk of cfg's radius (pipeline.affinity.random_walk's seam), upsampled and cropped back
    -> float32 (1 + K, H, W): background first."""
    h, w = cams.shape[1:]
    stack = np.concatenate([background_score(cams, cfg["alpha"])[None], cams])
    # every channel, background included, is padded with 0, as psa's infer_aff
    grid_maps = pooled_maps(stack, stride).to(affinities.device)
    # float32 throughout: pipeline/affinity/random_walk.py says why float64 buys nothing here
    walked = walk(affinities, cfg["radius"], cfg["beta"], grid_maps, 2 ** cfg["logt"])
    return upsampled(walked, stride, h, w).float().cpu().numpy()


def propagate(model: AffinityNet, meta: dict, cams: ArtifactReader, voc: VOCDataset, out, cfg: dict,
              device, *, affinity: str) -> dict:
    """One float16 (1 + K, H, W) map per image with attribute `classes` = [0, class ids...]; resumable
    from a partial computed from the same images, CAMs and `affinity` checkpoint."""
    model.eval().to(device)
    params = {k: cfg[k] for k in ("radius", "beta", "logt", "alpha")}
    seconds = 0.0
    provenance = {"data": dataset_identity(voc), "cams": cams.digest, "affinity": file_digest(affinity)}
    with ArtifactWriter(out, meta={**params, "classes": voc.classes}, provenance=provenance) as writer:
        todo = [i for i in voc.ids if i not in writer.done_keys()]
        for image_id in tqdm(todo, desc="random walk"):
            image, maps, class_ids = image_and_maps(voc, cams, image_id)
            start = time.perf_counter()
            walked = propagate_image(model, image, maps, meta["mean"], meta["std"], device, params)
            seconds += time.perf_counter() - start
            writer.write(image_id, walked, classes=np.asarray([0, *class_ids], np.int64))
    return {"images": len(voc), "computed_now": len(todo), "seconds": seconds}


def argmax_confusion(maps: ArtifactReader, voc: VOCDataset, desc: str = "mIoU") -> np.ndarray:
    """The confusion matrix of the per-pixel argmax of maps whose `classes` attribute names each
    channel, over the images of voc."""
    return confusion_split(voc, lambda image_id: argmax_label(maps, image_id), desc, "argmax map", maps.path)
