"""One image's walks side by side: the image, its ground truth, the argmax of each walk's maps and,
when given, IRN's boundary map; and, over a band of rows, what each walk labels there against the
ground truth (the demo's stripe on train_0001, docs/irn.md)."""
from __future__ import annotations

import numpy as np
import torch

from pipeline.affinity.irn import boundary_of
from pipeline.core.store import ArtifactReader
from pipeline.data.palette import colour_labels
from pipeline.data.voc import VOCDataset
from pipeline.maps.io import IGNORE, argmax_label
from pipeline.models.boundary_net import load_boundary_net


def boundary_image(checkpoint: str, image: np.ndarray) -> np.ndarray:
    """IRN's boundary map of the image, upsampled (nearest) to it: uint8 grey, white = boundary."""
    model, meta = load_boundary_net(checkpoint)
    B = boundary_of(model.eval(), image, meta["mean"], meta["std"], torch.device("cpu")).numpy()
    s = model.stride
    up = np.repeat(np.repeat(B, s, 0), s, 1)[:image.shape[0], :image.shape[1]]
    return np.repeat((255 * up).astype(np.uint8)[..., None], 3, 2)


def band_counts(label: np.ndarray, gt: np.ndarray, rows: tuple[int, int], classes) -> dict:
    """Over rows [a, b] (inclusive): {class name: (pixels labelled, of them ground-truth background)}."""
    a, b = rows
    lab, truth = label[a:b + 1], gt[a:b + 1]
    return {classes[c]: (int((lab == c).sum()), int(((lab == c) & (truth == 0)).sum()))
            for c in np.unique(lab) if c != IGNORE}


def compare(voc: VOCDataset, image_id: str, maps: dict[str, str], boundary: str | None,
            rows: tuple[int, int] | None) -> tuple[np.ndarray, dict]:
    """(one RGB strip: image, ground truth, each walk's argmax[, boundary map]; the band counts
    of the ground truth and of each walk)."""
    image, gt = voc.load_image(image_id), voc.load_mask(image_id)
    panels, counts = [image, colour_labels(gt)], {}
    if rows:
        counts["ground truth"] = band_counts(gt, gt, rows, voc.classes)
    for name, path in maps.items():
        label = argmax_label(ArtifactReader(path), image_id)
        panels.append(colour_labels(label))
        if rows:
            counts[name] = band_counts(label, gt, rows, voc.classes)
    if boundary:
        panels.append(boundary_image(boundary, image))
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    strip = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], 1)
    return strip, counts
