"""The random walk over ground-truth affinities: how far the walk could take a set of CAMs.

AffinityNet's job is an affinity that is high inside an object and low across its boundary. Here
that affinity is read off the ground truth instead (label_affinities, the walk's seam): exactly 1
between grid cells of one label and exactly `cross` between cells of two labels, the label of a
cell being the one at its centre (label_features gives the same affinities as features). The same CAMs, background score, transition
matrix and step count as the `rw` stage then give the walk's score with a perfect AffinityNet (up
to `cross`), and the gap to the learned walk is what AffinityNet loses (docs/demo.md).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from pipeline.affinity.labels import label_grid
from pipeline.affinity.propagate import walk_maps
from pipeline.affinity.random_walk import fill_affinities, half_offsets, overlap
from pipeline.core.store import ArtifactReader
from pipeline.data.voc import VOCDataset
from pipeline.maps.io import IGNORE, confusion_split


def fill_ignored(gt: np.ndarray) -> np.ndarray:
    """gt with each 255 pixel given the label of its nearest labelled pixel (the border band
    belongs to one side or the other, as every pixel does for the walk)."""
    band = gt == IGNORE
    if not band.any() or band.all():
        return gt.copy()
    # each band pixel's nearest zero of `band` (a labelled pixel), by its label in the transform
    _, nearest = cv2.distanceTransformWithLabels(band.astype(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    label_of = np.zeros(nearest.max() + 1, gt.dtype)
    label_of[nearest[~band]] = gt[~band]
    filled = gt.copy()
    filled[band] = label_of[nearest[band]]
    return filled


def label_features(gt: np.ndarray, n_classes: int, stride: int, cross: float) -> torch.Tensor:
    """(n_classes, ceil(H / s), ceil(W / s)) features whose pair_affinity is 1 for two cells of
    one label and `cross` for two cells of different labels: one-hot vectors scaled by k, whose
    mean absolute difference over the channels is 2k / n_classes."""
    if not 0.0 < cross < 1.0:
        raise ValueError(f"cross affinity must lie in (0, 1), got {cross}")
    grid = label_grid(fill_ignored(gt), stride)
    scale = -math.log(cross) * n_classes / 2
    return torch.from_numpy(np.eye(n_classes, dtype=np.float32)[grid] * scale).permute(2, 0, 1)


def label_affinities(gt: np.ndarray, stride: int, cross: float, radius: int) -> torch.Tensor:
    """Ground-truth neighbour affinities (h, w, K) on the disk of radius (the walk's seam): 1 between
    two cells of one label, `cross` between cells of two labels; equal to pair_affinity of
    label_features."""
    if not 0.0 < cross < 1.0:
        raise ValueError(f"cross affinity must lie in (0, 1), got {cross}")
    grid = torch.from_numpy(label_grid(fill_ignored(gt), stride).astype(np.int64))
    h, w = grid.shape
    pairs = ((d, torch.where(grid[src] == grid[dst], 1.0, cross)) for d in half_offsets(radius)
             for src, dst in [overlap(h, w, *d)])
    return fill_affinities(pairs, h, w, radius, torch.zeros((), dtype=torch.float32))


def walk_on_labels(gt: np.ndarray, cams: np.ndarray, class_ids, n_classes: int, stride: int, cross: float,
                   cfg: dict) -> np.ndarray:
    """Dataset ids of the argmax of [background^alpha, CAMs] walked over label_affinities, as the
    rw stage walks them over AffinityNet's (label_grid already gives the padded image's grid)."""
    affinities = label_affinities(gt, stride, cross, cfg["radius"])
    return np.asarray([0, *class_ids], np.uint8)[walk_maps(affinities, cams, stride, cfg).argmax(0)]


def ceiling_confusion(cams: ArtifactReader, voc: VOCDataset, stride: int, cross: float, cfg: dict) -> np.ndarray:
    """The confusion matrix of walk_on_labels over the images of voc."""
    def walked(image_id: str) -> np.ndarray:
        return walk_on_labels(voc.load_mask(image_id), cams[image_id].astype(np.float32),
                              cams.attrs(image_id)["classes"], len(voc.classes), stride, cross, cfg)

    return confusion_split(voc, walked, "walk on ground-truth affinities", "walk over ground-truth affinities",
                           cams.path)
