"""IRN's inter-pixel relations against naive implementations of the published formulas written here:
the path affinity (a loop over the cells of each path), the walk (IRN's dense matrix, squared),
the loss (a loop over the labelled pairs), the IR labels (by hand); then the network, the stages
and the DAG with the VOC overlay."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import pipeline.affinity.irn as irn
from conftest import DEMO_CLASSES, REPO, listed_voc
from pipeline.affinity.irn import (boundary_affinities, ir_label, irn_maps, irn_walk, path_affinity_loss,
                                   path_cells)
from pipeline.affinity.random_walk import disk_offsets
from pipeline.core.store import ArtifactReader, ArtifactWriter
from pipeline.maps.io import IGNORE
from pipeline.models.boundary_net import BoundaryNet, load_boundary_net, save_boundary_net
from stages import ir_labels, propagate_irn, train_irn


def naive_path(p, q):
    """IRN's path from p to q, by its definition: the cells of the box spanned by p and q whose
    Euclidean distance to the line through p and q is below one cell."""
    (py, px), (qy, qx) = p, q
    length = math.hypot(qy - py, qx - px)
    cells = []
    for y in range(min(py, qy), max(py, qy) + 1):
        for x in range(min(px, qx), max(px, qx) + 1):
            if length == 0 or abs((qy - py) * (x - px) - (qx - px) * (y - py)) / length < 1 - 1e-12:
                cells.append((y, x))
    return cells


def naive_affinity(boundary: np.ndarray, p, q) -> float:
    """1 - the largest boundary value over the path's cells, one cell at a time."""
    largest = 0.0
    for y, x in naive_path(p, q):
        largest = max(largest, float(boundary[y, x]))
    return 1.0 - largest


def naive_dense_affinity(boundary: np.ndarray, radius: int) -> np.ndarray:
    """(N, N) affinities of every pixel pair within radius and 1 on the diagonal (IRN's identity), float64."""
    h, w = boundary.shape
    A = np.zeros((h * w, h * w))
    for py in range(h):
        for px in range(w):
            for qy in range(h):
                for qx in range(w):
                    if (qy, qx) == (py, px):
                        A[py * w + px, qy * w + qx] = 1.0
                    elif (qy - py) ** 2 + (qx - px) ** 2 < radius ** 2:
                        A[py * w + px, qy * w + qx] = naive_affinity(boundary, (py, px), (qy, qx))
    return A


def test_path_cells_by_hand_and_by_the_line_distance():
    assert path_cells(0, 3) == [(0, 0), (0, 1), (0, 2), (0, 3)]
    # the diagonal's neighbours lie sqrt(2)/2 < 1 from the line: IRN's path is wider than a Bresenham line
    assert sorted(path_cells(2, 2)) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2)]
    for dy, dx in disk_offsets(10):
        assert sorted(path_cells(dy, dx)) == sorted(naive_path((0, 0), (dy, dx)))


def test_path_affinity_on_a_handmade_boundary_map():
    # a wall of 0.9 in column 4, a weak 0.2 edge in row 1 left of it
    B = np.zeros((7, 9), np.float32)
    B[:, 4] = 0.9
    B[1, :4] = 0.2
    aff = boundary_affinities(torch.from_numpy(B), 5).numpy()
    index = {o: k for k, o in enumerate(disk_offsets(5))}
    assert aff[3, 2, index[(0, 4)]] == pytest.approx(0.1)     # across the wall
    assert aff[3, 1, index[(0, 2)]] == pytest.approx(1.0)     # beside it, no boundary on the way
    assert aff[0, 1, index[(2, 1)]] == pytest.approx(0.8)     # through the weak edge
    assert aff[3, 6, index[(0, 0)]] == 1.0 and aff[0, 0, index[(-1, 0)]] == 0.0   # centre; outside
    rng = np.random.default_rng(0)
    B = rng.random((6, 8)).astype(np.float32)
    aff = boundary_affinities(torch.from_numpy(B), 4).numpy()
    for py in range(6):
        for px in range(8):
            for k, (dy, dx) in enumerate(disk_offsets(4)):
                qy, qx = py + dy, px + dx
                inside = 0 <= qy < 6 and 0 <= qx < 8
                # a pixel with itself: 1 (IRN's identity), not 1 - B
                expected = 1.0 if (dy, dx) == (0, 0) else naive_affinity(B, (py, px), (qy, qx)) if inside else 0.0
                assert aff[py, px, k] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("h, w, radius, logt", [(7, 9, 5, 8), (6, 5, 3, 4)])
def test_irn_walk_equals_irns_dense_walk(h, w, radius, logt):
    """IRN's formulation: dense A^beta normalised over columns, squared logt times, x @ T, on the
    seeds x (1 - B)."""
    rng = np.random.default_rng(h * w)
    B = (rng.random((h, w)) ** 3).astype(np.float64)
    seeds = rng.random((2, h, w))
    T = naive_dense_affinity(B, radius) ** 10
    T = T / T.sum(0, keepdims=True)
    for _ in range(logt):
        T = T @ T
    dense = ((seeds * (1 - B)).reshape(2, -1) @ T).reshape(2, h, w)
    sparse = irn_walk(torch.from_numpy(B), torch.from_numpy(seeds), radius, 10, 2 ** logt).numpy()
    np.testing.assert_allclose(sparse, dense, rtol=1e-9, atol=1e-12)


def test_irn_maps_background_is_constant_and_the_walk_is_divided_by_its_maximum():
    rng = np.random.default_rng(1)
    cams = rng.random((2, 10, 13)).astype(np.float32)
    B = torch.from_numpy(rng.random((3, 4)).astype(np.float32)) * 0.5   # 12 x 16 padded, stride 4
    cfg = {"walk_radius": 3, "beta": 10, "logt": 3, "walk_bg": 0.25}
    maps = irn_maps(B, cams, 4, cfg)
    assert maps.shape == (3, 10, 13)
    assert (maps[0] == 0.25).all() and maps[1:].max() == pytest.approx(1.0) and maps.min() >= 0
    # the walk itself, by hand: pooled seeds, walked, bilinear x4, cropped, divided by the maximum
    pooled = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(torch.from_numpy(cams), (0, 3, 0, 2))[None], 4)[0]
    walked = irn_walk(B, pooled, 3, 10, 8)
    up = torch.nn.functional.interpolate(walked[None], scale_factor=4, mode="bilinear")[0, :, :10, :13].numpy()
    np.testing.assert_allclose(maps[1:], up / up.max(), rtol=1e-5, atol=1e-6)


def _argmax_crf(image, labels, n_labels, params=None):
    """The CRF left out: one-hot marginals of the labels."""
    return np.eye(n_labels, dtype=np.float32)[labels].transpose(2, 0, 1)


def test_ir_label_rules_on_a_handmade_cam(monkeypatch):
    monkeypatch.setattr(irn, "crf_labels", _argmax_crf)
    cams = np.zeros((2, 1, 6), np.float32)
    cams[0, 0] = [0.9, 0.2, 0.06, 0.01, 0.0, 0.4]
    cams[1, 0] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.7]
    # 0.9 > 0.30: class 4; 0.2 and 0.06 lie between 0.05 and 0.30: ignored; 0.01 and 0 below 0.05:
    # background; (0.4, 0.7): the stronger class, id 15
    label = ir_label(np.zeros((1, 6, 3), np.uint8), cams, [4, 15], 0.30, 0.05, {})
    assert label.tolist() == [[4, IGNORE, IGNORE, 0, 0, 15]]


def test_ir_label_keeps_irns_rule_where_the_two_crfs_disagree(monkeypatch):
    """IRN's cam_to_ir_label: foreground of the 0.30 CRF stays even where the 0.05 CRF says background."""
    calls = []

    def scripted(image, labels, n_labels, params=None):
        calls.append(labels.copy())
        fixed = np.array([[1, 0, 1, 0]]) if len(calls) == 1 else np.array([[0, 0, 1, 1]])
        return np.eye(n_labels, dtype=np.float32)[fixed].transpose(2, 0, 1)

    monkeypatch.setattr(irn, "crf_labels", scripted)
    label = ir_label(np.zeros((1, 4, 3), np.uint8), np.full((1, 1, 4), 0.5, np.float32), [7], 0.30, 0.05, {})
    assert label.tolist() == [[7, 0, 7, IGNORE]]


def test_ir_labels_with_the_real_crf():
    # a strong CAM on a bright block, a weak one on the grey ring around it, nothing on the dark rest
    image = np.full((48, 48, 3), 20, np.uint8)
    image[8:40, 8:40] = 130
    image[16:32, 16:32] = 240
    cam = np.zeros((1, 48, 48), np.float32)
    cam[0, 8:40, 8:40] = 0.15
    cam[0, 16:32, 16:32] = 0.9
    label = ir_label(image, cam, [3], 0.30, 0.05, {"gt_prob": 0.7, "iterations": 10, "gaussian_sxy": 3,
                                                   "gaussian_compat": 3, "bilateral_sxy": 50,
                                                   "bilateral_srgb": 5, "bilateral_compat": 10})
    assert (label[19:29, 19:29] == 3).all()
    assert (label[11:13, 11:37] == IGNORE).all() and (label[35:37, 11:37] == IGNORE).all()
    assert (label[:5] == 0).all() and (label[:, -5:] == 0).all()


def test_path_affinity_loss_equals_a_loop_over_the_labelled_pairs():
    rng = np.random.default_rng(3)
    B = rng.random((2, 6, 7)) * 0.9
    labels = rng.choice([0, 0, 2, 5, IGNORE], size=(2, 6, 7)).astype(np.uint8)
    radius = 4
    sums = {"bg": [0.0, 0], "fg": [0.0, 0], "neg": [0.0, 0]}
    for b in range(2):
        for py in range(6):
            for px in range(7):
                for qy in range(6):
                    for qx in range(7):
                        d2 = (qy - py) ** 2 + (qx - px) ** 2
                        # each pair once: q after p in row-major order
                        if not 0 < d2 < radius ** 2 or (qy, qx) <= (py, px):
                            continue
                        lp, lq = labels[b, py, px], labels[b, qy, qx]
                        if IGNORE in (lp, lq):
                            continue
                        a = naive_affinity(B[b], (py, px), (qy, qx))
                        kind = "neg" if lp != lq else ("bg" if lp == 0 else "fg")
                        sums[kind][0] += -math.log(1 + 1e-5 - a) if kind == "neg" else -math.log(a + 1e-5)
                        sums[kind][1] += 1
    mean = {k: s / (n + 1e-5) for k, (s, n) in sums.items()}
    expected = (mean["bg"] / 2 + mean["fg"] / 2 + mean["neg"]) / 2
    got = path_affinity_loss(torch.from_numpy(B), torch.from_numpy(labels), radius)
    assert float(got) == pytest.approx(expected, rel=1e-9)


def test_boundary_net_grid_frozen_backbone_and_checkpoint(tmp_path):
    net = BoundaryNet("tf_efficientnet_lite0", [0, 1, 2, 3, 4], dim=8, stride=4)
    x = torch.rand(2, 3, 37, 50)
    B = net.train()(x)
    assert B.shape == (2, 10, 13) and 0 <= float(B.detach().min()) and float(B.detach().max()) <= 1
    path_affinity_loss(B, torch.zeros(2, 10, 13, dtype=torch.uint8), 5).backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert all(p.grad is not None for p in net.project.parameters() if p.requires_grad)
    assert not net.backbone.training   # its BatchNorm statistics stay
    save_boundary_net(net, tmp_path / "irn.pt", mean=[0.5] * 3, std=[0.5] * 3, radius=10)
    loaded, meta = load_boundary_net(tmp_path / "irn.pt", "tf_efficientnet_lite0")
    one = torch.rand(1, 3, 32, 40)
    assert torch.equal(loaded.boundary(one), net.eval().boundary(one)) and meta["dim"] == 8
    # IRN's inference: the image and its mirror averaged, so a mirrored image gives the mirrored map
    torch.testing.assert_close(net.boundary(one.flip(-1)), net.boundary(one).flip(-1))
    with pytest.raises(ValueError, match="backbone 'tf_efficientnet_lite0'.*'resnet50'"):
        load_boundary_net(tmp_path / "irn.pt", "resnet50")
    torch.save({"state_dict": {}, "meta": {"backbone": "x", "levels": [1]}}, tmp_path / "aff.pt")
    with pytest.raises(ValueError, match="not an IRN boundary-network checkpoint"):
        load_boundary_net(tmp_path / "aff.pt")


def _blob_cams(tiny_voc, path):
    """CAMs that cover each image's ground-truth objects (blurred), one map per class present."""
    from pipeline.data.voc import VOCDataset
    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train")
    with ArtifactWriter(path, meta={"classes": DEMO_CLASSES}) as writer:
        for image_id in voc.ids:
            gt = voc.load_mask(image_id)
            ids = [c for c in np.unique(gt) if c not in (0, IGNORE)] or [1]
            maps = np.stack([(gt == c).astype(np.float32) * 0.8 for c in ids])
            writer.write(image_id, maps.astype(np.float16), classes=np.asarray(ids, np.int64))
    return voc


def test_irn_stages_run_by_hand(tiny_voc, tmp_path):
    _blob_cams(tiny_voc, tmp_path / "cams.h5")
    data = ["--root", str(tiny_voc), "--classes", json.dumps(DEMO_CLASSES)]
    ir_labels.main([*data, "--split", "train", "--eval-split", "train", "--cams", str(tmp_path / "cams.h5"),
                    "--out", str(tmp_path / "labels.h5"), "--tally", str(tmp_path / "labels.json")])
    labels = ArtifactReader(tmp_path / "labels.h5")
    assert all(set(np.unique(labels[k])) <= {0, *range(1, 7), IGNORE} for k in labels.keys())
    train_irn.main([*data, "--split", "train", "--labels", str(tmp_path / "labels.h5"), "--device", "cpu",
                    "--epochs", "1", "--batch-size", "2", "--crop-size", "64", "--workers", "0", "--dim", "8",
                    "--out", str(tmp_path / "irn.pt"), "--report", str(tmp_path / "irn.json")])
    assert len(json.loads((tmp_path / "irn.json").read_text())["history"]) == 1
    propagate_irn.main([*data, "--split", "train", "--eval-split", "train", "--cams", str(tmp_path / "cams.h5"),
                        "--boundary", str(tmp_path / "irn.pt"), "--method", "cam", "--device", "cpu",
                        "--logt", "3", "--out", str(tmp_path / "rw.h5"), "--tally", str(tmp_path / "rw.json")])
    maps = ArtifactReader(tmp_path / "rw.h5")
    key = maps.keys()[0]
    assert (maps[key][0] == np.float16(0.25)).all() and float(maps[key][1:].max()) == pytest.approx(1.0, abs=1e-3)
    assert json.loads((tmp_path / "rw.json").read_text())["confusion"][0][0] == "rw:irn"


def test_the_irn_voc_overlay_builds_the_dag_on_a_voc_layout(tmp_path):
    listed_voc(tmp_path / "data/VOCdevkit/VOC2012", train_aug=40, train=20, val=10)
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "-p", "--cores", "8",
                          "--configfile", str(REPO / "configs/irn-voc.yaml"), "--", "results/voc/miou.json",
                          "results/voc/rw/cam.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for rule in ("ir_labels", "train_irn", "propagate_irn", "train_affinity", "propagate"):
        assert f"rule {rule}:" in run.stdout or f"localrule {rule}:" in run.stdout, rule
    assert "--maps results/voc/rw_irn/cam.h5" in run.stdout and "--affinity irn" in run.stdout
    assert "--backbone resnet50" in run.stdout


def test_compare_walks_strip_and_band_counts_by_hand(tiny_voc, tmp_path):
    from pipeline.diagnostics.compare_walks import band_counts
    from stages.diagnostics import compare_walks
    gt = np.array([[0, 0, 2, 2], [0, 2, 2, 255], [1, 1, 0, 0]], np.uint8)
    label = np.array([[2, 0, 2, 2], [2, 2, 2, 2], [1, 1, 1, 0]], np.uint8)
    # rows 0-1: lynx (2) on 7 pixels, 2 of them on ground-truth background; background on 1
    assert band_counts(label, gt, (0, 1), DEMO_CLASSES) == {"background": (1, 1), "lynx": (7, 2)}
    voc = _blob_cams(tiny_voc, tmp_path / "cams.h5")
    image_id = voc.ids[0]
    with ArtifactWriter(tmp_path / "walk.h5", meta={"classes": DEMO_CLASSES}) as writer:
        gt = voc.load_mask(image_id)
        writer.write(image_id, np.stack([(gt == 0), (gt != 0)]).astype(np.float16), classes=np.asarray([0, 3]))
    compare_walks.main(["--root", str(tiny_voc), "--classes", json.dumps(DEMO_CLASSES), "--split", "train",
                        "--image-id", image_id, "--maps", f"a={tmp_path / 'walk.h5'}", "--rows", "0", "3",
                        "--out", str(tmp_path / "strip.png")])
    from PIL import Image
    strip = np.asarray(Image.open(tmp_path / "strip.png"))
    h, w = gt.shape
    assert strip.shape == (h, 3 * w + 8, 3)
