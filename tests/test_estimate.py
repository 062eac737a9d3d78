"""The stage-time estimate (pipeline/core/estimate.py, stages/estimate.py): each job's work in
megapixels counted by hand from the settings, times the measured rates."""
import json

import numpy as np
import pytest
from PIL import Image

from pipeline.core.estimate import estimate, split_sizes, stage_work
from stages import estimate as estimate_stage
from tests.conftest import DEMO_CLASSES, TINY

DATASET = {"kind": "demo", "classes": DEMO_CLASSES,
           "splits": {"classifier": "train", "classifier_val": "val", "cams": "train", "seeds": "train", "val": "val"},
           "generator": {"seed": 1, "n_train": 10, "n_val": 4, "min_size": 90, "max_size": 110}}
TRAINING = {"epochs": 2, "batch_size": 4, "crop_size": 100}
SECTIONS = {"classifier": TRAINING, "vit_classifier": {"epochs": 1}, "affinity": {**TRAINING, "epochs": 3},
            "random_walk": {}, "refine": {},
            "cams": {"methods": ["cam", "gradcam"], "scales": [1.0, 0.5], "flip": True},
            "segmentation": {**TRAINING, "labels_from": "cam", "test_scales": [1.0], "test_flip": False,
                             "test_crf": True}}
SIZES = {"train": (10, 0.01), "val": (4, 0.02)}   # images, megapixels each


def test_each_jobs_work_counted_by_hand():
    work = {j["job"]: j for j in stage_work(SECTIONS, DATASET, SIZES)}
    # 10 // 4 = 2 full batches of 4 crops of 100 x 100 for 2 epochs; val: 4 images of 0.02 MP
    assert work["train_classifier"]["megapixels"] == pytest.approx(2 * 2 * 4 * 0.01)
    assert work["train_classifier"]["eval"] == ("forward", pytest.approx(4 * 0.02))
    assert "train_classifier_vit" not in work                  # no ViT method configured
    # 10 images x 0.01 MP x (1 + 0.25) x 2 (flip)
    assert work["extract_cams_gradcam"]["megapixels"] == pytest.approx(10 * 0.01 * 1.25 * 2)
    assert work["train_affinity_cam"]["megapixels"] == pytest.approx(3 * 2 * 4 * 0.01)
    assert work["propagate_cam"]["megapixels"] == work["refine_cam"]["megapixels"] == pytest.approx(0.1)
    assert "propagate_gradcam" not in work                     # only labels_from is walked
    assert work["predict_full"]["megapixels"] == pytest.approx(4 * 0.02) and work["predict_full"]["crf"] == 0.08
    assert set(work) >= {"train_segmentation_cam", "train_segmentation_full", "predict_cam", "affinity_labels_cam"}


def test_seconds_are_startup_plus_work_times_rate():
    rates = {"device": "cuda", "startup_seconds": 5.0, "startup_cpu_seconds": 3.0, "stages": {
        "train_classifier": {"seconds_per_megapixel": 100.0, "cpu_seconds_per_megapixel": 150.0},
        "forward": {"seconds_per_megapixel": 10.0, "cpu_seconds_per_megapixel": 20.0},
        "predict": {"seconds_per_megapixel": 50.0, "cpu_seconds_per_megapixel": 60.0},
        "crf_softmax": {"seconds_per_megapixel": 30.0, "cpu_seconds_per_megapixel": 30.0}}}
    rows = {r["job"]: r for r in estimate(SECTIONS, DATASET, SIZES, rates)}
    assert rows["train_classifier"]["seconds"] == pytest.approx(5 + 0.16 * 100 + 0.08 * 10)
    assert rows["train_classifier"]["cpu_seconds"] == pytest.approx(3 + 0.16 * 150 + 0.08 * 20)
    assert rows["predict_cam"]["seconds"] == pytest.approx(5 + 0.08 * 50 + 0.08 * 30)
    assert rows["extract_cams_cam"]["seconds"] is None        # not measured: said so, not guessed
    # CPU rates: the wall time is the CPU time over the job's threads
    rows = {r["job"]: r for r in estimate(SECTIONS, DATASET, SIZES, {**rates, "device": "cpu"}, threads=2)}
    assert rows["train_classifier"]["seconds"] == pytest.approx((3 + 0.16 * 150 + 0.08 * 20) / 2)


def test_split_sizes_of_a_generated_dataset_and_of_a_demo_before_generation(tiny_voc, tmp_path):
    dataset = {**DATASET, "generator": {**DATASET["generator"], **TINY}}
    sizes = split_sizes(dataset, tiny_voc)
    for split in ("train", "val"):
        ids = (tiny_voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
        pixels = [np.prod(Image.open(tiny_voc / "JPEGImages" / f"{i}.jpg").size) / 1e6 for i in ids]
        assert sizes[split] == (len(ids), pytest.approx(np.mean(pixels)))
    # not generated yet: the generator's counts and its mean side squared
    assert split_sizes(DATASET, tmp_path / "absent") == {"train": (10, pytest.approx(0.01)),
                                                         "val": (4, pytest.approx(0.01))}


def test_the_stage_prints_the_table_and_says_when_a_device_has_no_rates(tmp_path, capsys, monkeypatch):
    argv = ["--dataset", "demo", "--dataset-config", json.dumps(DATASET), "--sections", json.dumps(SECTIONS),
            "--root", str(tmp_path / "absent"), "--device", "cpu", "--out", str(tmp_path / "estimate.json")]
    rates = tmp_path / "rates"
    rates.mkdir()
    (rates / "cpu.json").write_text(json.dumps({
        "device": "cpu", "device_name": "test cpu", "amp": "off", "sizes": "demo", "threads": 1, "measured": "now",
        "command": "x", "startup_cpu_seconds": 2.0,
        "stages": {"train_classifier": {"cpu_seconds_per_megapixel": 200.0}}}))
    monkeypatch.setattr("pipeline.core.estimate.RATES", rates)
    estimate_stage.main([*argv, "--threads", "2"])
    out = capsys.readouterr().out
    # (2 + 0.16 MP x 200) CPU seconds, over 2 threads
    assert "train_classifier" in out and "34 s" in out and "17 s" in out and "not measured" in out
    saved = json.loads((tmp_path / "estimate.json").read_text())
    assert saved["splits"]["train"] == {"images": 10, "megapixels": pytest.approx(0.01)}
    estimate_stage.main([*argv[:-4], "--device", "cuda", "--out", str(tmp_path / "gpu.json")])
    assert "no rates measured for device 'cuda'" in capsys.readouterr().out
