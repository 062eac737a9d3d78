"""Your own images with image-level tags only: the `tags` dataset kind.

    {root}/images/<id>.<ext>      any image PIL reads; subfolders allowed (id: the path below images/
                                  without its extension, e.g. garden/0001)
    {root}/tags.csv               header `image,tags`, one row per image, its tags separated by ';'
                                  (or tags.json: {"<image>": ["tag", ...] or "tag;tag"})
    {root}/masks/<id>.png         optional, for none, some or all images: class indices (palette or
                                  grey PNG), 255 = ignored
    {root}/splits/<name>.txt      optional: one image id per line (an explicit split)
    {root}/unlabelled/            optional: images only segmented by the trained network

Rules:
- the tags file lists the images the pipeline uses; the image column holds the id or the path below
  images/ (with or without its extension). An image with no tags is a negative: the classifier
  trains on it (every class absent), the CAM stages skip it. An image of images/ that the tags file
  does not list is not used (counted in the warnings).
- classes: the configured list (background first), or `auto`: background, then every tag of the
  file in sorted order.
- splits: `<name>` is splits/<name>.txt when that file exists; otherwise the built-in `all` (every
  listed image, in the file's order), `train` and `holdout` (a seeded `holdout` fraction of the
  listed images, for the classifier's validation, and the rest). A split name may carry filters:
  `<name>:tagged` keeps its images with at least one tag (the CAM stages), `<name>:masked` those
  with a mask (the scoring steps); both may be combined.

`check_dataset` validates all of it (every image and mask header read) with errors naming the file
and line; the DAG calls it while it is built, so bad input stops `snakemake -n`.
"""
from __future__ import annotations

import csv
import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .voc import DatasetError, SplitIds, UnreadableImage, load_rgb

LAYOUT = """\
Expected a tags dataset at {root}:
  {root}/images/<id>.<ext>    (any image PIL reads; subfolders allowed)
  {root}/{tags}    (CSV with header `image,tags`, tags separated by ';'; or a JSON mapping)
  {root}/masks/<id>.png       (optional: class indices, 255 = ignored)
  {root}/splits/<name>.txt    (optional: one image id per line)"""
DEFAULT_TAGS = "tags.csv"
BUILTIN_SPLITS = ("all", "train", "holdout")
FILTERS = ("tagged", "masked")


def image_suffixes() -> frozenset[str]:
    """The file extensions PIL can open (.jpg, .png, .webp, .tif, .bmp, .gif, .ppm, ...)."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _strip_suffix(name: str) -> str:
    path = Path(name)
    return path.with_suffix("").as_posix() if path.suffix.lower() in image_suffixes() else path.as_posix()


def scan_images(folder: Path) -> dict[str, Path]:
    """{id: file} of every image below folder (recursive; id = relative path without extension);
    two files with one id (a.jpg, a.png) are an error naming both."""
    suffixes = image_suffixes()
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in suffixes or name.startswith("."):
                continue
            image_id = path.relative_to(folder).with_suffix("").as_posix()
            if image_id in found:
                raise DatasetError(f"images {found[image_id]} and {path} share the id '{image_id}'; "
                                   "keep one file per id")
            found[image_id] = path
    return found


@dataclass
class TagRow:
    image_id: str
    tags: list[str]
    where: str          # "<file> line <n>" or "<file> key '<k>'", for messages


def read_tags_file(path: Path) -> list[TagRow]:
    """The rows of a tags file (CSV or JSON), ids normalised, tags stripped; errors name the line."""
    if not path.is_file():
        raise DatasetError(f"missing tags file {path}")
    if path.suffix.lower() == ".json":
        return _read_json(path)
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for number, fields in enumerate(csv.reader(fh), start=1):
                if not fields or all(not f.strip() for f in fields):
                    continue
                if number == 1 and [f.strip().lower() for f in fields] == ["image", "tags"]:
                    continue
                if len(fields) > 2:
                    raise DatasetError(f"{path} line {number} has {len(fields)} fields; expected `image,tags` "
                                       "with the tags separated by ';' (quote a field that holds a comma)")
                tags = fields[1].split(";") if len(fields) == 2 else []
                rows.append(TagRow(_strip_suffix(fields[0].strip()), [t.strip() for t in tags if t.strip()],
                                   f"{path} line {number}"))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read tags file {path} as CSV: {exc}") from exc
    return rows


def _read_json(path: Path) -> list[TagRow]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"tags file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"tags file {path}: expected a JSON object {{\"<image>\": [\"tag\", ...]}}, "
                           f"got {type(data).__name__}")
    rows, seen = [], {}
    for key, tags in data.items():
        where = f"{path} key '{key}'"
        if isinstance(tags, str):
            tags = tags.split(";")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise DatasetError(f"{where}: expected a list of tag names or a string 'tag;tag', got {json.dumps(tags)[:80]}")
        image_id = _strip_suffix(key.strip())
        if image_id in seen:   # JSON keys are unique, but a.jpg and a.png name one id
            raise DatasetError(f"{path} keys '{seen[image_id]}' and '{key}' both name image '{image_id}'; "
                               "expected each image once")
        seen[image_id] = key
        rows.append(TagRow(image_id, [t.strip() for t in tags if t.strip()], where))
    return rows


def collect_classes(rows: list[TagRow]) -> list[str]:
    """`classes: auto`: background, then every tag of the file in sorted order."""
    return ["background", *sorted({t for row in rows for t in row.tags} - {"background"})]


def resolve_classes(root, classes, tags: str = DEFAULT_TAGS, announce: bool = True) -> list[str]:
    """The configured classes, or with `auto` those of the tags file (said on stderr)."""
    if classes != "auto":
        return list(classes)
    path = Path(root) / tags
    found = collect_classes(read_tags_file(path))
    if len(found) < 2:
        raise DatasetError(f"classes: auto found no tag in {path}; every image is a negative")
    if announce:
        print(f"classes: auto -> {found} (background, then the tags of {path} in sorted order)", file=sys.stderr)
    return found


@dataclass
class TagsIndex:
    """What the tags file and the folders say: every listed image's file, labels and mask."""
    root: Path
    tags_file: Path
    classes: list[str]
    order: list[str]                       # listed ids, in the file's order
    files: dict[str, Path]
    labels: dict[str, list[int]]
    masks: dict[str, Path]                 # listed ids that have a mask
    unlisted: list[str] = field(default_factory=list)   # in images/, not in the tags file
    where: dict[str, str] = field(default_factory=dict)


@functools.lru_cache(maxsize=8)
def _cached_index(root: str, tags: str, classes: tuple, stamp: tuple) -> TagsIndex:
    return build_index(Path(root), tags, list(classes))


def load_index(root, tags: str, classes: list[str]) -> TagsIndex:
    """build_index, cached in the process while the tags file and folders are unchanged."""
    root = Path(root)
    stamp = tuple(_mtime(p) for p in (root / tags, root / "images", root / "masks"))
    return _cached_index(str(root), tags, tuple(classes), stamp)


def _mtime(path: Path):
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def build_index(root: Path, tags: str, classes: list[str]) -> TagsIndex:
    """The index of a tags dataset; errors name the file and line (see the module doc)."""
    root = Path(root)
    tags_file = root / tags
    if not root.is_dir():
        raise DatasetError(f"tags dataset root {root} does not exist\n" + LAYOUT.format(root=root, tags=tags))
    if not (root / "images").is_dir():
        raise DatasetError(f"missing image folder {root / 'images'}\n" + LAYOUT.format(root=root, tags=tags))
    if not tags_file.is_file():
        raise DatasetError(f"missing tags file {tags_file}\n" + LAYOUT.format(root=root, tags=tags))
    rows = read_tags_file(tags_file)
    if not rows:
        raise DatasetError(f"tags file {tags_file} lists no image")
    on_disk = scan_images(root / "images")
    class_index = {name: k for k, name in enumerate(classes)}
    order, files, labels, where = [], {}, {}, {}
    for row in rows:
        if row.image_id in where:
            first = where[row.image_id].removeprefix(f"{tags_file} ")
            raise DatasetError(f"{row.where} lists image '{row.image_id}' again (first on {first}); "
                               "expected each image once")
        if row.image_id not in on_disk:
            raise DatasetError(f"{row.where}: image '{row.image_id}' is not in {root / 'images'} "
                               f"(looked for {row.image_id}.<ext>, any image extension)")
        ids = set()
        for tag in row.tags:
            if tag == classes[0]:
                raise DatasetError(f"{row.where}: tag '{tag}' is the background class, which every image has; "
                                   "list the foreground classes only")
            if tag not in class_index:
                raise DatasetError(f"{row.where}: tag '{tag}' is not one of the configured classes "
                                   f"{classes[1:]} (config key 'classes' of this dataset, or classes: auto)")
            ids.add(class_index[tag])
        order.append(row.image_id)
        files[row.image_id] = on_disk[row.image_id]
        labels[row.image_id] = sorted(ids)
        where[row.image_id] = row.where
    masks = {i: root / "masks" / f"{i}.png" for i in order if (root / "masks" / f"{i}.png").is_file()}
    unlisted = sorted(set(on_disk) - set(order))
    return TagsIndex(root, tags_file, list(classes), order, files, labels, masks, unlisted, where)


def parse_split(split: str) -> tuple[str, set[str]]:
    """'train:tagged:masked' -> ('train', {'tagged', 'masked'})."""
    base, *filters = split.split(":")
    unknown = [f for f in filters if f not in FILTERS]
    if not base or unknown:
        raise DatasetError(f"split '{split}': expected <name>[:tagged][:masked], not the filter "
                           f"'{unknown[0] if unknown else ''}'")
    return base, set(filters)


def holdout_ids(order: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded `fraction` of the images (at least one, at most all but one)."""
    if not 0 < fraction < 1:
        raise DatasetError(f"holdout fraction {fraction}: expected a number between 0 and 1")
    count = min(max(1, round(fraction * len(order))), len(order) - 1)
    if count < 1:
        raise DatasetError(f"a held-out split needs at least 2 images, the tags file lists {len(order)}")
    picked = np.random.default_rng(seed).permutation(len(order))[:count]
    return {order[i] for i in picked}


def split_list(root: Path, name: str) -> Path:
    return Path(root) / "splits" / f"{name}.txt"


def base_split_ids(index: TagsIndex, name: str, holdout: float, seed: int) -> list[str]:
    """The ids of an explicit list (splits/<name>.txt) or of a built-in split, in order."""
    path = split_list(index.root, name)
    if path.is_file():
        ids, seen = [], {}
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            image_id = _strip_suffix(line.strip()) if line.strip() else ""
            if not image_id:
                continue
            if image_id in seen:
                raise DatasetError(f"split list {path} line {number} lists image '{image_id}' again (first on "
                                   f"line {seen[image_id]}); expected each id once")
            if image_id not in index.files:
                raise DatasetError(f"split list {path} line {number}: image '{image_id}' is not listed in the "
                                   f"tags file {index.tags_file}")
            seen[image_id] = number
            ids.append(image_id)
        if not ids:
            raise DatasetError(f"split list {path} is empty")
        return ids
    if name == "all":
        return list(index.order)
    if name in ("train", "holdout"):
        held = holdout_ids(index.order, holdout, seed)
        return [i for i in index.order if (i in held) == (name == "holdout")]
    raise DatasetError(f"split '{name}' of tags dataset {index.root}: no list {path}, and not one of the "
                       f"built-in splits {', '.join(BUILTIN_SPLITS)}")


class TagsDataset(SplitIds):
    """One split of a tags dataset: the interface of VOCDataset (ids, subset, require_within, check,
    load_image, load_mask, boxes, image_labels, label_vector), so no stage knows the kind."""

    def __init__(self, root, classes: list[str], split: str, tags: str = DEFAULT_TAGS,
                 holdout: float = 0.1, seed: int = 0):
        self.root = Path(root)
        self.classes = list(classes)
        self.split = split
        self.index = load_index(self.root, tags, self.classes)
        base, filters = parse_split(split)
        ids = base_split_ids(self.index, base, holdout, seed)
        if "tagged" in filters:
            ids = [i for i in ids if self.index.labels[i]]
        if "masked" in filters:
            ids = [i for i in ids if i in self.index.masks]
        self.ids = ids

    def image_path(self, image_id: str) -> Path:
        return self.index.files[image_id]

    def annotation_path(self, image_id: str) -> Path:
        return self.index.tags_file     # one file holds every image's tags

    def mask_path(self, image_id: str) -> Path:
        return self.root / "masks" / f"{image_id}.png"

    def has_mask(self, image_id: str) -> bool:
        return image_id in self.index.masks

    def check(self, masks: bool) -> None:
        """Every image on disk and, where masks are read, a mask for every image of the split."""
        for image_id in self.ids:
            paths = [self.image_path(image_id)] + ([self.mask_path(image_id)] if masks else [])
            for path in paths:
                if not path.is_file():
                    raise DatasetError(f"tags dataset split '{self.split}' is incomplete: first missing file "
                                       f"{path}")

    def load_image(self, image_id: str) -> np.ndarray:
        """RGB uint8 (H, W, 3), whatever the file's format and mode."""
        return load_rgb(self.image_path(image_id))

    def load_mask(self, image_id: str) -> np.ndarray:
        """Class index per pixel, uint8 (H, W), 255 = ignore."""
        return read_mask(self.mask_path(image_id), len(self.classes))

    has_boxes = False   # image-level tags only: the dataset check and the box scores skip it

    def boxes(self, image_id: str) -> list:
        raise DatasetError(f"tags dataset {self.root} has image-level tags only, no boxes (the box scores "
                           "need a VOC- or COCO-format dataset)")

    def image_labels(self, image_id: str) -> np.ndarray:
        """Sorted foreground class ids of the image's tags (empty for a negative)."""
        return np.array(self.index.labels[image_id], dtype=np.int64)

    def label_vector(self, image_id: str) -> np.ndarray:
        vec = np.zeros(len(self.classes) - 1, dtype=np.float32)
        vec[self.image_labels(image_id) - 1] = 1.0
        return vec


def read_mask(path: Path, num_classes: int) -> np.ndarray:
    """A palette (P) or grey (L) PNG of class indices as uint8 (H, W); 255 = ignore."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DatasetError(f"mask {path} has mode {img.mode}; expected a palette (P) or grey (L) PNG "
                                   "holding class indices")
            mask = np.asarray(img)
    except OSError as exc:
        raise DatasetError(f"cannot read mask {path}: {exc}") from exc
    bad = np.setdiff1d(np.unique(mask), np.r_[np.arange(num_classes), 255])
    if bad.size:
        raise DatasetError(f"mask {path} holds class index {int(bad[0])}; expected 0..{num_classes - 1} or 255")
    return mask


def _header_size(path: Path, what: str) -> tuple[int, int]:
    """(width, height) from the file's header; a file PIL cannot identify is an error naming it."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"{what} {path} is not a readable image: {exc}") from exc


@dataclass
class CheckResult:
    classes: list[str]
    images: int
    negatives: int
    masks: int
    splits: dict[str, dict]       # role -> {split, images, masked}
    warnings: list[str]
    inputs: list[str]             # the files the DAG's rules read: the tags file, explicit split lists


def check_dataset(root, tags: str, classes, splits: dict[str, str], holdout: float = 0.1, seed: int = 0,
                  headers: bool = True, progress=None) -> CheckResult:
    """Everything the DAG can know before any stage runs, with errors naming the file, line or key:
    the tags file (exists, each row's image on disk, listed once, tags among the classes), every
    image's and mask's header (readable; a mask the size of its image), the splits. A class that no
    image has is a warning; every image negative is an error."""
    root = Path(root)
    classes = resolve_classes(root, classes, tags, announce=False)
    index = build_index(root, tags, classes)
    warnings = []
    negatives = sum(1 for i in index.order if not index.labels[i])
    if negatives == len(index.order):
        raise DatasetError(f"every image of {index.tags_file} is a negative (no tags): the classifier has no "
                           "class to learn; tag the images that show a class")
    counts = np.zeros(len(classes), np.int64)
    for image_id in index.order:
        counts[index.labels[image_id]] += 1
    for k in range(1, len(classes)):
        if not counts[k]:
            warnings.append(f"no image of {index.tags_file} has the class '{classes[k]}' (config key 'classes'): "
                            "the classifier cannot learn it")
    if index.unlisted:
        warnings.append(f"{len(index.unlisted)} images of {root / 'images'} are not in {index.tags_file} and are "
                        f"not used, e.g. '{index.unlisted[0]}' (list it with no tags to use it as a negative)")
    if headers:
        todo = index.order if progress is None else progress(index.order)
        for image_id in todo:
            size = _header_size(index.files[image_id], "image")
            if image_id in index.masks:
                mask_size = _header_size(index.masks[image_id], "mask")
                if mask_size != size:
                    raise DatasetError(f"mask {index.masks[image_id]} is {mask_size[0]}x{mask_size[1]} (w x h), "
                                       f"its image {index.files[image_id]} is {size[0]}x{size[1]}")
    listed = {_strip_suffix(p.relative_to(root / "masks").as_posix())
              for p in (root / "masks").rglob("*.png")} if (root / "masks").is_dir() else set()
    stray = sorted(listed - set(index.order))
    if stray:
        warnings.append(f"{len(stray)} masks of {root / 'masks'} belong to no image of {index.tags_file} and are "
                        f"not used, e.g. '{stray[0]}.png'")
    report, inputs = {}, {str(index.tags_file)}
    for role, split in splits.items():
        base, _ = parse_split(split)
        ids = base_split_ids(index, base, holdout, seed)
        if split_list(root, base).is_file():
            inputs.add(str(split_list(root, base)))
        tagged = [i for i in ids if index.labels[i]]
        report[role] = {"split": split, "images": len(ids), "tagged": len(tagged),
                        "masked": sum(i in index.masks for i in ids),
                        "tagged_masked": sum(i in index.masks for i in tagged)}
        if not tagged and role in ("classifier", "cams"):
            raise DatasetError(f"split '{split}' (config key 'splits.{role}') has no tagged image")
    return CheckResult(classes, len(index.order), negatives, len(index.masks), report, warnings, sorted(inputs))


MASK_COVERAGE = ("all", "val", "none")


def export(voc_root, out, classes: list[str], masks: str = "all", splits=("train", "val")) -> None:
    """Write a VOC-format dataset (the demo) in the tags layout under out: images/<id>.jpg copied byte
    for byte, tags.csv from the annotations' classes, splits/<split>.txt, and masks/<id>.png copied
    for every image (`all`), for the val split's (`val`) or for none."""
    import shutil

    from .voc import VOCDataset

    if masks not in MASK_COVERAGE:
        raise ValueError(f"masks '{masks}': expected one of {', '.join(MASK_COVERAGE)}")
    out = Path(out)
    for sub in ("images", "splits") + (("masks",) if masks != "none" else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for split in splits:
        voc = VOCDataset(voc_root, classes, split)
        for image_id in voc.ids:
            shutil.copyfile(voc.image_path(image_id), out / "images" / f"{image_id}.jpg")
            # a calibration split exists to be scored: its images keep their masks
            if masks == "all" or (masks == "val" and split in ("val", "calibration")):
                shutil.copyfile(voc.mask_path(image_id), out / "masks" / f"{image_id}.png")
            rows.append([f"{image_id}.jpg", ";".join(classes[k] for k in voc.image_labels(image_id))])
        (out / "splits" / f"{split}.txt").write_text("\n".join(voc.ids) + "\n")
    with open(out / DEFAULT_TAGS, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "tags"])
        writer.writerows(rows)
