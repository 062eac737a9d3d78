"""COCO-format fixtures the tests (and benchmarks/bench_coco_dag.py) write themselves."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# categories in file order, ids gapped and not sorted: dog=1, cat=2, toothbrush=3
CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 3, "name": "cat"}, {"id": 90, "name": "toothbrush"}]
CLASSES = ["background", "dog", "cat", "toothbrush"]


def rle(binary: np.ndarray) -> dict:
    """Compressed RLE of a hand-drawn mask (pycocotools' encoder), JSON-ready."""
    from pycocotools import mask as mask_utils

    code = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": list(code["size"]), "counts": code["counts"].decode("ascii")}


def write_split(root: Path, split: str, images: list[dict], annotations: list[dict], categories=CATEGORIES,
                pixels: dict | None = None) -> Path:
    """root/split/<file_name> (RGB, or grey where pixels gives an (H, W) array) and
    root/annotations/instances_<split>.json."""
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for img in images:
        array = (pixels or {}).get(img["file_name"])
        if array is None:
            array = rng.integers(0, 255, (img["height"], img["width"], 3), dtype=np.uint8)
        Image.fromarray(array).save(root / split / img["file_name"], quality=95)
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def small_coco(root: Path) -> dict[str, np.ndarray]:
    """train2014: a.jpg (polygon, compressed RLE, crowd uncompressed RLE, overlapping instances),
    g.jpg (grey-scale, polygon), empty.jpg (no annotation); val2014: v.jpg (RLE). Returns the label
    maps worked out by hand from the rules (pipeline/data/coco.py)."""
    cat_box = np.zeros((6, 8), bool)
    cat_box[1:3, 2:4] = True     # rows 1-2, columns 2-3
    train_images = [{"id": 101, "file_name": "a.jpg", "height": 6, "width": 8},
                    {"id": 102, "file_name": "g.jpg", "height": 5, "width": 4},
                    {"id": 103, "file_name": "empty.jpg", "height": 4, "width": 4}]
    train_anns = [
        # the small cat comes first in the file: the larger dog after it must not hide it
        {"id": 1, "image_id": 101, "category_id": 3, "segmentation": rle(cat_box), "iscrowd": 0,
         "bbox": [2, 1, 2, 2], "area": 4},
        # polygon corners (0,0)-(6,5): pixels x 0..5, y 0..4
        {"id": 2, "image_id": 101, "category_id": 18, "segmentation": [[0, 0, 6, 0, 6, 5, 0, 5]], "iscrowd": 0,
         "bbox": [0, 0, 6, 5], "area": 30},
        # crowd, uncompressed column-major RLE: 30 zeros (columns 0-4), 18 ones (columns 5-7)
        {"id": 3, "image_id": 101, "category_id": 90, "segmentation": {"size": [6, 8], "counts": [30, 18]},
         "iscrowd": 1, "bbox": [5, 0, 3, 6], "area": 18},
        # grey image: polygon corners (1,1)-(3,4): pixels x 1..2, y 1..3
        {"id": 4, "image_id": 102, "category_id": 3, "segmentation": [[1, 1, 3, 1, 3, 4, 1, 4]], "iscrowd": 0,
         "bbox": [1, 1, 2, 3], "area": 6},
    ]
    grey = np.full((5, 4), 90, np.uint8)
    write_split(root, "train2014", train_images, train_anns, pixels={"g.jpg": grey})
    val_box = np.zeros((4, 4), bool)
    val_box[0:2, 1:4] = True
    write_split(root, "val2014", [{"id": 7, "file_name": "v.jpg", "height": 4, "width": 4}],
                [{"id": 1, "image_id": 7, "category_id": 90, "segmentation": rle(val_box), "iscrowd": 0,
                  "bbox": [1, 0, 3, 2], "area": 6}])

    a = np.zeros((6, 8), np.uint8)
    a[0:5, 0:6] = 1          # dog
    a[1:3, 2:4] = 2          # cat, smaller, on top
    a[:, 5:8][a[:, 5:8] == 0] = 255   # crowd where no instance: x 6..7 everywhere, x 5 at y 5
    g = np.zeros((5, 4), np.uint8)
    g[1:4, 1:3] = 2
    v = np.zeros((4, 4), np.uint8)
    v[0:2, 1:4] = 3
    return {"a": a, "g": g, "v": v}


def listed_coco(root: Path, train: int = 82081, val: int = 40137) -> Path:
    """COCO 2014's layout and split sizes with empty image files and one annotation per image: enough
    to build the DAG (which checks that every listed image exists), not to run it."""
    for split, count in (("train2014", train), ("val2014", val)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(1, count + 1):
            name = f"COCO_{split}_{i:012d}.jpg"
            (folder / name).touch()
            images.append({"id": i, "file_name": name, "height": 480, "width": 640})
            anns.append({"id": i, "image_id": i, "category_id": 1, "segmentation": [[0, 0, 9, 0, 9, 9]],
                         "iscrowd": 0, "bbox": [0, 0, 9, 9], "area": 40.5})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return root
