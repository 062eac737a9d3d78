"""The reader of a dataset split, whatever its format: the stages and the evaluator call
`open_split` and use what it returns through VOCDataset's interface."""
from __future__ import annotations

from .coco import COCODataset
from .voc import VOCDataset


def open_split(root, classes: list[str], split: str, coco_cache=None):
    """A VOC-format split under `root`, or, with `coco_cache` (the dataset's results directory,
    holding the index and masks that rules coco_index and coco_masks wrote), a COCO-format one."""
    if coco_cache:
        return COCODataset(coco_cache, classes, split)
    return VOCDataset(root, classes, split)
