"""WSOL boxes from CAMs, checked against boxes and accuracies worked out by hand."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cams.boxes import box_from_map, box_iou, evaluate
from pipeline.core.store import ArtifactReader, ArtifactWriter
from pipeline.data.voc import VOCDataset

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["background", "cat", "dog"]


# ---------------------------------------------------------------- box_from_map


def test_largest_blob_wins():
    cam = np.zeros((10, 12), np.float32)
    cam[1:3, 1:3] = 1.0      # small blob: x 1..2, y 1..2 (4 px), holds the max
    cam[5:9, 6:11] = 0.6     # large blob: x 6..10, y 5..8 (20 px)
    assert box_from_map(cam, 0.5, "max") == (6, 5, 10, 8)
    # above 0.6 only the small blob is left
    assert box_from_map(cam, 0.7, "max") == (1, 1, 2, 2)


def test_diagonal_neighbours_are_one_component():
    cam = np.zeros((8, 8), np.float32)
    cam[0, 0] = cam[1, 1] = cam[2, 2] = 1.0   # diagonal chain: one 3-px blob only with 8-connectivity
    cam[6, 4:6] = 1.0                         # horizontal pair (2 px): would win under 4-connectivity
    assert box_from_map(cam, 0.5, "max") == (0, 0, 2, 2)


def test_equal_areas_take_the_first_component():
    cam = np.zeros((9, 9), np.float32)
    cam[0:2, 0:2] = 1.0     # first in raster order
    cam[6:8, 6:8] = 1.0
    assert box_from_map(cam, 0.5, "max") == (0, 0, 1, 1)


def test_pas_thresholds_against_the_90th_percentile():
    # 100 px: one sharp peak (1.0), a 6x6 plateau at 0.4 (36 px), 63 zeros. Sorted, indices
    # 63..98 hold 0.4, and the 90th percentile (position 0.9 * 99 = 89.1) lies among them: 0.4.
    cam = np.zeros((10, 10), np.float32)
    cam[0, 0] = 1.0
    cam[2:8, 2:8] = 0.4
    # max: t = 0.5 * 1.0 = 0.5 keeps the peak alone
    assert box_from_map(cam, 0.5, "max") == (0, 0, 0, 0)
    # PaS: t = 0.5 * 0.4 = 0.2 keeps the peak and the plateau; the plateau is larger
    assert box_from_map(cam, 0.5, "pas") == (2, 2, 7, 7)
    # PaS: t = 2 * 0.4 = 0.8 keeps only the peak again; t = 3 * 0.4 = 1.2 keeps nothing
    assert box_from_map(cam, 2.0, "pas") == (0, 0, 0, 0)
    assert box_from_map(cam, 3.0, "pas") is None


def test_float16_maps_and_boundaries():
    cam = np.zeros((5, 6), np.float16)
    cam[1:4, 2:6] = 1.0     # touches the right border
    assert box_from_map(cam, 1.0, "max") == (2, 1, 5, 3)    # cam >= t includes t itself
    full = np.full((4, 7), 0.5, np.float32)
    assert box_from_map(full, 0.5, "max") == (0, 0, 6, 3)


def test_empty_maps_give_none():
    zeros = np.zeros((6, 6), np.float32)
    assert box_from_map(zeros, 0.5, "max") is None
    assert box_from_map(zeros, 0.0, "max") is None
    assert box_from_map(zeros, 0.5, "pas") is None
    cam = np.zeros((6, 6), np.float32)
    cam[2, 3] = 0.8
    assert box_from_map(cam, 1.5, "max") is None            # t = 1.2 above every pixel
    with pytest.raises(ValueError, match="mode"):
        box_from_map(cam, 0.5, "mean")


# ---------------------------------------------------------------- box_iou


def test_box_iou_by_hand():
    assert box_iou((1, 1, 4, 4), (1, 1, 4, 4)) == 1.0
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0       # adjacent, no shared pixel
    assert box_iou((0, 0, 1, 1), (5, 0, 7, 1)) == 0.0
    # 4x4 and 4x4 sharing a 2x2 corner: 4 / (16 + 16 - 4)
    assert box_iou((0, 0, 3, 3), (2, 2, 5, 5)) == pytest.approx(4 / 28)
    # one pixel inside a 5x5 box
    assert box_iou((2, 2, 2, 2), (0, 0, 4, 4)) == pytest.approx(1 / 25)
    # 3x2 strip overlapping a 2x4 box in 2x2 = 4 px: union 6 + 8 - 4
    assert box_iou((0, 0, 2, 1), (1, 0, 2, 3)) == pytest.approx(4 / 10)


# ---------------------------------------------------------------- evaluate


def _write_voc(root: Path, split: str, images: dict) -> None:
    """images: id -> (width, height, [(name, xmin, ymin, xmax, ymax, difficult)]) in VOC's
    1-based inclusive coordinates."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(images) + "\n")
    for image_id, (w, h, objects) in images.items():
        objs = "".join(
            f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for n, x0, y0, x1, y1, d in objects)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size>{objs}</annotation>")
        Image.new("RGB", (w, h), (90, 90, 90)).save(root / "JPEGImages" / f"{image_id}.jpg")


@pytest.fixture
def fake(tmp_path):
    """Three 20x20 images, four (image, class) pairs, correct at these thresholds (IoU >= 0.5):

    a/cat  GT (2,2)-(9,9); core 1.0 on (4..7)^2, ring 0.7 on the rest of (2..9)^2:
           t 0.3, 0.6 -> whole square, IoU 1; t 0.9 -> core, IoU 16/64 = 0.25
    a/dog  GT (12,12)-(17,17); 0.8 on that square, 1.0 on its pixel (14,14):
           t 0.3, 0.6 -> the square, IoU 1; t 0.9 -> one pixel, IoU 1/36
    b/cat  GT (0,0)-(9,9) and (12,12)-(17,17); 1.0 on (12..17)^2, 0.5 everywhere else:
           t 0.3 -> whole image, IoU 100/400 = 0.25 and 36/400; t 0.6, 0.9 -> (12..17)^2, IoU 1
           (its difficult dog box has no CAM, so it is no pair)
    c/dog  GT (3,3)-(8,8); all-zero map: never a box
    """
    root = tmp_path / "voc"
    _write_voc(root, "val", {
        "a": (20, 20, [("cat", 3, 3, 10, 10, 0), ("dog", 13, 13, 18, 18, 0)]),
        "b": (20, 20, [("cat", 1, 1, 10, 10, 0), ("cat", 13, 13, 18, 18, 0), ("dog", 2, 2, 5, 5, 1)]),
        "c": (20, 20, [("dog", 4, 4, 9, 9, 0)]),
    })
    a = np.zeros((2, 20, 20), np.float32)
    a[0, 2:10, 2:10] = 0.7
    a[0, 4:8, 4:8] = 1.0
    a[1, 12:18, 12:18] = 0.8
    a[1, 14, 14] = 1.0
    b = np.full((1, 20, 20), 0.5, np.float32)
    b[0, 12:18, 12:18] = 1.0
    c = np.zeros((1, 20, 20), np.float32)
    h5 = tmp_path / "cam.h5"
    with ArtifactWriter(h5) as w:
        w.write("a", a, classes=np.array([1, 2]))
        w.write("b", b, classes=np.array([1]))
        w.write("c", c, classes=np.array([2]))
    return root, h5


def test_evaluate_by_hand(fake):
    root, h5 = fake
    voc = VOCDataset(root, CLASSES, "val")
    result = evaluate(ArtifactReader(h5), voc, [0.6, 0.9], "max", default_threshold=0.3)
    # correct pairs: t 0.3 -> a/cat, a/dog; t 0.6 -> a/cat, a/dog, b/cat; t 0.9 -> b/cat
    assert result["pairs"] == 4
    assert result["corloc"] == pytest.approx(2 / 4)
    assert result["maxboxacc"] == pytest.approx(3 / 4)
    assert result["best_threshold"] == pytest.approx(0.6)
    assert [r["threshold"] for r in result["curve"]] == pytest.approx([0.3, 0.6, 0.9])
    assert [r["accuracy"] for r in result["curve"]] == pytest.approx([0.5, 0.75, 0.25])
    assert result["mode"] == "max" and result["iou"] == 0.5
    json.dumps(result)  # plain JSON


def test_evaluate_iou_criterion_and_ties(fake):
    root, h5 = fake
    voc = VOCDataset(root, CLASSES, "val")
    # IoU >= 0.2 also accepts a/cat's core at 0.9 (0.25) and b's whole-image box at 0.3 (0.25)
    result = evaluate(ArtifactReader(h5), voc, [0.3, 0.6, 0.9], "max", default_threshold=0.9, iou=0.2)
    assert [r["accuracy"] for r in result["curve"]] == pytest.approx([0.75, 0.75, 0.5])
    assert result["corloc"] == pytest.approx(0.5)
    assert result["maxboxacc"] == pytest.approx(0.75)
    assert result["best_threshold"] == pytest.approx(0.3)   # ties -> smallest threshold


def test_evaluate_pas(fake):
    root, h5 = fake
    voc = VOCDataset(root, CLASSES, "val")
    # 90th percentiles: a/cat 0.7 (336 zeros, then 48 px of 0.7), a/dog 0 (364 zeros), b/cat 0.5
    # (364 px of 0.5). t = 1.2 * p90: a/cat 0.84 -> core (wrong); a/dog 0 -> whole image, IoU
    # 36/400 (wrong); b/cat 0.6 -> (12..17)^2 (right); c never. t = 0.5 * p90: a/cat 0.35 ->
    # square (right); a/dog 0 (wrong); b/cat 0.25 -> whole image (wrong).
    result = evaluate(ArtifactReader(h5), voc, [1.2], "pas", default_threshold=0.5)
    assert [r["accuracy"] for r in result["curve"]] == pytest.approx([0.25, 0.25])
    assert result["mode"] == "pas"


def test_evaluate_missing_cam_names_key_and_file(fake, tmp_path):
    root, _ = fake
    h5 = tmp_path / "partial_cams.h5"
    with ArtifactWriter(h5) as w:
        w.write("a", np.zeros((2, 20, 20), np.float32), classes=np.array([1, 2]))
    voc = VOCDataset(root, CLASSES, "val")
    with pytest.raises(KeyError, match=r"'b'.*") as err:
        evaluate(ArtifactReader(h5), voc, [0.5], "max", default_threshold=0.5)
    assert str(h5) in str(err.value)
    with pytest.raises(ValueError, match="mode"):
        evaluate(ArtifactReader(h5), voc, [0.5], "median", default_threshold=0.5)


def test_cli_writes_json(fake, tmp_path):
    root, h5 = fake
    out = tmp_path / "out" / "boxes.json"
    cfg = {"threshold": 0.3, "sweep": [0.6, 0.9, 0.3], "mode": "max", "iou": 0.5}
    proc = subprocess.run(
        [sys.executable, "-m", "stages.evaluate_boxes", "--root", str(root), "--classes",
         json.dumps(CLASSES), "--split", "val", "--cams", str(h5), "--method", "cam",
         "--cfg", json.dumps(cfg), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "evaluate_boxes: cam" in proc.stdout
    data = json.loads(out.read_text())
    assert data["method"] == "cam"
    assert data["corloc"] == pytest.approx(0.5)
    assert data["maxboxacc"] == pytest.approx(0.75) and data["best_threshold"] == pytest.approx(0.6)
    assert data["pairs"] == 4
