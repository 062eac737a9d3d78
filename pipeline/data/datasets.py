"""The reader of a dataset split, whatever its format: the stages and the evaluator call
`open_split` and use what it returns through VOCDataset's interface."""
from __future__ import annotations

from .coco import COCODataset
from .tags import TagsDataset
from .voc import VOCDataset


def open_split(root, classes: list[str], split: str, coco_cache=None, tags: dict | None = None):
    """A VOC-format split under `root`; with `coco_cache` (the dataset's results directory, holding
    the index and masks that rules coco_index and coco_masks wrote), a COCO-format one; with `tags`
    ({file, holdout, seed}: the tags file under root and the held-out split's fraction and seed), a
    tags dataset (pipeline/data/tags.py)."""
    if coco_cache:
        return COCODataset(coco_cache, classes, split)
    if tags:
        return TagsDataset(root, classes, split, tags=tags["file"], holdout=tags["holdout"], seed=tags["seed"])
    return VOCDataset(root, classes, split)
