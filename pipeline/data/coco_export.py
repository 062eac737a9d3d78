"""Write a VOC-format dataset (the demo) in COCO layout, so the COCO reader can be checked against
the VOC reader on the same images and masks.

    {out}/{split}/<id>.jpg                       the JPEG files, copied byte for byte
    {out}/annotations/instances_{split}.json     one annotation per (image, class)

Each class of an image becomes one non-crowd annotation whose segmentation is the compressed RLE of
the VOC mask's pixels of that class; the mask's 255 band (the demo's object borders) becomes one
crowd annotation of the image's first class, which the COCO rasteriser turns back into 255. The
classes come from the XML annotations, as the VOC reader's labels do (a class whose pixels the
band swallowed keeps an empty annotation, so the label survives). Category ids are 3, 6, 9, ...:
gapped like COCO's, so the conversion to contiguous class ids is exercised.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .voc import DatasetError, VOCDataset


def category_id(class_id: int) -> int:
    return 3 * class_id


def _rle(binary: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _annotation(ann_id: int, image_id: int, class_id: int, binary: np.ndarray, crowd: bool) -> dict:
    from pycocotools import mask as mask_utils

    rle = _rle(binary)
    coded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return {"id": ann_id, "image_id": image_id, "category_id": category_id(class_id), "segmentation": rle,
            "area": float(mask_utils.area(coded)), "bbox": [float(v) for v in mask_utils.toBbox(coded)],
            "iscrowd": int(crowd)}


def image_annotations(voc: VOCDataset, image_id: str, coco_id: int, first_ann_id: int) -> list[dict]:
    """The COCO annotations of one VOC image (see the module doc)."""
    mask = voc.load_mask(image_id)
    labels = [int(c) for c in voc.image_labels(image_id)]
    stray = sorted(set(np.unique(mask).tolist()) - {0, 255} - set(labels))
    if stray:
        raise DatasetError(f"mask {voc.mask_path(image_id)} holds classes {stray} that its annotation "
                           f"{voc.annotation_path(image_id)} does not list")
    anns = [_annotation(first_ann_id + k, coco_id, c, mask == c, crowd=False) for k, c in enumerate(labels)]
    band = mask == 255
    if band.any():
        if not labels:
            raise DatasetError(f"mask {voc.mask_path(image_id)} has ignored pixels but the image has no class "
                               "to give its crowd annotation")
        anns.append(_annotation(first_ann_id + len(anns), coco_id, labels[0], band, crowd=True))
    return anns


def export(voc_root, out, classes: list[str], splits=("train", "val")) -> None:
    """Write the VOC-format dataset at voc_root in COCO layout under out."""
    out = Path(out)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": category_id(k), "name": name, "supercategory": "demo"}
                  for k, name in enumerate(classes) if k]
    for split in splits:
        voc = VOCDataset(voc_root, classes, split)
        (out / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for coco_id, image_id in enumerate(voc.ids, start=1):
            shutil.copyfile(voc.image_path(image_id), out / split / f"{image_id}.jpg")
            h, w = voc.load_mask(image_id).shape
            images.append({"id": coco_id, "file_name": f"{image_id}.jpg", "height": h, "width": w})
            annotations += image_annotations(voc, image_id, coco_id, len(annotations) + 1)
        data = {"info": {"description": f"VOC-format dataset {voc_root} in COCO layout"},
                "images": images, "annotations": annotations, "categories": categories}
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
