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
from pipeline.core.precision import autocast, prepare_model, to_device
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import ArtifactReader, ArtifactWriter, file_digest
from pipeline.data.transforms import to_tensor
from pipeline.data.voc import VOCDataset
from pipeline.maps.background import background_score
from pipeline.maps.calibration import GridScorer
from pipeline.maps.io import argmax_label, confusion_split, image_and_maps, image_maps_and_mask
from pipeline.models.affinity_net import AffinityNet


@torch.no_grad()
def propagate_image(model: AffinityNet, image: np.ndarray, cams: np.ndarray, mean, std, device,
                    cfg: dict) -> np.ndarray:
    """image uint8 (H, W, 3), cams (K, H, W) in [0, 1] -> float32 (1 + K, H, W): background first."""
    s = model.stride
    h, w = image.shape[:2]
    x = F.pad(to_tensor(image, mean, std), (0, -w % s, 0, -h % s))   # zero = the mean colour
    with autocast(device):   # AffinityNet in the stage's precision; the walk in float32
        features = model(to_device(x[None], device))[0]
    return walk_maps(feature_affinities(features.float(), cfg["radius"]), cams, s, cfg)


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
    return walk_stack(affinities, np.concatenate([background_score(cams, cfg["alpha"])[None], cams]), stride, cfg)


@torch.no_grad()
def walk_stack(affinities: torch.Tensor, maps: np.ndarray, stride: int, cfg: dict) -> np.ndarray:
    """Any (C, H, W) maps walked as walk_maps walks [background, CAMs]: the walk is linear and
    walks each channel on its own, so several background channels walk in one pass."""
    h, w = maps.shape[1:]
    # every channel, background included, is padded with 0, as psa's infer_aff
    grid_maps = pooled_maps(maps, stride).to(affinities.device)
    # float32 throughout: pipeline/affinity/random_walk.py says why float64 buys nothing here
    walked = walk(affinities, cfg["radius"], cfg["beta"], grid_maps, 2 ** cfg["logt"])
    return upsampled(walked, stride, h, w).float().cpu().numpy()


def propagate(model: AffinityNet, meta: dict, cams: ArtifactReader, voc: VOCDataset, out, cfg: dict,
              device, *, affinity: str) -> dict:
    """One float16 (1 + K, H, W) map per image with attribute `classes` = [0, class ids...]; resumable
    from a partial computed from the same images, CAMs and `affinity` checkpoint."""
    prepare_model(model.eval(), device)
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


SETTING = "random_walk.alpha"


@torch.no_grad()
def alpha_curve(model: AffinityNet, meta: dict, cams: ArtifactReader, voc: VOCDataset, alphas: list[float],
                cfg: dict, device) -> GridScorer:
    """The walk's label map for every background power of `alphas` on the images of voc, scored
    against their masks: the background (1 - max CAM)^alpha of each alpha is walked beside the
    CAMs in one pass (one channel each), and each alpha's label is the argmax over [its walked
    background, the walked CAMs], in float16 as the rw artifact stores them."""
    model.eval().to(device)
    scorer = GridScorer(alphas, voc.classes)
    s, g = model.stride, len(alphas)
    for image_id in tqdm(voc.ids, desc="walk calibration"):
        image, maps, class_ids, gt = image_maps_and_mask(voc, cams, image_id)
        h, w = image.shape[:2]
        x = F.pad(to_tensor(image, meta["mean"], meta["std"]), (0, -w % s, 0, -h % s))
        affinities = feature_affinities(model(x[None].to(device))[0], cfg["radius"])
        backgrounds = np.stack([background_score(maps, a) for a in alphas])
        walked = walk_stack(affinities, np.concatenate([backgrounds, maps]), s, cfg).astype(np.float16)
        ids = np.asarray([0, *class_ids], np.uint8)
        for k in range(g):
            scorer.add(k, gt, ids[np.concatenate([walked[k:k + 1], walked[g:]]).argmax(0)])
        scorer.images += 1
    return scorer
