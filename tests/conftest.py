from pathlib import Path

import pytest

from pipeline.data import demo

REPO = Path(__file__).resolve().parents[1]
DEMO_CLASSES = ["background", "fox", "lynx", "frog", "newt", "tram", "barge"]
TINY = dict(seed=7, n_train=10, n_val=6, min_size=64, max_size=80)


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory) -> Path:
    """A tiny VOC-format dataset written by the demo generator (shared, read-only)."""
    root = tmp_path_factory.mktemp("tiny_voc") / "VOC2012"
    demo.generate(root, DEMO_CLASSES, **TINY)
    return root


def listed_voc(root: Path, train_aug: int = 10582, train: int = 1464, val: int = 1449) -> Path:
    """PASCAL VOC's layout and split sizes with empty files: enough to build the DAG (which checks
    that every listed file exists), not to run it. train is the first part of train_aug, as in SBD."""
    folders = {name: root / name for name in ("JPEGImages", "Annotations", "SegmentationClass",
                                               "SegmentationClassAug", "ImageSets/Segmentation")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    aug_ids = [f"2008_{i:06d}" for i in range(train_aug)]
    val_ids = [f"2009_{i:06d}" for i in range(val)]
    for image_id in aug_ids + val_ids:
        (folders["JPEGImages"] / f"{image_id}.jpg").touch()
        (folders["Annotations"] / f"{image_id}.xml").touch()
    for image_id in aug_ids:
        (folders["SegmentationClassAug"] / f"{image_id}.png").touch()
    for image_id in aug_ids[:train] + val_ids:
        (folders["SegmentationClass"] / f"{image_id}.png").touch()
    for split, ids in (("train_aug", aug_ids), ("train", aug_ids[:train]), ("val", val_ids)):
        (folders["ImageSets/Segmentation"] / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root
