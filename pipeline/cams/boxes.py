"""WSOL boxes from CAMs: threshold a map, box the largest 8-connected blob, score against VOC boxes.

Two ways to set the threshold of a map:

- ``max``: t = threshold * max(cam), the usual CAM box protocol;
- ``pas``: t = threshold * percentile(cam, 90), "percentile as a standard" of Bae et al. (ECCV
  2020), which keeps a single sharp peak from pushing the threshold above the rest of the object.

Scores: CorLoc at one configured threshold, and MaxBoxAcc (Choe et al., CVPR 2020), the best
box accuracy over a sweep of thresholds. Boxes are 0-based inclusive pixel indices
``(xmin, ymin, xmax, ymax)``.
"""
from __future__ import annotations

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.core.store import ArtifactReader
from pipeline.data.voc import VOCDataset

MODES = ("max", "pas")
PAS_PERCENTILE = 90

BoxTuple = tuple[int, int, int, int]


def _reference(cam: np.ndarray, mode: str) -> float:
    """The value the threshold is relative to: the map's max or its 90th percentile."""
    if mode == "max":
        return float(cam.max())
    if mode == "pas":
        return float(np.percentile(cam, PAS_PERCENTILE))
    raise ValueError(f"unknown box threshold mode {mode!r}; expected one of {list(MODES)}")


def _largest_component_box(mask: np.ndarray) -> BoxTuple | None:
    if not mask.any():
        return None
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    # label 0 is the background; argmax keeps the first label on equal areas
    label = 1 + int(np.argmax(stats[1:n, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(stats[label, k]) for k in
                  (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    return x, y, x + w - 1, y + h - 1


def _as_map(cam: np.ndarray) -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float64)  # float16 artifacts: compare in full precision
    if cam.ndim != 2:
        raise ValueError(f"expected a single (H, W) map, got shape {cam.shape}")
    return cam


def _localises(cam: np.ndarray) -> bool:
    # an all-zero map localises nothing (t would be 0 and take every pixel)
    return cam.size > 0 and bool(np.any(cam > 0))


def box_from_map(cam: np.ndarray, threshold: float, mode: str) -> BoxTuple | None:
    """Box of the largest 8-connected component of ``cam >= t``; None if that mask is empty or
    the map has no positive value. t = threshold * max(cam) ("max") or threshold * the 90th
    percentile of cam ("pas"). A "pas" reference of 0 (most of the map is zero) gives t = 0,
    i.e. the whole image, as the protocol literally says."""
    cam = _as_map(cam)
    if not _localises(cam):
        return None
    return _largest_component_box(cam >= threshold * _reference(cam, mode))


def box_iou(a, b) -> float:
    """IoU of two inclusive pixel boxes (xmin, ymin, xmax, ymax)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(0, iw) * max(0, ih)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def _gt_boxes(voc: VOCDataset, image_id: str) -> dict[int, list[BoxTuple]]:
    """Ground-truth boxes per class, converted from VOC's 1-based to 0-based inclusive pixels.
    Difficult boxes are kept: a prediction is correct if it matches any box of its class."""
    out: dict[int, list[BoxTuple]] = {}
    for b in voc.boxes(image_id):
        out.setdefault(b.class_id, []).append((b.xmin - 1, b.ymin - 1, b.xmax - 1, b.ymax - 1))
    return out


def evaluate(cams: ArtifactReader, voc: VOCDataset, thresholds: list[float], mode: str,
             default_threshold: float, iou: float = 0.5) -> dict:
    """CorLoc at ``default_threshold`` and MaxBoxAcc over ``thresholds`` (plus the default).

    One (image, class) pair per class listed in an image's CAM ``classes``; its box at a
    threshold is correct if its IoU with any ground-truth box of that class is >= ``iou``. A
    class without a ground-truth box in the image, or a map with no box, counts as wrong. The
    best threshold is the smallest one reaching the maximum."""
    if mode not in MODES:
        raise ValueError(f"unknown box threshold mode {mode!r}; expected one of {list(MODES)}")
    grid = sorted({float(t) for t in thresholds} | {float(default_threshold)})
    correct = np.zeros(len(grid), np.int64)
    pairs = 0
    for image_id in tqdm(voc.ids, desc=f"box accuracy ({mode})"):
        maps = np.asarray(cams[image_id], dtype=np.float64)
        class_ids = np.asarray(cams.attrs(image_id)["classes"]).reshape(-1)
        if maps.ndim != 3 or maps.shape[0] != len(class_ids):
            raise ValueError(f"CAM '{image_id}' in {cams.path} has shape {maps.shape} but "
                             f"{len(class_ids)} classes; expected (K, H, W) with K = len(classes)")
        gt = _gt_boxes(voc, image_id)
        for cam, class_id in zip(maps, class_ids):
            pairs += 1
            targets = gt.get(int(class_id), [])
            if not targets or not _localises(cam):
                continue
            reference = _reference(cam, mode)
            for i, t in enumerate(grid):
                box = _largest_component_box(cam >= t * reference)
                if box is not None and any(box_iou(box, g) >= iou for g in targets):
                    correct[i] += 1
    if pairs == 0:
        raise ValueError(f"no (image, class) pairs to score: the CAMs in {cams.path} list no classes "
                         f"for the {len(voc)} images of split '{voc.split}'")
    curve = [{"threshold": t, "accuracy": float(c / pairs)} for t, c in zip(grid, correct)]
    best = max(curve, key=lambda row: row["accuracy"])  # first (smallest threshold) on ties
    return {
        "split": voc.split,
        "images": len(voc),
        "pairs": pairs,
        "mode": mode,
        "iou": float(iou),
        "threshold": float(default_threshold),
        "corloc": curve[grid.index(float(default_threshold))]["accuracy"],
        "maxboxacc": best["accuracy"],
        "best_threshold": best["threshold"],
        "curve": curve,
    }
