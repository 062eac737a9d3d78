import copy
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from pipeline.core import config as cfgmod

BASE = cfgmod.load(REPO / "config.yaml")


def _broken(edit):
    cfg = copy.deepcopy(BASE)
    edit(cfg)
    return cfg


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["classifier"].update(epoch=3), "unknown config key 'classifier.epoch'"),
    (lambda c: c["classifier"].update(epochs="ten"), "config key 'classifier.epochs': 'ten' is not of type 'integer'"),
    (lambda c: c["cams"].update(flip="yes"), "config key 'cams.flip'"),
    (lambda c: c["seeds"].update(bg_threshold=1.5), "config key 'seeds.bg_threshold'"),
    (lambda c: c.pop("seeds"), "config key 'seeds' is missing"),
    (lambda c: c["datasets"]["demo"]["overrides"]["classifier"].update(lr="fast"),
     "config key 'datasets.demo.overrides.classifier.lr'"),
    (lambda c: c["datasets"]["demo"]["splits"].pop("val"), "config key 'datasets.demo.splits.val' is missing"),
    (lambda c: c["datasets"]["voc"].update(kind="ade20k"), "config key 'datasets.voc.kind'"),
    (lambda c: c["datasets"]["coco"].pop("root"), "datasets.coco.root"),
    (lambda c: c["datasets"]["voc"].update(annotations="x.json"), "'datasets.voc.annotations' applies to COCO"),
    (lambda c: c["datasets"]["voc"].pop("root"), "datasets.voc.root"),
    (lambda c: c.update(device="tpu"), "config key 'device'"),
    (lambda c: c["affinity"]["crf"].pop("bilateral_srgb"), "config key 'affinity.crf.bilateral_srgb' is missing"),
    (lambda c: c["random_walk"].update(logt=2.5), "config key 'random_walk.logt'"),
    (lambda c: c["affinity"].update(dims=[64, 128]), "'affinity.levels' [2, 3, 4] and 'affinity.dims' [64, 128]"),
    (lambda c: c["refine"].update(steps=["crf", "densecrf"]), "config key 'refine.steps.1'"),
    (lambda c: c["refine"]["crf_label"].update(gt_prob=1.5), "config key 'refine.crf_label.gt_prob'"),
    (lambda c: c["refine"].update(steps=["saliency", "crf"]), "saliency gives labels, not maps"),
    (lambda c: c["boxes"].update(threshold=5), "config key 'boxes.threshold': 5 is greater than the maximum of 1"),
    (lambda c: c["seeds"].update(sweep=[0.05, 0.6, 0]), "'seeds.sweep' [0.05, 0.6, 0] (dataset 'demo'): expected"),
    (lambda c: c["seeds"].update(sweep=[0.6, 0.05, 0.05]), "'seeds.sweep' [0.6, 0.05, 0.05] (dataset 'demo')"),
    (lambda c: c["boxes"].update(sweep=[0.9, 0.1, 0.1]), "'boxes.sweep' [0.9, 0.1, 0.1] (dataset 'demo')"),
    (lambda c: c["affinity"].update(backbone="resnet_51"),
     "config key 'affinity.backbone' (dataset 'demo'): 'resnet_51' is not a timm model name"),
    (lambda c: c["datasets"]["voc"].setdefault("overrides", {}).update(segmentation={"backbone": "efficientnet"}),
     "config key 'segmentation.backbone' (dataset 'voc'): 'efficientnet' is not a timm model name"),
    (lambda c: c["irn"].update(logt="auto"),
     "config key 'irn.logt' (dataset 'voc'): auto chooses the walk's length on the calibration split"),
    (lambda c: c["irn"].update(walk_bg="high"), "config key 'irn.walk_bg'"),
    (lambda c: c["segmentation"].update(weights="no/such/file.pt"),
     "config key 'segmentation.weights' (dataset 'demo'): 'no/such/file.pt' is neither one of offline, none"),
])
def test_config_errors_name_the_key(edit, message):
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.validate(_broken(edit))
    assert message in str(err.value)


def test_the_timm_names_come_from_timm_and_a_tagged_name_passes(tmp_path, monkeypatch):
    import timm
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cfgmod.timm_model_names() == set(timm.list_models())       # built, then cached
    assert list(tmp_path.glob("wsss-pipeline/timm-*-models.txt"))
    assert cfgmod.timm_model_names() == set(timm.list_models())       # read from the cache
    cfgmod.validate(_broken(lambda c: c["segmentation"].update(backbone="resnet18.a1_in1k")))


def test_overrides_apply_on_top_of_the_defaults():
    merged = cfgmod.stage_config(BASE, "demo", "classifier")
    assert merged["epochs"] == BASE["datasets"]["demo"]["overrides"]["classifier"]["epochs"]
    assert merged["backbone"] == BASE["classifier"]["backbone"]
    assert cfgmod.stage_config(BASE, "voc", "classifier") == BASE["classifier"]
    with pytest.raises(cfgmod.ConfigError, match="dataset 'ade20k'"):
        cfgmod.stage_config(BASE, "ade20k", "classifier")


def test_snakemake_stops_on_a_bad_config_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"classifier": {"epochs": "ten"}}))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "results/demo/seeds/cam.json",
                          "--configfile", str(bad)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "config key 'classifier.epochs'" in run.stdout + run.stderr
