"""The walk over ground-truth affinities (pipeline/diagnostics/walk_ceiling.py) against hand-made cases and a
naive dense walk written here."""
import json

import numpy as np
import pytest
import torch

from conftest import DEMO_CLASSES
from pipeline.diagnostics.walk_ceiling import fill_ignored, label_features, walk_on_labels
from pipeline.affinity.random_walk import pair_affinity
from pipeline.core.store import ArtifactWriter
from pipeline.data.voc import VOCDataset
from stages.diagnostics import walk_ceiling


def test_the_border_band_takes_its_nearest_label():
    gt = np.array([[1, 1, 255, 255, 0, 0, 0]], np.uint8)
    assert fill_ignored(gt).tolist() == [[1, 1, 1, 0, 0, 0, 0]]
    assert fill_ignored(np.full((2, 2), 255, np.uint8)).tolist() == [[255, 255], [255, 255]]


def test_label_features_give_one_within_a_label_and_cross_between_labels():
    gt = np.zeros((8, 8), np.uint8)
    gt[:, 4:] = 3
    f = label_features(gt, n_classes=5, stride=2, cross=0.3)   # 4 x 4 grid, label 3 in columns 2-3
    assert f.shape == (5, 4, 4)
    cell = lambda y, x: f[:, y:y + 1, x:x + 1]   # noqa: E731  (pair_affinity wants (D, h, w))
    assert pair_affinity(cell(0, 0), cell(3, 1)).item() == pytest.approx(1.0)
    assert pair_affinity(cell(1, 2), cell(2, 3)).item() == pytest.approx(1.0)
    assert pair_affinity(cell(0, 1), cell(0, 2)).item() == pytest.approx(0.3, rel=1e-6)
    with pytest.raises(ValueError, match="cross affinity"):
        label_features(gt, 5, 2, cross=1.0)


def naive_walk_labels(gt, cams, class_ids, stride, cross, radius, beta, logt, alpha):
    """The same walk written out: grid labels at cell centres, a dense A (1 or cross^beta by label,
    within the radius), rows normalised, 2^logt products; then, as the rw stage, bilinear
    upsampling (torch's) and the argmax."""
    h, w = gt.shape
    gh, gw = h // stride, w // stride
    labels = gt[stride // 2::stride, stride // 2::stride].ravel()
    n = gh * gw
    A = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            (yi, xi), (yj, xj) = divmod(i, gw), divmod(j, gw)
            if (yi - yj) ** 2 + (xi - xj) ** 2 < radius ** 2:
                A[i, j] = 1.0 if labels[i] == labels[j] else cross ** beta
    T = A / A.sum(1, keepdims=True)
    stack = np.concatenate([(1 - cams.max(0))[None] ** alpha, cams])
    pooled = stack.reshape(len(stack), gh, stride, gw, stride).mean((2, 4)).reshape(len(stack), n)
    walked = (pooled @ np.linalg.matrix_power(T, 2 ** logt).T).reshape(len(stack), gh, gw)
    up = torch.nn.functional.interpolate(torch.from_numpy(walked)[None], scale_factor=stride, mode="bilinear",
                                         align_corners=False)[0]
    return np.asarray([0, *class_ids])[up.argmax(0).numpy()], walked


def test_walk_on_labels_equals_the_naive_dense_walk():
    rng = np.random.default_rng(3)
    gt = np.zeros((24, 24), np.uint8)
    gt[4:20, 0:12] = 2                   # cells (1-4, 0-2) of the 4-px grid
    gt[6:18, 16:23] = 5
    cams = np.zeros((2, 24, 24), np.float32)
    cams[0, 4:20, 0:12] = rng.uniform(0.10, 0.14, (16, 12))   # below a 0.15 seed threshold...
    cams[0, 4:8, 0:4] = 0.9                                   # ...but for one corner cell
    cams[1, 6:18, 16:23] = rng.uniform(0.1, 0.5, (12, 7))
    cfg = {"radius": 3, "beta": 8, "logt": 4, "alpha": 16}
    got = walk_on_labels(gt, cams, [2, 5], n_classes=6, stride=4, cross=0.2, cfg=cfg)
    want, walked = naive_walk_labels(gt, cams, [2, 5], 4, 0.2, **cfg)
    assert (got == want).all()
    # mixed over the object, the corner outweighs the background score of the rest (1/12 x 0.9 +
    # 11/12 x 0.12 against 11/12 x 0.88^16): every cell of the object, and none outside it
    cells = walked.argmax(0)
    assert (cells[gt[2::4, 2::4] == 2] == 1).all() and (cells[gt[2::4, 2::4] == 0] == 0).all()


def test_stage_scores_the_ceiling_walk(tmp_path, tiny_voc):
    classes = DEMO_CLASSES
    voc = VOCDataset(tiny_voc, classes, "train")
    cams_path = tmp_path / "cams.h5"
    with ArtifactWriter(cams_path, meta={"classes": classes}) as writer:
        for image_id in voc.ids:
            gt = voc.load_mask(image_id)
            present = [c for c in np.unique(gt) if 0 < c < 255]
            maps = np.stack([(gt == c).astype(np.float32) for c in present])
            writer.write(image_id, maps.astype(np.float16), classes=np.asarray(present, np.int64))
    out = tmp_path / "ceiling.json"
    walk_ceiling.main(["--root", str(tiny_voc), "--classes", json.dumps(classes), "--split", "train",
                       "--cams", str(cams_path), "--stride", "4", "--logt", "3", "--out", str(out)])
    result = json.loads(out.read_text())
    # CAMs equal to the masks stay the masks under the walk, up to the grid at the borders
    assert result["miou"] > 0.9 and result["logt"] == 3 and len(result["confusion"]) == len(classes)
