"""The DAG itself: lint, the missing-VOC error, and the whole DAG end to end on a VOC-format fixture."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import DEMO_CLASSES, REPO, listed_voc
from slurm.compare_results import same_h5
from pipeline.evaluation.report import IMAGE_CHECK
from stages._args import add_demo_generator, parser
from stages._settings import add_settings, settings


def snakemake(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def job_counts(stdout: str) -> dict[str, int]:
    """The job-stats table of a Snakemake run: {rule: jobs, ..., 'total': jobs}."""
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stdout, re.M)}


def test_lint_has_no_findings(tmp_path):
    """`snakemake --lint` finds nothing: every rule names its conda environment (envs/), used under
    `--sdm conda` only, and follows Snakemake's conventions."""
    run = snakemake("--lint", cwd=REPO)
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "Lints for" not in out, out[-3000:]


def test_missing_voc_fails_at_once_with_the_layout(tmp_path):
    run = snakemake("-n", "--cores", "8", "results/voc/seeds/cam.json", cwd=tmp_path, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "data/VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt" in out
    assert "JPEGImages/<id>.jpg" in out and "SegmentationClassAug" in out


def test_the_voc_sized_dag_has_one_job_per_stage_and_shard(tmp_path):
    """10,582 listed images and 4 shards: the dry run plans jobs per stage and shard, not per image
    (timing: benchmarks/bench_dag.py)."""
    listed_voc(tmp_path / "data/VOCdevkit/VOC2012")
    run = snakemake("-n", "--cores", "8", "--config", "shards=4", "--", "results/voc/miou.json", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = job_counts(run.stdout)
    # per-image stages: 4 shards each (predict: weak and full networks) + one gather per artifact
    assert jobs == {"check_dataset": 1, "train_classifier": 1, "extract_cams": 4, "evaluate_seeds": 1,
                    "affinity_labels": 4, "train_affinity": 1, "propagate": 4, "refine": 4, "train_segmentation": 2,
                    "predict": 8, "gather": 6, "evaluate_full": 1, "evaluate": 1, "total": 38}


def stage_words(command: str, stage: str) -> list[str]:
    """The arguments a rule's shell command passes to python -m stages.<stage>."""
    return shlex.split(command.split(f"python -m stages.{stage} ", 1)[1].split(" 2>&1")[0])


def stage_settings(command: str, stage: str) -> dict:
    """The settings a rule's shell command passes to a stage, as the stage reads them."""
    p = parser(stage)
    add_settings(p, stage)
    return settings(p.parse_known_args(stage_words(command, stage))[0])


def test_the_demo_cam_chain_file_swaps_the_chain_and_keeps_the_demo_settings(tmp_path):
    """configs/demo-cam-chain.yaml on top of config.yaml: no AffinityNet or random walk in the DAG,
    refine from the CAMs, the clipped loss, and the demo's other segmentation settings kept."""
    run = snakemake("-n", "-p", "--cores", "2", "--configfile", str(REPO / "configs/demo-cam-chain.yaml"),
                    "--", "results/demo/miou.json", cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = job_counts(run.stdout)
    assert "train_affinity" not in jobs and "propagate" not in jobs and jobs["refine"] == 1
    assert "--source cams" in run.stdout
    seg = [stage_settings(line, "train_segmentation") for line in run.stdout.splitlines()
           if "python -m stages.train_segmentation " in line]
    assert len(seg) == 2   # the weak network and the fully-supervised reference
    assert all(c["loss"] == "clipped" and c["clip_start"] == 0.6 and c["feature_level"] == 3
               and c["optimizer"] == "adamw" for c in seg)



def test_the_demo_collar_file_draws_the_collar_and_scales_the_cams(tmp_path):
    """configs/demo-collar.yaml on top of config.yaml: make_demo gets the collar, extract_cams the
    scales x2.5, and the demo's other CAM settings stay."""
    run = snakemake("-n", "-p", "--cores", "2", "--configfile", str(REPO / "configs/demo-collar.yaml"),
                    "--", "results/demo/miou.json", cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    make = next(line for line in run.stdout.splitlines() if "python -m stages.make_demo " in line)
    p = parser("make_demo")
    add_demo_generator(p)
    generator = p.parse_known_args(stage_words(make, "make_demo"))[0].generator
    assert generator["collar_tint"] == 0.5 and generator["collar_reach"] == 2.25 and generator["seed"] == 2026
    cams = [stage_settings(line, "extract_cams") for line in run.stdout.splitlines()
            if "python -m stages.extract_cams " in line]
    assert cams and all(c["scales"] == [2.5, 1.25, 3.75, 5.0] and c["fullycam_levels"] == [1, 2] for c in cams)


def test_the_demo_report_shows_the_published_voc_ladder_beside_its_own(tmp_path):
    """The demo stands in for VOC, so its report gets the PSA/IRN anchors as VOC's does."""
    run = snakemake("-n", "-p", "--cores", "2", "--", "results/demo/report.html", cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = [line for line in run.stdout.splitlines() if "python -m stages.report" in line]
    assert len(report) == 1 and "--voc-anchors" in report[0]

@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory, tiny_voc):
    """The whole DAG, report included, on the tiny VOC-format dataset (run once for this module)."""
    tmp_path = tmp_path_factory.mktemp("dag")
    overrides = {"datasets": {"voc": {
        "root": str(tiny_voc), "classes": DEMO_CLASSES,
        "splits": {"classifier": "train", "classifier_val": "val", "cams": "train", "seeds": "train", "val": "val"},
        "overrides": {"classifier": {"epochs": 1, "batch_size": 4, "crop_size": 48, "workers": 0},
                      "cams": {"scales": [1.0, 0.5]},
                      "affinity": {"levels": [1, 2], "dims": [8, 8], "stride": 4, "crop_size": 48, "epochs": 1,
                                   "batch_size": 4, "workers": 0},
                      "segmentation": {"feature_level": 3, "channels": 32, "epochs": 1, "batch_size": 4,
                                       "crop_size": 48, "workers": 0, "test_scales": [1.0, 0.5]}}}}}
    cfg = tmp_path / "fixture.yaml"
    cfg.write_text(yaml.safe_dump(overrides))
    run = snakemake("--cores", "2", "results/voc/seeds/summary.json", "results/voc/report.html",
                    "--configfile", str(cfg), cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return tmp_path


@pytest.mark.slow
def test_whole_dag_runs_on_a_voc_format_fixture(fixture_run, tiny_voc):
    tmp_path = fixture_run

    summary = json.loads((tmp_path / "results/voc/seeds/summary.json").read_text())
    assert [row["method"] for row in summary["methods"]] == yaml.safe_load(
        (REPO / "config.yaml").read_text())["cams"]["methods"]
    for row in summary["methods"]:
        assert 0.0 <= row["seed_miou"] <= row["best_seed_miou"] <= 1.0
        assert 0.0 <= row["maxboxacc"] <= 1.0 and row["seconds_per_image"] > 0

    seeds = json.loads((tmp_path / "results/voc/seeds/cam.json").read_text())
    assert seeds["images"] == 10 and seeds["split"] == "train"
    assert [row["threshold"] for row in seeds["curve"]][0] == 0.05 and len(seeds["curve"]) == 12
    assert 0.0 <= seeds["miou"] <= 1.0 and set(seeds["iou"]) == set(DEMO_CLASSES)
    ckpt = torch.load(tmp_path / "results/voc/classifier.pt", weights_only=True)
    assert ckpt["meta"]["classes"] == DEMO_CLASSES
    with h5py.File(tmp_path / "results/voc/cams/cam.h5", "r") as f:
        assert len(f) == 10
        for key in f:
            maps, classes = f[key][()], f[key].attrs["classes"]
            assert maps.dtype == np.float16 and maps.shape[0] == len(classes) >= 1
            assert np.allclose(maps.reshape(len(classes), -1).max(1), 1.0, atol=1e-2)
    rw = json.loads((tmp_path / "results/voc/rw/cam.json").read_text())
    assert rw["images"] == 10 and rw["split"] == "train" and 0.0 <= rw["miou"] <= 1.0
    with h5py.File(tmp_path / "results/voc/rw/cam.h5", "r") as rw_maps, \
            h5py.File(tmp_path / "results/voc/cams/cam.h5", "r") as cams:
        for key in cams:   # background first, then the CAM's classes, at the image's size
            assert list(rw_maps[key].attrs["classes"]) == [0, *cams[key].attrs["classes"]]
            assert rw_maps[key].shape == (1 + cams[key].shape[0], *cams[key].shape[1:])
    pseudo = json.loads((tmp_path / "results/voc/pseudo/cam.json").read_text())
    assert [row["step"] for row in pseudo["ladder"]] == ["rw:affinitynet", "rw:affinitynet+pamr", "rw:affinitynet+pamr+crf"]
    assert pseudo["ladder"][0]["miou"] == rw["miou"] and pseudo["skipped"] == []
    with h5py.File(tmp_path / "results/voc/pseudo/cam.h5", "r") as labels:
        assert len(labels) == 10 and all(labels[k].dtype == np.uint8 for k in labels)
    with h5py.File(tmp_path / "results/voc/affinity/cam_labels.h5", "r") as labels:
        assert len(labels) == 10 and all(labels[k].dtype == np.uint8 for k in labels)

    final = json.loads((tmp_path / "results/voc/miou.json").read_text())
    full = json.loads((tmp_path / "results/voc/miou_full.json").read_text())
    assert final["split"] == full["split"] == "val" and final["images"] == full["images"] == 6
    assert final["weak_over_full"] == pytest.approx(final["miou"] / full["miou"])
    stages = [row["stage"] for row in final["ladder"]]
    assert stages == ["classifier", "seeds (cam @ 0.15)", "pseudo-labels: rw:affinitynet", "pseudo-labels: rw:affinitynet+pamr",
                      "pseudo-labels: rw:affinitynet+pamr+crf", "segmentation (weak)", "segmentation (full supervision)"]
    assert final["ladder"][1]["value"] == seeds["miou"] and final["ladder"][-1]["value"] == full["miou"]
    for labels in ("cam", "full"):
        ckpt = torch.load(tmp_path / f"results/voc/segnet/{labels}.pt", weights_only=True)
        assert ckpt["meta"]["classes"] == DEMO_CLASSES
        with h5py.File(tmp_path / f"results/voc/pred/{labels}.h5", "r") as preds:
            assert sorted(preds) == sorted((tiny_voc / "ImageSets/Segmentation/val.txt").read_text().split())
            for key in preds:
                mask = np.asarray(Image.open(tiny_voc / "SegmentationClass" / f"{key}.png"))
                assert preds[key].dtype == np.uint8 and preds[key].shape == mask.shape
    assert not list((tmp_path / "results").rglob("*.partial"))


@pytest.mark.slow
def test_export_rule_writes_one_palette_png_per_image(fixture_run, tiny_voc):
    run = snakemake("--cores", "2", "results/voc/pseudo/cam", "results/voc/pred/full",
                    "--configfile", str(fixture_run / "fixture.yaml"), cwd=fixture_run, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for artifact, split in (("pseudo/cam", "train"), ("pred/full", "val")):
        folder = fixture_run / "results/voc" / artifact
        ids = (tiny_voc / f"ImageSets/Segmentation/{split}.txt").read_text().split()
        assert sorted(p.stem for p in folder.glob("*.png")) == sorted(ids)
        with h5py.File(fixture_run / f"results/voc/{artifact}.h5", "r") as labels:
            for image_id in ids:
                with Image.open(folder / f"{image_id}.png") as png:
                    assert png.mode == "P"
                    np.testing.assert_array_equal(np.asarray(png), labels[image_id][()])


@pytest.mark.slow
def test_three_shards_give_the_artifacts_of_one(fixture_run, tmp_path):
    """The fixture's DAG again from its classifier with shards: 3: the same artifacts and scores."""
    (tmp_path / "results/voc/checks").mkdir(parents=True)
    # the dataset check first: the classifier depends on it, and copy2 keeps both files' times
    for name in ("checks/dataset.json", "classifier.pt", "classifier.json"):
        shutil.copy2(fixture_run / "results/voc" / name, tmp_path / "results/voc" / name)
    args = ["--configfile", str(fixture_run / "fixture.yaml"), "--config", "shards=3", "--", "results/voc/miou.json"]
    dry = snakemake("-n", "--cores", "2", *args, cwd=tmp_path, timeout=120)
    jobs = job_counts(dry.stdout)
    assert [jobs[rule] for rule in ("extract_cams", "affinity_labels", "propagate", "refine")] == [3] * 4
    assert jobs["predict"] == 6 and jobs["gather"] == 6 and "train_classifier" not in jobs, dry.stdout

    run = snakemake("--cores", "2", *args, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    one, three = fixture_run / "results/voc", tmp_path / "results/voc"
    for artifact in ("cams/cam", "affinity/cam_labels", "rw/cam", "pseudo/cam", "pred/cam", "pred/full"):
        problem = same_h5(one / f"{artifact}.h5", three / f"{artifact}.h5")
        assert problem is None, f"{artifact}.h5: {problem}"
        a, b = (json.loads((d / f"{artifact}.json").read_text()) for d in (one, three))
        assert (a["shards"], b["shards"]) == (1, 3)
        for key in ("images", "eval_images", "miou", "iou", "ladder", "fg_fraction"):
            assert a.get(key) == b.get(key), f"{artifact}.json: {key}"
    assert json.loads((one / "miou.json").read_text()) == json.loads((three / "miou.json").read_text())
    assert not [p for p in three.rglob("*.shard-*") if p.suffix != ".log"]   # merged, then removed


def slurm_cluster() -> None:
    """A SLURM cluster answers here (tests/slurm/start_cluster.sh starts one; .ci/run does), or skip
    (fail where WSSS_REQUIRE_SLURM is set)."""
    up = shutil.which("sinfo") and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0
    if not up and os.environ.get("WSSS_REQUIRE_SLURM"):
        pytest.fail("a SLURM cluster is required here (WSSS_REQUIRE_SLURM is set) but sinfo does not answer")
    if not up:
        pytest.skip("needs a SLURM cluster: bash tests/slurm/start_cluster.sh (as root) starts one on this machine")


@pytest.mark.slow
def test_the_slurm_profile_runs_the_dag_through_sbatch(fixture_run, tmp_path):
    """profiles/slurm on a real cluster: every job but the local rules goes through sbatch (GPU rules
    with a GPU, to the gpu partition), sacct has them all completed, and the artifacts equal the
    local run's."""
    slurm_cluster()
    run = snakemake("--workflow-profile", str(REPO / "profiles/slurm"), "--configfile", str(fixture_run / "fixture.yaml"),
                    "--slurm-init-seconds-before-status-checks", "2", "--", "results/voc/miou.json",
                    cwd=tmp_path, timeout=1800)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))
    local = re.findall(r"^localrule (\w+):", out, re.M)   # the Snakefile's localrules run in place
    assert local and set(local) <= {"check_dataset", "gather", "evaluate_full", "evaluate"}, out[-5000:]
    assert len(submitted) + len(local) == int(re.search(r"^total\s+(\d+)$", out, re.M).group(1)), out[-5000:]

    acct = subprocess.run(["sacct", "-X", "-P", "-n", "-j", ",".join(submitted.values()),
                           "--format=JobID,Partition,State,AllocTRES"], capture_output=True, text=True, check=True)
    rows = [line.split("|") for line in acct.stdout.splitlines()]
    assert sorted(r[0] for r in rows) == sorted(submitted.values()) and {r[2] for r in rows} == {"COMPLETED"}
    gpu_jobs = [r for r in rows if "gres/gpu=1" in r[3]]
    # training (classifier, affinity, 2 segmentation), extraction, random walk, 2 predictions
    assert len(gpu_jobs) == 8 and {r[1] for r in gpu_jobs} == {"gpu"}
    assert {r[1] for r in rows if r not in gpu_jobs} == {"cpu"}

    one, slurm = fixture_run / "results/voc", tmp_path / "results/voc"
    for artifact in ("cams/cam", "affinity/cam_labels", "rw/cam", "pseudo/cam", "pred/cam", "pred/full"):
        problem = same_h5(one / f"{artifact}.h5", slurm / f"{artifact}.h5")
        assert problem is None, f"{artifact}.h5: {problem}"
    assert json.loads((one / "miou.json").read_text()) == json.loads((slurm / "miou.json").read_text())


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("WSSS_REQUIRE_BROWSER"):
        pytest.fail("chromium is required here (WSSS_REQUIRE_BROWSER is set) but not on PATH")
    if found is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
    return found


def open_in_browser(page, screenshot=None) -> tuple[str, str]:
    """(the DOM after load, chromium's log with the page's console messages)."""
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    run = subprocess.run([*base, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    if screenshot is not None:
        subprocess.run([*base, "--window-size=1400,2400", f"--screenshot={screenshot}", page.as_uri()],
                       capture_output=True, timeout=120, check=True)
    return run.stdout, run.stderr


def test_the_browser_check_catches_a_broken_image_and_a_console_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
                    '<script>console.error("boom")</script>' + IMAGE_CHECK + "</body></html>")
    dom, log = open_in_browser(page)
    assert 'data-images="1 loaded, 1 broken"' in dom and "CONSOLE" in log and "boom" in log


@pytest.mark.slow
def test_report_renders_in_chromium(fixture_run):
    page = fixture_run / "results/voc/report.html"
    text = page.read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")   # self-contained
    shot = fixture_run / "report.png"
    dom, log = open_in_browser(page, screenshot=shot)
    # 4 train rows (image, truth, 1-3 CAMs, RW, pseudo-label) and 4 val rows (image, truth, 2 predictions)
    images = int(re.search(r'data-images="(\d+) loaded, 0 broken"', dom).group(1))
    assert images >= 4 * 5 + 4 * 4
    assert "CONSOLE" not in log, log
    for heading in ("Ladder", "Per-class IoU", "Seeds: mIoU against the background threshold", "Training curves",
                    "Pseudo-labels (train)", "Predictions (val)"):
        assert f"<h2>{heading}" in dom
    ladder_rows = re.findall(r"<tr><td>(segmentation \(weak\)|seeds \(cam @ 0.15\))</td>", dom)
    assert len(ladder_rows) == 4   # in the ladder and in the per-class table
    assert "59.7 (PSA)" in dom     # the published VOC anchors beside the ladder
    methods = len(json.loads((fixture_run / "results/voc/seeds/summary.json").read_text())["methods"])
    # one chart of seed curves (a line per CAM method), four training curves (a line each)
    assert dom.count("<svg") == 1 + 4 and dom.count("<polyline") == methods + 4
    with Image.open(shot) as png:
        assert png.size == (1400, 2400) and len(np.unique(np.asarray(png.convert("L")))) > 50   # not blank


def test_a_failing_stage_fails_the_rule(tmp_path):
    # The rules pipe each stage into tee; with the shell prefix's pipefail the stage's own error
    # fails the job, not only the missing output found afterwards.
    data = tmp_path / "VOC"
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (data / sub).mkdir(parents=True)
    for split in ("train", "val"):
        (data / "ImageSets/Segmentation" / f"{split}.txt").write_text("img\n")
    for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "xml"), ("SegmentationClass", "png")):
        (data / sub / f"img.{ext}").write_bytes(b"")   # present but unreadable
    cfg = tmp_path / "fixture.yaml"
    one = {"batch_size": 1}   # batches that fit the one-image splits
    cfg.write_text(yaml.safe_dump({"datasets": {"voc": {"root": str(data), "splits": {
        "classifier": "train", "classifier_val": "val", "cams": "train", "seeds": "train", "val": "val"},
        "overrides": {"classifier": one, "affinity": one, "segmentation": one}}}}))
    run = snakemake("--cores", "1", "results/voc/classifier.pt", "--configfile", str(cfg), cwd=tmp_path, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Error in rule check_dataset" in out and "img.jpg" in out
    assert "MissingOutputException" not in out


@pytest.mark.slow
def test_snakemake_report_embeds_the_html_report(fixture_run, tmp_path):
    zipped = tmp_path / "snakemake-report.zip"
    run = snakemake("--cores", "1", "--report", str(zipped), "results/voc/report.html",
                    "--configfile", str(fixture_run / "fixture.yaml"), cwd=fixture_run, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with zipfile.ZipFile(zipped) as archive:
        embedded = [n for n in archive.namelist() if n.endswith("/report.html") and "/data/raw/" in n]
        assert len(embedded) == 1
        assert archive.read(embedded[0]) == (fixture_run / "results/voc/report.html").read_bytes()


def test_the_deit_small_file_plans_the_whole_voc_dag_on_class_token_vits(tmp_path):
    """configs/voc-deit-small.yaml: both ViT classifiers on DeiT-S (timm weights), the class-token one
    with MCTformer/WeakTr's training settings, and the whole chain from weaktr's maps."""
    listed_voc(tmp_path / "data/VOCdevkit/VOC2012")
    run = snakemake("-n", "-p", "--cores", "2", "--configfile", str(REPO / "configs/voc-deit-small.yaml"),
                    "--", "results/voc/miou.json", "results/voc/seeds/summary.json", cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = job_counts(run.stdout)
    assert jobs["train_classifier"] == 3 and jobs["train_segmentation"] == 2 and jobs["evaluate"] == 1
    lines = {stage_words(line, "train_classifier")[stage_words(line, "train_classifier").index("--out") + 1]: line
             for line in run.stdout.splitlines() if "python -m stages.train_classifier " in line}
    mct, vit = (stage_settings(lines[f"results/voc/{net}.pt"], "train_classifier")
                for net in ("classifier_mct", "classifier_vit"))
    for net in (mct, vit):
        assert net["kind"] == "vit" and net["backbone"] == "deit_small_patch16_224" and net["weights"] == "timm"
    assert mct["class_tokens"] == "per_class"
    assert "--class-tokens" not in stage_words(lines["results/voc/classifier_vit.pt"], "train_classifier")
    assert (mct["epochs"], mct["batch_size"], mct["weight_decay"]) == (60, 64, 0.05)
    assert "--classifier results/voc/classifier_mct.pt" in run.stdout and "pseudo/weaktr.h5" in run.stdout
