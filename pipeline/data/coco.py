"""MS COCO 2014 (and any COCO-format dataset): index, semantic masks and the reader.

A COCO root holds one image folder and one instances JSON per split (names configurable):

    {root}/train2014/<file_name>                     {root}/annotations/instances_train2014.json
    {root}/val2014/<file_name>                       {root}/annotations/instances_val2014.json

The annotation files are large (~450 MB for train2014), so they are read twice and only by
dedicated rules, never by the stages: `build_index` writes a small JSON index per split (image
ids, sizes, labels, boxes) and `write_masks` rasterises the semantic masks once into an HDF5
artifact. `COCODataset` serves both to the stages through the interface of `VOCDataset`.

Rules:
- class ids: the file's categories in the file's order become 1..K (COCO: ids 1..90 with gaps ->
  1..80), background 0; their names must equal the configured `classes`.
- image labels: the classes of all of an image's annotations, crowd ones included (the class is in
  the picture).
- images without any annotation are left out of the split (COCO 2014: 82,783 -> 82,081 train and
  40,504 -> 40,137 val images, the lists WSSS papers use): with no label they cannot train the
  classifier, and no stage sees them; the index counts them.
- semantic mask: non-crowd instances painted largest first, so a smaller instance lying on a
  larger one (a cup on a table) stays visible where they overlap; crowd regions become 255
  (ignored) wherever no non-crowd instance covers the pixel; all else is background 0.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np

from .voc import Box, DatasetError, SplitIds, load_rgb

LAYOUT = """\
Expected a COCO-format dataset at {root}:
  {root}/{images}/<file_name>           (the images of each split, e.g. train2014/, val2014/)
  {root}/{annotations}   (instances JSON: images, annotations, categories)"""
DEFAULT_IMAGES = "{split}"
DEFAULT_ANNOTATIONS = "annotations/instances_{split}.json"
MASK_RULE = "instances largest first, crowd -> 255 where no instance; images without annotations dropped"
# "file_name": "..." of each image entry; COCO's annotations and categories have no such key.
_FILE_NAME = re.compile(rb'"file_name"\s*:\s*"([^"\\]*)"')


def split_paths(root, split: str, images: str = DEFAULT_IMAGES,
                annotations: str = DEFAULT_ANNOTATIONS) -> tuple[Path, Path]:
    """(image folder, annotation file) of a split; the templates take {split}."""
    root = Path(root)
    return root / images.format(split=split), root / annotations.format(split=split)


def index_path(cache, split: str) -> Path:
    """The split's index under the dataset's results directory (rule coco_index)."""
    return Path(cache) / "coco" / f"{split}.json"


def masks_path(cache, split: str) -> Path:
    """The split's semantic masks (rule coco_masks, gathered)."""
    return Path(cache) / "masks" / f"{split}.h5"


def _layout_error(what: str, root, split: str, images: str, annotations: str) -> DatasetError:
    return DatasetError(what + "\n" + LAYOUT.format(root=root, images=images.format(split=split),
                                                    annotations=annotations.format(split=split)))


def check_layout(root, split: str, images: str = DEFAULT_IMAGES, annotations: str = DEFAULT_ANNOTATIONS) -> Path:
    """Fast check while the DAG is built: the split's folder and annotation file exist and every
    image the file lists is on disk. The file names are found by scanning the bytes, not by parsing
    the JSON (a full parse of train2014's 450 MB takes ~10 s and GBs); rule coco_index parses
    and validates everything. Returns the annotation file."""
    image_dir, ann_file = split_paths(root, split, images, annotations)
    for path in (Path(root), image_dir, ann_file):
        if not path.exists():
            raise _layout_error(f"COCO split '{split}' is incomplete: first missing file {path}",
                                root, split, images, annotations)
    names = _FILE_NAME.findall(ann_file.read_bytes())
    if not names:
        raise _layout_error(f"annotation file {ann_file} lists no images (no \"file_name\" entries)",
                            root, split, images, annotations)
    on_disk = set(os.listdir(image_dir))     # one listing, not a stat per image (82,081 in train2014)
    for name in names:
        name = name.decode()
        if name not in on_disk and not ("/" in name and (image_dir / name).is_file()):
            path = image_dir / name
            raise _layout_error(f"COCO split '{split}' is incomplete: first missing file {path} "
                                f"(listed in {ann_file})", root, split, images, annotations)
    return ann_file


def load_annotations(path) -> dict:
    """The instances JSON, with the keys and types this module reads checked (errors name the file)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"annotation file {path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read annotation file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file {path}: expected a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"annotation file {path}: expected a list under '{key}'")
    for key, fields in (("images", ("id", "file_name", "height", "width")),
                        ("annotations", ("id", "image_id", "category_id", "segmentation")),
                        ("categories", ("id", "name"))):
        for entry in data[key]:
            missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
            if missing:
                raise DatasetError(f"annotation file {path}: an entry of '{key}' has no '{missing[0]}': "
                                   f"{json.dumps(entry)[:200]}")
    return data


def category_classes(data: dict, path, classes: list[str]) -> dict[int, int]:
    """{COCO category id: class id 1..K} in the file's order, its names checked against `classes`."""
    names = [c["name"] for c in data["categories"]]
    if names != list(classes[1:]):
        raise DatasetError(f"the categories of {path} do not match the configured classes (background "
                           f"first): the file has {['background', *names]}, the config {list(classes)}")
    ids = [c["id"] for c in data["categories"]]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"annotation file {path} lists a category id twice")
    return {cat_id: k for k, cat_id in enumerate(ids, start=1)}


def check_references(data: dict, path, cat_class: dict[int, int]) -> None:
    """Every annotation names a listed image and a listed category."""
    image_ids = {img["id"] for img in data["images"]}
    for ann in data["annotations"]:
        if ann["image_id"] not in image_ids:
            raise DatasetError(f"annotation {ann['id']} of {path} refers to image id {ann['image_id']}, "
                               "which is not in its 'images'")
        if ann["category_id"] not in cat_class:
            raise DatasetError(f"annotation {ann['id']} of {path} has category id {ann['category_id']}, "
                               f"which is not in its 'categories' (ids {sorted(cat_class)})")


def _image_id(file_name: str) -> str:
    return Path(file_name).stem     # COCO_train2014_000000000009: a valid artifact key


def _box(ann: dict, cls: int) -> list:
    """COCO's [x, y, w, h] (float pixels) as VOC's 1-based inclusive integer box + crowd flag."""
    x, y, w, h = ann.get("bbox") or (0, 0, 0, 0)
    x0, y0 = int(np.floor(x)) + 1, int(np.floor(y)) + 1
    return [cls, x0, y0, max(x0, int(np.ceil(x + w))), max(y0, int(np.ceil(y + h))), int(bool(ann.get("iscrowd")))]


def build_index(root, split: str, classes: list[str], images: str = DEFAULT_IMAGES,
                annotations: str = DEFAULT_ANNOTATIONS) -> dict:
    """The split's index: every annotated image (id, file, size, labels, boxes), in the file's
    order; images without annotations are counted and left out."""
    image_dir, ann_file = split_paths(root, split, images, annotations)
    data = load_annotations(ann_file)
    cat_class = category_classes(data, ann_file, classes)
    check_references(data, ann_file, cat_class)
    per_image: dict[int, list] = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    entries, seen, without = [], {}, 0
    for img in data["images"]:
        anns = per_image.get(img["id"])
        if not anns:
            without += 1
            continue
        key = _image_id(img["file_name"])
        if key in seen:
            raise DatasetError(f"{ann_file}: images {seen[key]} and {img['id']} share the file stem '{key}'")
        seen[key] = img["id"]
        path = image_dir / img["file_name"]
        if not path.is_file():
            raise _layout_error(f"COCO split '{split}' is incomplete: first missing file {path}",
                                root, split, images, annotations)
        boxes = [_box(a, cat_class[a["category_id"]]) for a in anns]
        entries.append({"id": key, "coco_id": img["id"], "file": str(path), "height": img["height"],
                        "width": img["width"], "labels": sorted({b[0] for b in boxes}), "boxes": boxes})
    if not entries:
        raise DatasetError(f"{ann_file}: no image has an annotation")
    return {"split": split, "annotations": str(ann_file), "classes": list(classes), "rule": MASK_RULE,
            "images": entries, "without_annotations": without}


def _rle(coco, ann: dict, h: int, w: int) -> dict:
    """The annotation's region as RLE (polygons, RLE and uncompressed RLE alike), at the image's size."""
    segm = ann["segmentation"]
    if isinstance(segm, list) and not any(segm):
        return coco.annToRLE({**ann, "segmentation": {"size": [h, w], "counts": [h * w]}})  # no polygon: empty
    try:
        rle = coco.annToRLE(ann)
    except (IndexError, TypeError, ValueError, KeyError) as exc:
        raise DatasetError(f"annotation {ann['id']} of image id {ann['image_id']}: unreadable segmentation "
                           f"({exc}): {json.dumps(segm)[:200]}") from exc
    if [int(v) for v in rle["size"]] != [h, w]:
        raise DatasetError(f"annotation {ann['id']} of image id {ann['image_id']}: its RLE is "
                           f"{rle['size'][0]}x{rle['size'][1]} (h x w), the image {h}x{w}")
    return rle


def semantic_mask(coco, image: dict, anns: list[dict], cat_class: dict[int, int]) -> np.ndarray:
    """uint8 (H, W) label map of one image from its instance annotations (rules: module doc)."""
    from pycocotools import mask as mask_utils

    h, w = image["height"], image["width"]
    label = np.zeros((h, w), np.uint8)
    covered = np.zeros((h, w), bool)
    crowd = np.zeros((h, w), bool)
    instances = []
    for ann in anns:
        rle = _rle(coco, ann, h, w)
        if ann.get("iscrowd"):
            crowd |= mask_utils.decode(rle).astype(bool)
        else:
            instances.append((-int(mask_utils.area(rle)), len(instances), rle, cat_class[ann["category_id"]]))
    for _, _, rle, cls in sorted(instances, key=lambda t: t[:2]):   # largest first, file order on ties
        m = mask_utils.decode(rle).astype(bool)
        label[m] = cls
        covered |= m
    label[crowd & ~covered] = 255
    return label


def write_masks(index: dict, ids: list[str], out, progress=None) -> dict:
    """Rasterise the masks of the index's images `ids` into the HDF5 artifact `out` (resumable:
    images already in `out`.partial are kept). Returns the shard's tally."""
    from pycocotools.coco import COCO

    from ..core.store import ArtifactWriter

    ann_file = index["annotations"]
    data = load_annotations(ann_file)
    cat_class = category_classes(data, ann_file, index["classes"])
    check_references(data, ann_file, cat_class)
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    entries = {e["id"]: e for e in index["images"]}
    start, computed = time.perf_counter(), 0
    meta = {"split": index["split"], "annotations": ann_file, "classes": index["classes"], "rule": MASK_RULE}
    with ArtifactWriter(out, meta=meta) as writer:
        todo = [i for i in ids if i not in writer.done_keys()]
        for image_id in (progress(todo) if progress else todo):
            coco_id = entries[image_id]["coco_id"]
            writer.write(image_id, semantic_mask(coco, coco.imgs[coco_id], coco.imgToAnns[coco_id], cat_class))
            computed += 1
    seconds = time.perf_counter() - start
    return {"split": index["split"], "images": len(ids), "computed_now": computed, "seconds": seconds,
            "pixels": _pixel_counts(out, ids)}


def _pixel_counts(path, ids) -> dict:
    """Background, foreground and ignored pixels of the finished artifact (resumed images too)."""
    from ..core.store import ArtifactReader

    counts = {"background": 0, "foreground": 0, "ignore": 0}
    with ArtifactReader(path) as masks:
        for image_id in ids:
            label = masks[image_id]
            counts["background"] += int((label == 0).sum())
            counts["ignore"] += int((label == 255).sum())
            counts["foreground"] += int(label.size - (label == 0).sum() - (label == 255).sum())
    return counts


class COCODataset(SplitIds):
    """One split of a COCO-format dataset, read from its index and mask artifact: the interface
    of VOCDataset (ids, subset, require_within, check, load_image, load_mask, boxes, image_labels,
    label_vector), so no stage knows the dataset kind."""

    def __init__(self, cache, classes: list[str], split: str):
        self.root = Path(cache)             # where its index and masks live (the images: see the index)
        self.index_file = index_path(cache, split)
        self.masks_file = masks_path(cache, split)
        self.classes = list(classes)
        self.split = split
        try:
            index = json.loads(self.index_file.read_text())
        except FileNotFoundError:
            raise DatasetError(f"missing COCO index {self.index_file} (written by rule coco_index)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"cannot read COCO index {self.index_file}: {exc}") from exc
        if index["classes"] != self.classes:
            raise DatasetError(f"COCO index {self.index_file} was built for classes {index['classes']}, "
                               f"not the configured {self.classes}")
        self._entries = {e["id"]: e for e in index["images"]}
        self._annotations = Path(index["annotations"])
        self.ids = [e["id"] for e in index["images"]]
        self._masks = None

    def image_path(self, image_id: str) -> Path:
        return Path(self._entries[image_id]["file"])

    def annotation_path(self, image_id: str) -> Path:
        return self._annotations    # one file holds every image's annotations

    def mask_path(self, image_id: str) -> Path:
        return self.masks_file      # one artifact holds every image's mask

    def check(self, masks: bool) -> None:
        """The images on disk and, where masks are read, the mask artifact holding every image."""
        for image_id in self.ids:
            if not self.image_path(image_id).is_file():
                raise DatasetError(f"COCO split '{self.split}' is incomplete: first missing file "
                                   f"{self.image_path(image_id)}")
        if masks:
            reader = self._mask_reader()
            missing = next((i for i in self.ids if i not in reader), None)
            if missing is not None:
                raise DatasetError(f"mask artifact {self.masks_file} has no mask for '{missing}' "
                                   f"(written for another index of split '{self.split}'?)")

    def load_image(self, image_id: str) -> np.ndarray:
        """RGB uint8 (H, W, 3); grey-scale and CMYK JPEGs are converted. The size must be the one
        the annotation file gives (the masks are drawn at that size)."""
        path, entry = self.image_path(image_id), self._entries[image_id]
        image = load_rgb(path)
        if image.shape[:2] != (entry["height"], entry["width"]):
            raise DatasetError(f"image {path} is {image.shape[1]}x{image.shape[0]} (w x h), its annotation "
                               f"file says {entry['width']}x{entry['height']}")
        return image

    def _mask_reader(self):
        from ..core.store import ArtifactReader

        if self._masks is None:
            if not self.masks_file.is_file():
                raise DatasetError(f"missing COCO mask artifact {self.masks_file} (written by rule coco_masks)")
            self._masks = ArtifactReader(self.masks_file)
        return self._masks

    def load_mask(self, image_id: str) -> np.ndarray:
        """Class index per pixel, uint8 (H, W), 255 = ignore (crowd regions)."""
        return self._mask_reader()[image_id]

    def boxes(self, image_id: str) -> list[Box]:
        """The annotations' boxes (VOC convention: 1-based, inclusive); crowd boxes as difficult."""
        return [Box(cls, x0, y0, x1, y1, difficult=bool(crowd))
                for cls, x0, y0, x1, y1, crowd in self._entries[image_id]["boxes"]]

    def image_labels(self, image_id: str) -> np.ndarray:
        return np.array(self._entries[image_id]["labels"], dtype=np.int64)

    def label_vector(self, image_id: str) -> np.ndarray:
        vec = np.zeros(len(self.classes) - 1, dtype=np.float32)
        vec[self.image_labels(image_id) - 1] = 1.0
        return vec
