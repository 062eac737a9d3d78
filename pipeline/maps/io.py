"""What the stages after CAM extraction share: an image with its class maps, and the score of
one label map per image against the ground truth of a split."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from pipeline.core.store import ArtifactReader
from pipeline.data.voc import VOCDataset
from pipeline.maps.metrics import ConfusionAccumulator, scores

IGNORE = 255


def image_and_maps(voc: VOCDataset, maps: ArtifactReader, image_id: str):
    """(image uint8 (H, W, 3), maps float32 (K, H, W), class ids of the K maps); maps of another
    size than the image are an error naming both."""
    class_maps = maps[image_id].astype(np.float32)
    image = voc.load_image(image_id)
    if image.shape[:2] != class_maps.shape[1:]:
        raise ValueError(f"maps of '{image_id}' in {maps.path} are {class_maps.shape[1:]}, its image "
                         f"{voc.image_path(image_id)} is {image.shape[:2]}")
    return image, class_maps, maps.attrs(image_id)["classes"]


def image_maps_and_mask(voc: VOCDataset, maps: ArtifactReader, image_id: str):
    """image_and_maps and the image's mask (uint8 (H, W)); a mask of another size than the maps is
    an error naming both."""
    image, class_maps, class_ids = image_and_maps(voc, maps, image_id)
    gt = voc.load_mask(image_id)
    if gt.shape != class_maps.shape[1:]:
        raise ValueError(f"maps of '{image_id}' in {maps.path} are {class_maps.shape[1:]}, its mask "
                         f"{voc.mask_path(image_id)} is {gt.shape}")
    return image, class_maps, class_ids, gt


def add_scored(acc: ConfusionAccumulator, gt: np.ndarray, label: np.ndarray) -> None:
    """Pixels a label map leaves at 255 (ignored by design) are not scored."""
    acc.add(np.where(label == IGNORE, IGNORE, gt), label)


def confusion_split(voc: VOCDataset, label_of: Callable[[str], np.ndarray], desc: str, kind: str,
                    source) -> np.ndarray:
    """One confusion matrix of label_of(image_id) against the masks of every image of voc. A label
    map of another size than its mask is an error naming both (`kind` of map, `source` file)."""
    acc = ConfusionAccumulator(len(voc.classes))
    for image_id in tqdm(voc.ids, desc=desc):
        gt, label = voc.load_mask(image_id), label_of(image_id)
        if label.shape != gt.shape:
            raise ValueError(f"{kind} '{image_id}' in {source} is {label.shape}, its mask "
                             f"{voc.mask_path(image_id)} is {gt.shape}")
        add_scored(acc, gt, label)
    return acc.matrix


def score_split(voc: VOCDataset, label_of: Callable[[str], np.ndarray], desc: str, kind: str, source) -> dict:
    """mIoU etc. of label_of(image_id) over the split (see confusion_split)."""
    matrix = confusion_split(voc, label_of, desc, kind, source)
    return {"split": voc.split, "images": len(voc), **scores(matrix, voc.classes)}


def argmax_label(maps: ArtifactReader, image_id: str) -> np.ndarray:
    """The class id of the strongest map per pixel (attribute `classes` names each map)."""
    ids = np.asarray(maps.attrs(image_id)["classes"], np.uint8)
    return ids[maps[image_id].argmax(0)]
