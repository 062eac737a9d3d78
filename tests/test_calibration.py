"""Background settings chosen by `auto` on a calibration split (pipeline/maps/calibration.py), each
checked against a naive computation of the published criterion written here."""
import itertools
import math
import os
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import DEMO_CLASSES, REPO, TINY
from pipeline.affinity.propagate import alpha_curve, propagate_image
from pipeline.cams.seeds import calibrate_threshold
from pipeline.core import config as cfgmod
from pipeline.core.store import ArtifactReader, ArtifactWriter
from pipeline.data import demo
from pipeline.data.voc import VOCDataset
from pipeline.evaluation.evaluate import ladder
from pipeline.maps.calibration import (GridScorer, ThresholdGrid, check_calibration_split, choose, crossing_alpha,
                                       derived_label_alphas,
                                       crossing_threshold, otsu_threshold)
from stages import calibrate_seeds, calibrate_walk, evaluate_seeds

MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]


def naive_miou(pairs, n):
    """mIoU from (gt, pred) label maps by the formula: per class TP / (TP + FP + FN) over all the
    pixels of the split whose gt is not 255, averaged over the classes that occur in gt or pred."""
    tp, fp, fn = np.zeros(n), np.zeros(n), np.zeros(n)
    for gt, pred in pairs:
        keep = gt != 255
        g, p = gt[keep], pred[keep]
        for c in range(n):
            tp[c] += np.sum((g == c) & (p == c))
            fp[c] += np.sum((g != c) & (p == c))
            fn[c] += np.sum((g == c) & (p != c))
    union = tp + fp + fn
    return float(np.mean(tp[union > 0] / union[union > 0]))


def strongest(maps, class_ids):
    """Per pixel, by a loop: the id of the class with the highest score and that score (0, 0 without classes)."""
    h, w = maps.shape[1:]
    label, peak = np.zeros((h, w), np.int64), np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            if len(class_ids):
                k = int(np.argmax(maps[:, y, x]))
                label[y, x], peak[y, x] = class_ids[k], maps[k, y, x]
    return label, peak


def naive_seed(label, peak, thresholds):
    """A pixel is its strongest class where that class's score exceeds the class's threshold."""
    return np.where(peak > np.asarray(thresholds)[label], label, 0)


@pytest.fixture(scope="module")
def split_with_cams(tiny_voc, tmp_path_factory):
    """The tiny demo's val split as a calibration split, with CAMs made from its masks: each
    present class's mask blurred, scaled by a per-class sharpness and noised (so classes differ)."""
    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "val")
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("cams") / "cams.h5"
    with ArtifactWriter(path) as writer:
        for image_id in voc.ids:
            gt = voc.load_mask(image_id)
            present = sorted(int(c) for c in set(np.unique(gt)) - {0, 255})
            maps = []
            for c in present:
                inside = (gt == c).astype(np.float32)
                blurred = torch.nn.functional.avg_pool2d(torch.from_numpy(inside)[None, None], 9, 1, 4)[0, 0].numpy()
                maps.append(np.clip(blurred * (0.4 + 0.1 * c) + rng.random(gt.shape) * 0.3, 0, 1))
            maps = np.stack(maps) if maps else np.zeros((0, *gt.shape), np.float32)
            maps = maps / np.maximum(maps.max((1, 2), keepdims=True), 1e-6) if len(maps) else maps
            writer.write(image_id, maps.astype(np.float16), classes=np.asarray(present, np.int64))
    return voc, ArtifactReader(path)


def test_the_hand_computed_case_and_the_tie_rule(tmp_path):
    """One 1 x 4 image, gt [bg, c, c, bg], one class with peaks 0.1 0.5 0.3 0.35. Threshold 0.2:
    seeds [bg c c c], bg IoU 1/2, c 2/3 -> 7/12. 0.32: [bg c bg c] -> 1/3, 1/3 -> 1/3.
    0.4: [bg c bg bg] -> bg 2/3, c 1/2 -> 7/12, a tie with 0.2: the first grid value wins."""
    table = ThresholdGrid([0.2, 0.32, 0.4], ["background", "c"])
    peak = np.array([[0.1, 0.5, 0.3, 0.35]], np.float32)
    table.add(np.array([[0, 1, 1, 0]], np.uint8), peak, np.ones((1, 4), np.uint8))
    curve = table.curve()
    assert [r["miou"] for r in curve] == pytest.approx([7 / 12, 1 / 3, 7 / 12], abs=1e-12)
    assert choose(curve)["value"] == 0.2


def test_the_threshold_chosen_on_a_split_is_the_grid_best_by_hand(split_with_cams):
    voc, cams = split_with_cams
    grid = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    record = calibrate_threshold(cams, voc, grid, per_class=False)
    n = len(voc.classes)
    data = [(voc.load_mask(i), *strongest(cams[i].astype(np.float32), cams.attrs(i)["classes"])) for i in voc.ids]
    by_hand = [naive_miou([(gt, naive_seed(label, peak, [t] * n)) for gt, label, peak in data], n) for t in grid]
    assert [r["miou"] for r in record["curve"]] == pytest.approx(by_hand, abs=1e-12)
    assert record["chosen"] == grid[int(np.argmax(by_hand))]
    assert record["mode"] == "calibrated" and record["split"] == "val" and record["images"] == len(voc)
    assert len(set(np.round(by_hand, 6))) > 2   # the curve has a real optimum to find


def test_per_class_thresholds_match_a_brute_force_search(split_with_cams):
    """Every combination of one threshold per present class, scored by hand: the coordinate ascent
    reaches the best of them, which beats (or equals) the best single threshold."""
    voc, cams = split_with_cams
    grid = [0.2, 0.4, 0.6]
    record = calibrate_threshold(cams, voc, grid, per_class=True)
    n = len(voc.classes)
    present = sorted({int(c) for i in voc.ids for c in cams.attrs(i)["classes"]})
    data = [(voc.load_mask(i), *strongest(cams[i].astype(np.float32), cams.attrs(i)["classes"])) for i in voc.ids]
    best = -1.0
    for combo in itertools.product(grid, repeat=len(present)):
        thresholds = np.full(n, grid[0])
        thresholds[present] = combo
        best = max(best, naive_miou([(gt, naive_seed(label, peak, thresholds)) for gt, label, peak in data], n))
    assert record["per_class"]["miou"] == pytest.approx(best, abs=1e-12)
    assert record["per_class"]["miou"] >= record["miou"]
    chosen = np.full(n, record["chosen"], np.float64)
    for name, t in record["per_class"]["thresholds"].items():
        chosen[voc.classes.index(name)] = t
    assert naive_miou([(gt, naive_seed(label, peak, chosen)) for gt, label, peak in data], n) == \
        pytest.approx(record["per_class"]["miou"], abs=1e-12)


def test_otsu_threshold_is_the_naive_between_class_variance_maximum():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.beta(1, 12, 5000), rng.beta(6, 3, 1500)])
    counts = np.histogram(values, bins=64, range=(0, 1))[0]
    centres = (np.arange(64) + 0.5) / 64
    best, best_k = -1, None
    for k in range(63):   # background = bins 0..k
        lo, hi = counts[:k + 1], counts[k + 1:]
        if lo.sum() == 0 or hi.sum() == 0:
            continue
        m0 = (lo * centres[:k + 1]).sum() / lo.sum()
        m1 = (hi * centres[k + 1:]).sum() / hi.sum()
        var = lo.sum() * hi.sum() * (m0 - m1) ** 2
        if var > best:
            best, best_k = var, k
    assert otsu_threshold(counts) == pytest.approx((best_k + 1) / 64)
    assert 0.1 < otsu_threshold(counts) < 0.6


@pytest.mark.parametrize("t", [0.05, 0.15, 0.45])
def test_the_crossing_power_puts_the_background_at_the_threshold(t):
    alpha = crossing_alpha(t)
    assert (1 - t) ** alpha == pytest.approx(t)
    assert crossing_threshold(alpha) == pytest.approx(t, abs=1e-9)
    assert crossing_threshold(16) == pytest.approx(0.1228, abs=1e-4)   # psa's walk power: about 0.12


def test_the_walk_power_curve_is_each_power_walked_on_its_own(split_with_cams):
    """All powers walk in one pass (the walk is linear); each must score as the walk of
    [(1 - max CAM)^alpha, CAMs] alone, stored in float16 and argmaxed, as the rw stage does."""

    class PooledColour(torch.nn.Module):
        stride = 4

        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, self.stride) * 3

    voc, cams = split_with_cams
    cfg = {"radius": 3, "beta": 8, "logt": 3}
    alphas = [1.0, 4.0, 16.0]
    scorer = alpha_curve(PooledColour(), {"mean": MEAN, "std": STD}, cams, voc, alphas, cfg, "cpu")
    for alpha, row in zip(alphas, scorer.curve()):
        pairs = []
        for image_id in voc.ids:
            walked = propagate_image(PooledColour(), voc.load_image(image_id), cams[image_id].astype(np.float32),
                                     MEAN, STD, "cpu", {**cfg, "alpha": alpha}).astype(np.float16)
            ids = np.asarray([0, *cams.attrs(image_id)["classes"]], np.uint8)
            pairs.append((voc.load_mask(image_id), ids[walked.argmax(0)]))
        assert row["miou"] == pytest.approx(naive_miou(pairs, len(voc.classes)), abs=1e-12), alpha
    assert len({round(r["miou"], 6) for r in scorer.curve()}) > 1


def test_a_calibration_split_that_is_a_reported_split_is_an_error():
    splits = {"classifier": "train", "classifier_val": "val", "cams": "train", "seeds": "train", "val": "val"}
    check_calibration_split("x", {**splits, "calibration": "calib"})
    with pytest.raises(ValueError, match=r"datasets\.x\.splits\.calibration.*'train'.*splits\.seeds"):
        check_calibration_split("x", {**splits, "calibration": "train"})
    ids = {"calibration": ["a", "b"], "seeds": ["b", "c"], "val": ["d"]}
    with pytest.raises(ValueError, match=r"shares 1 images with 'splits\.seeds'.*e\.g\. b"):
        check_calibration_split("x", {**splits, "calibration": "calib"}, ids)
    check_calibration_split("x", {**splits, "calibration": "calib"}, {**ids, "seeds": ["c"]})
    config = cfgmod.load(REPO / "config.yaml")
    config["datasets"]["demo"]["splits"]["calibration"] = "val"
    with pytest.raises(cfgmod.ConfigError, match=r"datasets\.demo\.splits\.calibration.*splits\.val"):
        cfgmod.validate(config)
    config = cfgmod.load(REPO / "config.yaml")
    config["seeds"]["per_class"] = True
    with pytest.raises(cfgmod.ConfigError, match=r"seeds\.per_class.*bg_threshold auto"):
        cfgmod.validate(config)


def test_an_overlapping_calibration_list_stops_the_dry_run(tiny_voc, tmp_path):
    root = tmp_path / "VOC2012"
    shutil.copytree(tiny_voc, root)
    lists = root / "ImageSets" / "Segmentation"
    train = (lists / "train.txt").read_text().split()
    (lists / "calib.txt").write_text("\n".join(train[:2]) + "\n")
    cfg = {"datasets": {"voc": {"root": str(root), "classes": DEMO_CLASSES,
                                "splits": {"classifier": "train", "classifier_val": "val", "cams": "train",
                                           "seeds": "train", "val": "val", "calibration": "calib"}}},
           "seeds": {"bg_threshold": "auto"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "1",
                          "--configfile", str(tmp_path / "c.yaml"), "--", "results/voc/seeds/cam.json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "shares 2 images with 'splits.seeds'" in out and train[0] in out


def test_auto_without_a_calibration_split_falls_back_and_says_so(split_with_cams, tiny_voc, tmp_path):
    voc, cams = split_with_cams
    common = ["--root", str(tiny_voc), "--classes", json.dumps(DEMO_CLASSES), "--method", "cam"]
    seeds_record = tmp_path / "seeds_cam.json"
    calibrate_seeds.main([*common, "--split", "val", "--cams", cams.path, "--out", str(seeds_record)])
    record = json.loads(seeds_record.read_text())
    assert record["mode"] == "heuristic" and "no calibration split" in record["reason"]
    assert "heuristic" in record["heuristic"]["name"] and record["chosen"] == record["heuristic"]["value"]
    peaks = np.concatenate([cams[i].astype(np.float32).max(0).ravel() for i in voc.ids if len(cams[i])])
    assert record["chosen"] == pytest.approx(otsu_threshold(np.histogram(peaks, 256, (0, 1))[0]))

    out = tmp_path / "seeds.json"
    evaluate_seeds.main([*common, "--split", "val", "--cams", cams.path, "--bg-threshold", "auto",
                         "--calibration", str(seeds_record), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["threshold"] == record["chosen"] and report["calibration"]["mode"] == "heuristic"
    rows = {r["threshold"]: r["miou"] for r in report["curve"]}
    assert report["miou"] == rows[record["chosen"]]

    # with a calibration split the record is calibrated and still carries the heuristic
    calibrate_seeds.main([*common, "--split", "val", "--cams", cams.path, "--calibration-split", "val",
                          "--calibration-cams", cams.path, "--out", str(seeds_record)])
    record = json.loads(seeds_record.read_text())
    assert record["mode"] == "calibrated" and record["heuristic"]["value"] > 0

    walk_record = tmp_path / "rw_cam.json"
    from pipeline.models.affinity_net import AffinityNet, save_affinity_net
    ckpt = tmp_path / "aff.pt"
    save_affinity_net(AffinityNet("tf_efficientnet_lite0", [1, 2], [8, 8], 4, 16, "none"), ckpt, mean=MEAN, std=STD)
    calibrate_walk.main([*common, "--split", "val", "--cams", cams.path, "--affinity", str(ckpt),
                         "--device", "cpu", "--out", str(walk_record)])
    walk = json.loads(walk_record.read_text())
    assert walk["mode"] == "heuristic" and "no calibration split" in walk["reason"]
    assert walk["chosen"] == pytest.approx(crossing_alpha(json.loads(seeds_record.read_text())["heuristic"]["value"]))


def test_the_ladder_carries_the_calibration(tmp_path):
    curve = [{"value": 4.0, "miou": 0.5, "fg_precision": 0.6, "fg_recall": 0.7}]
    walk = {"setting": "random_walk.alpha", "mode": "calibrated", "chosen": 4.0, "split": "calibration",
            "images": 32, "miou": 0.5, "grid": [4.0], "curve": curve, "heuristic": {"value": 5.2}}
    seeds = {"method": "cam", "threshold": 0.3, "split": "train", "miou": 0.4, "iou": {},
             "calibration": {**walk, "setting": "seeds.bg_threshold", "chosen": 0.3}}
    files = {"clf": {"val_split": "val", "val_map": 0.9}, "seeds": seeds, "walk": walk,
             "pseudo": {"eval_split": "train", "ladder": [{"step": "rw", "miou": 0.6, "iou": {}}]}}
    for name, data in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    rows = ladder(tmp_path / "clf.json", tmp_path / "seeds.json", tmp_path / "pseudo.json",
                  {"miou": 0.5, "iou": {}, "split": "val"}, None, [tmp_path / "walk.json"])
    assert rows[1]["calibration"]["setting"] == "seeds.bg_threshold" and rows[1]["calibration"]["chosen"] == 0.3
    assert rows[2]["stage"] == "pseudo-labels: rw" and rows[2]["calibration"]["chosen"] == 4.0
    assert rows[2]["calibration"]["curve"] == curve


def test_the_demo_calibration_split_leaves_train_and_val_unchanged(tmp_path):
    small = {**TINY, "n_train": 3, "n_val": 2}
    demo.generate(tmp_path / "plain", DEMO_CLASSES, **small)
    demo.generate(tmp_path / "calib", DEMO_CLASSES, **small, n_calibration=2)
    for sub in ("JPEGImages", "SegmentationClass", "Annotations"):
        for f in (tmp_path / "plain" / sub).iterdir():
            assert f.read_bytes() == (tmp_path / "calib" / sub / f.name).read_bytes(), f
    lists = tmp_path / "calib" / "ImageSets" / "Segmentation"
    for split in ("train", "val"):
        assert (lists / f"{split}.txt").read_text() == \
            (tmp_path / "plain" / "ImageSets" / "Segmentation" / f"{split}.txt").read_text()
    calib = VOCDataset(tmp_path / "calib", DEMO_CLASSES, "calibration")
    assert calib.ids == ["calibration_0000", "calibration_0001"]
    calib.check(masks=True)
    images = [np.asarray(calib.load_image(i)) for i in calib.ids]
    plain = VOCDataset(tmp_path / "plain", DEMO_CLASSES, "train")
    assert all(not np.array_equal(a, np.asarray(plain.load_image(i))) for a in images for i in plain.ids
               if np.asarray(plain.load_image(i)).shape == a.shape)


def test_grid_scorer_leaves_out_pixels_the_label_ignores():
    scorer = GridScorer([1.0], ["background", "c"])
    scorer.add(0, np.array([[0, 1, 1]], np.uint8), np.array([[0, 255, 1]], np.uint8))
    assert scorer.curve()[0]["miou"] == 1.0


def test_the_label_powers_derived_from_the_seed_threshold_keep_psa_s_relation():
    """At VOC's 0.15 they are psa's 4 and 32; at another threshold t both scale by
    ln t / ln(1 - t) over ln 0.15 / ln 0.85, the ratio of the powers that cross t and 0.15."""
    cfg = {"alpha_low": "auto", "alpha_high": "auto"}
    values, record = derived_label_alphas({"chosen": 0.15, "mode": "calibrated"}, cfg)
    assert values == pytest.approx({"alpha_low": 4.0, "alpha_high": 32.0})
    scale = (math.log(0.45) / math.log(0.55)) / (math.log(0.15) / math.log(0.85))
    values, record = derived_label_alphas({"chosen": 0.45, "mode": "heuristic"}, {**cfg, "alpha_high": 24})
    assert values == pytest.approx({"alpha_low": 4.0 * scale, "alpha_high": 24})
    assert record["mode"] == "derived (heuristic)" and record["auto"] == ["alpha_low"]


def _calibrated_fixture_dag(tmp_path, overrides: dict, targets=("results/voc/miou.json",)) -> Path:
    """The tiny fixture DAG with a calibration split of 3 images and these stage overrides on top of
    small training settings, to its targets; returns its results directory."""
    root = tmp_path / "VOC2012"
    demo.generate(root, DEMO_CLASSES, **TINY, n_calibration=3)
    stages = {"classifier": {"epochs": 1, "batch_size": 4, "crop_size": 48, "workers": 0},
              "cams": {"scales": [1.0]},
              "segmentation": {"feature_level": 3, "channels": 32, "epochs": 1, "batch_size": 4,
                               "crop_size": 48, "workers": 0, "test_scales": [1.0, 0.5]}}
    config = {"datasets": {"voc": {
        "root": str(root), "classes": DEMO_CLASSES,
        "splits": {"classifier": "train", "classifier_val": "val", "cams": "train", "seeds": "train", "val": "val",
                   "calibration": "calibration"},
        "overrides": {**stages, **overrides}}}}
    config_file = tmp_path / "fixture.yaml"
    config_file.write_text(yaml.safe_dump(config))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2",
                          "--configfile", str(config_file), "--", *targets],
                         cwd=tmp_path, capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "PYTHONPATH": str(REPO)})   # the stages of this checkout
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return tmp_path / "results" / "voc"


@pytest.mark.slow
def test_the_dag_calibrates_on_a_calibration_split(tmp_path):
    """Every background setting on auto, in one DAG: AffinityNet's chain to miou.json and IRN's walk
    beside it. The chosen values reach the stages and miou.json's ladder."""
    results = _calibrated_fixture_dag(tmp_path, {
        "affinity": {"levels": [1, 2], "dims": [8, 8], "stride": 4, "crop_size": 48, "epochs": 1,
                     "batch_size": 4, "workers": 0, "alpha_low": "auto", "alpha_high": "auto"},
        "random_walk": {"logt": 3, "alpha": "auto", "alpha_grid": [2, 8, 16]},
        "seeds": {"bg_threshold": "auto"},
        "irn": {"levels": [1, 2], "dim": 8, "crop_size": 48, "epochs": 1, "batch_size": 4, "workers": 0,
                "logt": "auto", "walk_bg": "auto", "logt_grid": [1, 2], "walk_bg_grid": [0.2, 0.4]}},
        targets=("results/voc/miou.json", "results/voc/rw_irn/cam.json"))
    seeds_record = json.loads((results / "calibration" / "seeds_cam.json").read_text())
    walk_record = json.loads((results / "calibration" / "rw_cam.json").read_text())
    assert seeds_record["mode"] == "calibrated" and seeds_record["images"] == 3
    assert walk_record["mode"] == "calibrated" and walk_record["chosen"] in (2.0, 8.0, 16.0)
    assert json.loads((results / "seeds" / "cam.json").read_text())["threshold"] == seeds_record["chosen"]
    assert json.loads((results / "rw" / "cam.json").read_text())["calibration"]["chosen"] == walk_record["chosen"]
    labels = json.loads((results / "affinity" / "cam_labels.json").read_text())["calibration"]
    assert labels["seeds_threshold"] == seeds_record["chosen"]
    rows = {row["stage"]: row for row in json.loads((results / "miou.json").read_text())["ladder"]}
    assert rows["pseudo-labels: rw:affinitynet"]["calibration"]["chosen"] == walk_record["chosen"]
    assert rows[f"seeds (cam @ {seeds_record['chosen']})"]["calibration"]["mode"] == "calibrated"
    # IRN's walk: its pair chosen on the calibration split is the walk it writes
    irn_record = json.loads((results / "calibration" / "rw_irn_cam.json").read_text())
    assert irn_record["mode"] == "calibrated" and irn_record["images"] == 3 and len(irn_record["curve"]) == 4
    assert irn_record["chosen"] in [{"logt": t, "walk_bg": b} for t in (1, 2) for b in (0.2, 0.4)]
    assert json.loads((results / "rw_irn" / "cam.json").read_text())["calibration"]["chosen"] == irn_record["chosen"]


def test_the_report_lists_the_settings_auto_chose():
    from pipeline.evaluation.report import calibration_table
    record = {"setting": "random_walk.alpha", "mode": "calibrated", "chosen": 8.0, "split": "calibration",
              "images": 32, "miou": 0.7281, "heuristic": {"value": 2.66}}
    html = calibration_table({"ladder": [{"stage": "pseudo-labels: rw", "calibration": record},
                                         {"stage": "classifier"}]})
    assert "random_walk.alpha" in html and "<td>8</td>" in html and "32 images of calibration" in html
    assert "2.66" in html and html.count("<tr>") == 2   # header and the one calibrated row
    assert calibration_table({"ladder": [{"stage": "classifier"}]}) == ""


# --- IRN's walk: logt and walk_bg chosen together ------------------------------------------------

IRN_WALK = {"walk_radius": 3, "beta": 10, "logt": "auto", "walk_bg": "auto", "logt_grid": [3, 1, 2],
            "walk_bg_grid": [0.2, 0.5]}


@pytest.fixture(scope="module")
def boundary_net(tmp_path_factory):
    """A random-init boundary network saved to a file (its maps are noisy, which is all the tests need)."""
    from pipeline.models.boundary_net import BoundaryNet, save_boundary_net
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("irn") / "irn.pt"
    save_boundary_net(BoundaryNet("tf_efficientnet_lite0", [1, 2], dim=8, stride=4, weights="none"), path,
                      mean=MEAN, std=STD, radius=5)
    return path


def test_the_irn_walk_grid_is_logt_major_and_keeps_a_fixed_key():
    from pipeline.affinity.irn import walk_grid
    assert walk_grid(IRN_WALK) == [{"logt": t, "walk_bg": b} for t in (1, 2, 3) for b in (0.2, 0.5)]
    assert walk_grid({**IRN_WALK, "logt": 4}) == [{"logt": 4, "walk_bg": 0.2}, {"logt": 4, "walk_bg": 0.5}]
    assert walk_grid({**IRN_WALK, "walk_bg": 0.25}) == [{"logt": t, "walk_bg": 0.25} for t in (1, 2, 3)]


def test_the_irn_walk_curve_is_each_setting_walked_on_its_own(split_with_cams, boundary_net):
    """One walk per image read at every 2^logt: each (logt, walk_bg) must score as IRN's walk of
    that length alone (irn_maps), behind that background, stored in float16 and argmaxed."""
    from pipeline.affinity.irn import boundary_of, irn_maps, walk_curve, walk_grid
    from pipeline.models.boundary_net import load_boundary_net
    voc, cams = split_with_cams
    model, meta = load_boundary_net(boundary_net)
    grid = walk_grid(IRN_WALK)
    curve = walk_curve(model, meta, cams, voc, grid, IRN_WALK, "cpu").curve()
    for point, row in zip(grid, curve):
        assert row["value"] == point
        pairs = []
        for image_id in voc.ids:
            maps = cams[image_id].astype(np.float32)
            boundary = boundary_of(model, voc.load_image(image_id), MEAN, STD, "cpu")
            stack = irn_maps(boundary, maps, 4, {**IRN_WALK, **point}).astype(np.float16)
            ids = np.asarray([0, *cams.attrs(image_id)["classes"]], np.uint8)
            pairs.append((voc.load_mask(image_id), ids[stack.argmax(0)]))
        assert row["miou"] == pytest.approx(naive_miou(pairs, len(voc.classes)), abs=1e-12), point
    assert len({round(r["miou"], 6) for r in curve}) > 1


def test_the_irn_walk_stage_chooses_and_the_walk_uses_the_choice(split_with_cams, boundary_net, tiny_voc, tmp_path):
    from stages import calibrate_irn_walk, propagate_irn
    voc, cams = split_with_cams
    common = ["--root", str(tiny_voc), "--classes", json.dumps(DEMO_CLASSES), "--method", "cam"]
    settings = ["--walk-radius", "3", "--logt", "auto", "--logt-grid", "1", "2", "3", "--walk-bg", "auto",
                "--walk-bg-grid", "0.2", "0.5"]
    record_path = tmp_path / "rw_irn_cam.json"
    calibrate_irn_walk.main([*common, "--split", "val", "--cams", cams.path, "--calibration-split", "val",
                             "--calibration-cams", cams.path, "--boundary", str(boundary_net), "--device", "cpu",
                             *settings, "--out", str(record_path)])
    record = json.loads(record_path.read_text())
    best = max(record["curve"], key=lambda r: r["miou"])
    assert record["mode"] == "calibrated" and record["setting"] == "irn.logt, irn.walk_bg"
    assert record["chosen"] == best["value"] and len(record["curve"]) == 6 and record["images"] == len(voc)
    assert set(record["heuristic"]["miou_on_calibration"]) == {"1", "2", "3"}

    propagate_irn.main([*common, "--split", "val", "--eval-split", "val", "--cams", cams.path,
                        "--boundary", str(boundary_net), "--device", "cpu", *settings[:2], "--logt", "auto",
                        "--walk-bg", "auto", "--calibration", str(record_path),
                        "--out", str(tmp_path / "rw.h5"), "--tally", str(tmp_path / "rw.json")])
    maps = ArtifactReader(tmp_path / "rw.h5")
    assert maps.meta["logt"] == record["chosen"]["logt"] and maps.meta["walk_bg"] == record["chosen"]["walk_bg"]
    assert (maps[voc.ids[0]][0] == np.float16(record["chosen"]["walk_bg"])).all()
    tally = json.loads((tmp_path / "rw.json").read_text())
    assert tally["calibration"]["chosen"] == record["chosen"]
    # the walk scored over the split is the calibration curve's chosen point
    from pipeline.maps.metrics import scores
    assert scores(np.asarray(tally["confusion"][0][1]), DEMO_CLASSES)["miou"] == pytest.approx(record["miou"], abs=1e-12)

    # a fixed walk_bg is kept and only the length is chosen: no label-free value is involved
    calibrate_irn_walk.main([*common, "--split", "val", "--cams", cams.path, "--calibration-split", "val",
                             "--calibration-cams", cams.path, "--boundary", str(boundary_net), "--device", "cpu",
                             *settings[:8], "--walk-bg", "0.3", "--out", str(record_path)])
    record = json.loads(record_path.read_text())
    assert [r["value"] for r in record["curve"]] == [{"logt": t, "walk_bg": 0.3} for t in (1, 2, 3)]
    assert "heuristic" not in record

    # without a calibration split: walk_bg from the label-free threshold, a fixed logt kept, logt auto refused
    calibrate_irn_walk.main([*common, "--split", "val", "--cams", cams.path, "--boundary", str(boundary_net),
                             *settings[:2], "--logt", "2", "--walk-bg", "auto", "--out", str(record_path)])
    record = json.loads(record_path.read_text())
    peaks = np.concatenate([cams[i].astype(np.float32).max(0).ravel() for i in voc.ids if len(cams[i])])
    assert record["mode"] == "heuristic" and "no calibration split" in record["reason"]
    assert record["chosen"] == {"logt": 2,
                                "walk_bg": pytest.approx(otsu_threshold(np.histogram(peaks, 256, (0, 1))[0]))}
    with pytest.raises(SystemExit, match="irn.logt auto needs a calibration split"):
        calibrate_irn_walk.main([*common, "--split", "val", "--cams", cams.path, "--boundary", str(boundary_net),
                                 *settings, "--out", str(record_path)])


def test_the_report_prints_settings_chosen_together():
    from pipeline.evaluation.report import calibration_table
    record = {"setting": "irn.logt, irn.walk_bg", "mode": "calibrated", "chosen": {"logt": 4, "walk_bg": 0.4},
              "split": "calibration", "images": 32, "miou": 0.78, "heuristic": {"value": 0.23}}
    html = calibration_table({"ladder": [{"stage": "pseudo-labels: rw:irn", "calibration": record}]})
    assert "<td>logt 4, walk_bg 0.4</td>" in html and "0.23" in html


def test_the_irn_demo_overlay_calibrates_its_walk_in_the_dag(tmp_path):
    """configs/demo-irn.yaml: the calibration split is drawn, the walk's record reaches the walk and the ladder."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "-p", "--cores", "2",
                          "--configfile", str(REPO / "configs/demo-irn.yaml"), "--", "results/demo/miou.json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "rule calibrate_irn_walk:" in run.stdout and "--calibration-split calibration" in run.stdout
    assert "--calibration results/demo/calibration/rw_irn_cam.json" in run.stdout
    assert "--walk-calibration results/demo/calibration/rw_irn_cam.json" in run.stdout
    assert "rule calibrate_walk:" not in run.stdout   # AffinityNet's walk is not the one behind the labels
