"""Affinity labels (AffinityNet): where the CAMs are sure, and which pixel pairs that makes alike.

Two background scores are stacked under the CAMs, (1 - max_c CAM)^alpha with a low alpha (a
strong background: only firm CAM peaks stay foreground) and a high alpha (a weak background: only
pixels far from any activation turn background), each refined by a dense CRF. Foreground is
taken from the low-alpha result, background from the high-alpha one (which wins where both
speak), and the rest is 255, ignored. Pairs of labelled pixels within a radius on the feature
grid are then positive (same label; background or foreground) or negative (different labels).
"""
from __future__ import annotations

import math

import numpy as np
from tqdm import tqdm

from pipeline.core.parallel import image_pool
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import ArtifactReader, ArtifactWriter
from pipeline.data.voc import VOCDataset
from pipeline.maps.background import background_score
from pipeline.maps.crf import crf_softmax
from pipeline.maps.io import IGNORE, confusion_split, image_and_maps


def crf_label(image: np.ndarray, cams: np.ndarray, class_ids, alpha: float, crf: dict) -> np.ndarray:
    """Dataset ids of the CRF-refined argmax over [background^alpha, CAMs]."""
    stack = np.concatenate([background_score(cams, alpha)[None], cams]).astype(np.float32)
    ids = np.asarray([0, *class_ids], np.uint8)
    return ids[crf_softmax(image, stack, crf).argmax(0)]


def confident_label(image: np.ndarray, cams: np.ndarray, class_ids, alpha_low: float, alpha_high: float,
                    crf: dict) -> np.ndarray:
    """uint8 (H, W): a class id where the low-alpha CRF says foreground, 0 where the high-alpha
    CRF says background (this wins), 255 elsewhere."""
    low = crf_label(image, cams, class_ids, alpha_low, crf)
    high = crf_label(image, cams, class_ids, alpha_high, crf)
    label = np.where(low != 0, low, IGNORE).astype(np.uint8)
    label[high == 0] = 0
    return label


def label_grid(label: np.ndarray, stride: int) -> np.ndarray:
    """The label at the centre of each stride x stride cell: (ceil(H / s), ceil(W / s))."""
    h, w = label.shape
    ys = np.minimum(np.arange(math.ceil(h / stride)) * stride + stride // 2, h - 1)
    xs = np.minimum(np.arange(math.ceil(w / stride)) * stride + stride // 2, w - 1)
    return label[np.ix_(ys, xs)]


def pair_classes(l1, l2):
    """Masks (bg_pos, fg_pos, neg) for pairs with labels l1, l2 (arrays or tensors); pairs with
    an ignored end are in none of them."""
    valid = (l1 != IGNORE) & (l2 != IGNORE)
    same = valid & (l1 == l2)
    return same & (l1 == 0), same & (l1 != 0), valid & (l1 != l2)


class _Labeller:
    """Picklable per-image job for the worker pool (readers reopen after the fork)."""

    def __init__(self, voc: VOCDataset, cams: ArtifactReader, cfg: dict):
        self.voc, self.cams, self.cfg = voc, cams, cfg

    def __call__(self, image_id: str):
        image, cams, class_ids = image_and_maps(self.voc, self.cams, image_id)
        c = self.cfg
        return image_id, confident_label(image, cams, class_ids, c["alpha_low"], c["alpha_high"], c["crf"])


def make_labels(cams: ArtifactReader, voc: VOCDataset, out, cfg: dict, workers: int = 1) -> dict:
    """One uint8 label map per image of voc into `out` (resumable); returns the tally
    (pipeline.core.shards) with the label coverage of the images computed now."""
    params = {k: cfg[k] for k in ("alpha_low", "alpha_high", "crf")}
    counts = np.zeros(3, np.int64)  # foreground, background, ignored pixels (of this run's images)
    provenance = {"data": dataset_identity(voc), "cams": cams.digest}
    with ArtifactWriter(out, meta={**params, "classes": voc.classes}, provenance=provenance) as writer:
        todo = [i for i in voc.ids if i not in writer.done_keys()]
        job = _Labeller(voc, cams, params)
        with image_pool(workers) as pool:
            for image_id, label in tqdm(pool.imap(job, todo, chunksize=4), total=len(todo),
                                        desc="affinity labels"):
                writer.write(image_id, label)
                counts += [np.sum((label != 0) & (label != IGNORE)), np.sum(label == 0), np.sum(label == IGNORE)]
    return {"images": len(voc), "computed_now": len(todo),
            "pixels": {"fg": int(counts[0]), "bg": int(counts[1]), "ignored": int(counts[2])}}


def labels_confusion(labels: ArtifactReader, voc: VOCDataset) -> np.ndarray:
    """The confident labels against the ground truth of voc, ignored pixels left out."""
    return confusion_split(voc, labels.__getitem__, "affinity label mIoU", "affinity label", labels.path)
