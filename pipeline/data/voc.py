"""Reader for VOC-format datasets (PASCAL VOC 2012, SBD's train_aug, the demo, any look-alike).

Image-level labels come from the XML annotations (every object, difficult included), as in
the WSSS literature; pixel masks are read only where a split is evaluated.
"""
from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

LAYOUT = """\
Expected a VOC-format dataset at {root}:
  {root}/JPEGImages/<id>.jpg
  {root}/Annotations/<id>.xml              (image-level labels and boxes)
  {root}/SegmentationClass/<id>.png        (palette masks; for train, val)
  {root}/SegmentationClassAug/<id>.png     (SBD masks; for splits named *_aug, e.g. train_aug)
  {root}/ImageSets/Segmentation/<split>.txt (one image id per line)"""


class DatasetError(RuntimeError):
    """The dataset on disk is missing, incomplete or unreadable; the message names the file."""


class UnreadableImage(DatasetError, ValueError):
    """An image file PIL cannot decode (a dataset's, or one of a folder handed to a network)."""


def load_rgb(path: Path) -> np.ndarray:
    """Any image PIL reads, as writable RGB uint8 (H, W, 3): grey-scale and CMYK converted, an
    alpha channel composited on black. Every reader of images goes through here."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                image = Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image.convert("RGBA"))
            return np.array(image.convert("RGB"))   # a copy, so torch can wrap it
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"{path} is not a readable image: {exc}") from exc


@dataclass(frozen=True)
class Box:
    class_id: int
    xmin: int  # VOC boxes are 1-based and inclusive
    ymin: int
    xmax: int
    ymax: int
    difficult: bool


def _box_coords(bndbox, path, name: str) -> list[int]:
    """[xmin, ymin, xmax, ymax] of an object's <bndbox>; a missing or unreadable one is an error
    (a made-up (0, 0, 0, 0) box would silently count as a miss in the box scores)."""
    try:
        return [int(float(bndbox.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")]
    except (AttributeError, TypeError, ValueError):
        raise DatasetError(f"annotation {path}: object '{name}' has no readable <bndbox> with xmin, ymin, "
                           "xmax, ymax") from None


class SplitIds:
    """What every dataset reader shares: a split's image ids in order (`ids`, `split`)."""
    ids: list
    split: str

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, ids):
        """The same dataset and split over these image ids (a shard of the split, say)."""
        view = copy.copy(self)
        view.ids = list(ids)
        return view

    def require_within(self, other: "SplitIds") -> None:
        """Every image of this split is one of other's (an eval split scored inside a stage's split)."""
        missing = set(self.ids) - set(other.ids)
        if missing:
            raise KeyError(f"images of split '{self.split}' are not in split '{other.split}', "
                           f"e.g. '{sorted(missing)[0]}'")


class VOCDataset(SplitIds):
    def __init__(self, root: str | Path, classes: list[str], split: str):
        self.root = Path(root)
        self.classes = list(classes)
        self.split = split
        self._class_index = {name: i for i, name in enumerate(self.classes)}
        list_file = self.split_file(split)
        if not list_file.is_file():
            raise DatasetError(f"missing split list {list_file}\n" + LAYOUT.format(root=self.root))
        self.ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise DatasetError(f"split list {list_file} is empty")
        if len(set(self.ids)) != len(self.ids):
            seen = set()
            twice = next(i for i in self.ids if i in seen or seen.add(i))
            raise DatasetError(f"split list {list_file} lists image '{twice}' more than once "
                               f"({len(self.ids) - len(set(self.ids))} repeated ids); expected each id once")

    def split_file(self, split: str) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{split}.txt"

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def annotation_path(self, image_id: str) -> Path:
        return self.root / "Annotations" / f"{image_id}.xml"

    def mask_path(self, image_id: str) -> Path:
        folder = "SegmentationClassAug" if self.split.endswith("_aug") else "SegmentationClass"
        return self.root / folder / f"{image_id}.png"

    def check(self, masks: bool) -> None:
        """One clear error naming the layout and the first missing file, before any work starts."""
        for image_id in self.ids:
            paths = [self.image_path(image_id), self.annotation_path(image_id)]
            if masks:
                paths.append(self.mask_path(image_id))
            for path in paths:
                if not path.is_file():
                    raise DatasetError(f"dataset split '{self.split}' is incomplete: first missing file "
                                       f"{path}\n" + LAYOUT.format(root=self.root))

    def load_image(self, image_id: str) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        return load_rgb(self.image_path(image_id))

    def load_mask(self, image_id: str) -> np.ndarray:
        """Class index per pixel, uint8 (H, W), 255 = ignore."""
        path = self.mask_path(image_id)
        try:
            with Image.open(path) as img:
                if img.mode not in ("P", "L"):
                    raise DatasetError(f"mask {path} has mode {img.mode}; expected a palette (P) or "
                                       "grey (L) PNG holding class indices")
                mask = np.asarray(img)
        except OSError as exc:
            raise DatasetError(f"cannot read mask {path}: {exc}") from exc
        bad = np.setdiff1d(np.unique(mask), np.r_[np.arange(len(self.classes)), 255])
        if bad.size:
            raise DatasetError(f"mask {path} holds class index {int(bad[0])}; expected 0..{len(self.classes) - 1} or 255")
        return mask

    def boxes(self, image_id: str) -> list[Box]:
        path = self.annotation_path(image_id)
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise DatasetError(f"cannot read annotation {path}: {exc}") from exc
        boxes = []
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in self._class_index or name == self.classes[0]:
                raise DatasetError(f"annotation {path} names class '{name}', which is not one of the "
                                   f"configured classes {self.classes[1:]}")
            coords = _box_coords(obj.find("bndbox"), path, name)
            boxes.append(Box(self._class_index[name], *coords, difficult=obj.findtext("difficult", "0").strip() == "1"))
        return boxes

    def image_labels(self, image_id: str) -> np.ndarray:
        """Sorted foreground class ids present in the image (background 0 excluded)."""
        return np.array(sorted({b.class_id for b in self.boxes(image_id)}), dtype=np.int64)

    def label_vector(self, image_id: str) -> np.ndarray:
        """Multi-hot over the foreground classes (index 0 = class 1)."""
        vec = np.zeros(len(self.classes) - 1, dtype=np.float32)
        vec[self.image_labels(image_id) - 1] = 1.0
        return vec
