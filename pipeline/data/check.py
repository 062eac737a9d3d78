"""The dataset check that runs before any stage (rule check_dataset, stages/check_dataset.py).

Per image it checks what the stages would otherwise find only when they reach that image, after
the stages before them have spent their time: the image decodes (a JPEG is decoded at 1/8 of its
size, which still reads every byte, so a truncated or zero-byte file is caught), its longer side
is within `max_side`, its annotation names only configured classes and gives every object a box,
and its mask (on the splits that are scored) holds only class ids or 255. Per split: each training
stage's batch size fits the split it trains on (its loader drops the last incomplete batch).

Results are cached by file size and modification time: an image whose files have not changed
since they passed is not read again, so a second run costs one stat per file.

Checks per dataset kind: every kind gets the image checks (`check_images`, through the reader's
interface: image_path, annotation_path, mask_path, boxes, load_mask); a kind registers more with
`@extra_check("kind")`, each called with the split readers by role and the check's settings.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from PIL import Image
from tqdm import tqdm

from .voc import DatasetError, UnreadableImage

# kind -> extra checks: fn(splits: {role: reader}, settings: dict) -> None (raise DatasetError)
EXTRA_CHECKS: dict[str, list[Callable]] = {}


def extra_check(kind: str):
    """Register a check of one dataset kind (called after the image checks of every split)."""
    def register(fn):
        EXTRA_CHECKS.setdefault(kind, []).append(fn)
        return fn
    return register


class ImageTooLarge(DatasetError):
    """An image's longer side exceeds the configured maximum (config key cams.max_side)."""


def _stat(path) -> str:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def image_size(path) -> tuple[int, int]:
    """(width, height) from the header alone."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as exc:  # noqa: BLE001  PIL raises many kinds for a damaged header
        raise UnreadableImage(f"{path} is not a readable image: {exc}") from exc


def check_size(path, max_side: int) -> tuple[int, int]:
    """(width, height), after checking the longer side against `max_side` (header only)."""
    width, height = image_size(path)
    if max(width, height) > max_side:
        raise ImageTooLarge(f"image {path} is {width} x {height} px, larger than the configured maximum side "
                            f"{max_side} (config key cams.max_side): memory per image grows with the square "
                            "of its side; downscale the image, or raise cams.max_side if the machine has the memory")
    return width, height


def decode_check(path) -> None:
    """Decode the image (a JPEG at 1/8 of its size: every byte read, a fraction of the work)."""
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (max(image.size[0] // 8, 1), max(image.size[1] // 8, 1)))
            image.load()
    except Exception as exc:  # noqa: BLE001  truncated data, a broken header, a zero-byte file
        raise UnreadableImage(f"image {path} does not decode ({exc}): truncated or damaged; replace it "
                              "or drop its id from the split list") from exc


class Cache:
    """{file stats of an image: ok} of the images that passed, kept as JSON beside the check's output."""

    def __init__(self, path, settings: dict):
        self.path = Path(path)
        self.key = json.dumps(settings, sort_keys=True)
        self.passed: dict[str, str] = {}
        try:
            data = json.loads(self.path.read_text())
            if data.get("settings") == self.key:
                self.passed = dict(data["passed"])
        except (OSError, ValueError, KeyError, TypeError):   # absent or unreadable: check everything
            pass

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"settings": self.key, "passed": self.passed}))
        tmp.replace(self.path)


def check_images(reader, masks: bool, max_side: int, cache: Cache) -> int:
    """Every image of a split: it decodes, within max_side, its annotation (and mask) valid.
    Returns how many were read now (the others passed before with the same files)."""
    read = 0
    for image_id in tqdm(reader.ids, desc=f"checking split {reader.split}", leave=False):
        paths = [reader.image_path(image_id), reader.annotation_path(image_id)]
        if masks:
            paths.append(reader.mask_path(image_id))
        stamp = f"{masks} " + " ".join(_stat(p) for p in paths)
        entry = f"{reader.split}/{image_id}"
        if cache.passed.get(entry) == stamp:
            continue
        for path in paths:
            if not Path(path).is_file():
                raise DatasetError(f"dataset split '{reader.split}': missing file {path}")
        check_size(paths[0], max_side)
        decode_check(paths[0])
        if getattr(reader, "has_boxes", True):   # a tags dataset's tags were checked with the DAG
            reader.boxes(image_id)   # every class known, every object with a box (DatasetError names the file)
        if masks:
            reader.load_mask(image_id)   # class ids in range or 255
        cache.passed[entry] = stamp
        read += 1
    return read


def check_batches(splits: dict, batches: dict) -> None:
    """batches: {stage: [role, batch_size]}; a loader that drops its last incomplete batch has no batch
    at all when the split is smaller than the batch size."""
    for stage, (role, batch_size) in sorted(batches.items()):
        if role not in splits:
            continue
        n = len(splits[role].ids)
        if n < batch_size:
            raise DatasetError(f"split '{splits[role].split}' ({role}) has {n} images, fewer than {stage}'s "
                               f"batch_size {batch_size}: the stage would train on no batch at all; lower the "
                               f"config key {stage}.batch_size or use a larger split")


def check_dataset(kind: str, splits: dict, masks: set, max_side: int, batches: dict, cache_path) -> dict:
    """Run every check of a dataset; returns the report (what was checked, how much was read now).
    splits: {role: reader}; masks: the roles whose masks are read."""
    settings = {"max_side": max_side}
    cache = Cache(cache_path, settings)
    read, checked = 0, set()
    try:
        for role, reader in sorted(splits.items(), key=lambda item: item[0] not in masks):   # masked first
            with_masks = role in masks
            if (reader.split, True) in checked or (reader.split, with_masks) in checked:
                continue   # the same split already checked (with its masks where they are read)
            read += check_images(reader, with_masks, max_side, cache)
            checked.add((reader.split, with_masks))
        check_batches(splits, batches)
        for extra in EXTRA_CHECKS.get(kind, []):
            extra(splits, {"max_side": max_side, "batches": batches})
    finally:
        cache.save()   # what passed stays passed, even when a later image fails
    return {"kind": kind, "splits": {role: r.split for role, r in splits.items()},
            "images": {s: len(r.ids) for s, r in ((r.split, r) for r in splits.values())},
            "read_now": read, "max_side": max_side, "batches": batches}
