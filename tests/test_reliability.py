"""Reliability of reads, inputs and exits (`pytest -m faults`): every read of an artifact verified,
an image beyond cams.max_side stopped before it is decoded, one-line errors with a status per kind,
a full disk when a partial is created, a kill after publishing, and the dataset check that runs
before every stage. Stages run through their real command lines on the tiny fixture dataset."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DEMO_CLASSES, REPO
from pipeline.core.store import ArtifactReader, ArtifactWriteError, ArtifactWriter
from slurm.compare_results import same_h5
from stages._main import STATUSES
from test_faults import (CLASSES_JSON, CLASSIFIER, in_child, inputs, per_image_args,  # noqa: F401  (fixture)
                         run_stage, same_training, snakemake, split_ids, tiny_disk, training_args)

pytestmark = pytest.mark.faults

STATUS = {kind: status for _, kind, status in STATUSES}


def stage_cli(module: str, args: list, env: dict | None = None, log: Path | None = None):
    """`python -m stages.<module> args` in a fresh interpreter: (exit status, its output, its peak
    resident memory in bytes, as the kernel accounted it for that process alone)."""
    log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"stage_cli_{os.getpid()}.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", f"stages.{module}", *map(str, args)], cwd=REPO,
                                stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, log.read_text(), usage.ru_maxrss * 1024


def last_line(text: str) -> str:
    """The last line written (progress bars end theirs with a carriage return)."""
    return [line for line in re.split(r"[\r\n]", text) if line.strip()][-1]


def copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- every read verified

def zero_keys(path: Path, keys: list[str]) -> None:
    """Zero the data of keys on disk, their checksum attributes left as they were (bit rot)."""
    with h5py.File(path, "r+") as f:
        for key in keys:
            f[key][...] = 0


def test_zeroed_keys_of_published_cams_stop_the_seed_score_naming_a_key(inputs, tmp_path):
    cams = tmp_path / "cam.h5"
    shutil.copy(inputs["extract_cams"], cams)
    keys = ArtifactReader(cams).keys()
    zero_keys(cams, keys[:3])
    out = tmp_path / "seeds.json"
    rc, log, _ = stage_cli("evaluate_seeds", ["--root", inputs["root"], "--classes", CLASSES_JSON, "--split", "train",
                                              "--cams", cams, "--method", "cam", "--out", out])
    assert rc == STATUS["store"], log[-3000:]
    line = last_line(log)
    assert line.startswith("stages.evaluate_seeds: store error: key ") and "fails its checksum" in line, line
    assert re.search(r"key '(\S+)'", line).group(1) in keys[:3] and str(cams) in line
    assert "rerun stage extract_cams" in line and "Traceback" not in log
    assert not out.exists(), "a score of corrupt maps was written"


def test_a_per_image_stage_reading_a_zeroed_key_stops_naming_it(inputs, tmp_path):
    """affinity_labels reads the CAMs in two worker processes: the same one line, the same status."""
    cams = tmp_path / "cam.h5"
    shutil.copy(inputs["extract_cams"], cams)
    victim = ArtifactReader(cams).keys()[-1]
    zero_keys(cams, [victim])
    out = tmp_path / "labels.h5"
    args = per_image_args("affinity_labels", inputs, out, cams=cams)
    args[args.index("--workers") + 1] = 2
    rc, log, _ = stage_cli("affinity_labels", args)
    assert rc == STATUS["store"], log[-3000:]
    assert f"key '{victim}' of {cams} fails its checksum" in last_line(log) and "Traceback" not in log
    assert not out.exists()


def test_untouched_artifacts_read_as_before_and_are_verified_once_per_key(inputs):
    from pipeline.core import store
    reader = ArtifactReader(inputs["extract_cams"])
    before = store.VERIFY_TIME["keys"]
    for key in reader.keys():
        reader[key]
        reader.attrs(key)
        reader[key]
    assert store.VERIFY_TIME["keys"] - before == len(reader.keys())


@pytest.mark.parametrize("damage", ["data", "data, no table", "table"])
def test_every_read_is_verified_against_the_table_or_the_keys_own_checksum(damage, tmp_path):
    """A finished artifact carries a table of its keys' checksums; one without it (written by other
    means) is verified against each key's own. Either way zeroed data is an error naming the key,
    and a damaged table is an error too."""
    from pipeline.core.store import ArtifactCorrupt
    path = tmp_path / "maps.h5"
    rng = np.random.default_rng(0)
    maps = {f"k{i}": rng.random((2, 8, 8)).astype(np.float16) for i in range(4)}
    with ArtifactWriter(path, meta={"p": 1}) as w:
        for key, value in maps.items():
            w.write(key, value, classes=np.array([1, 2]))
    with h5py.File(path, "r+") as f:
        assert "checksums" in f.attrs and set(f) == set(maps)
        if damage == "table":
            f.attrs["checksums"] = np.frombuffer(b'{"k0": 1', np.uint8)   # JSON no longer parses
        else:
            f["k2"][...] = 0
            if damage == "data, no table":
                del f.attrs["checksums"]
    reader = ArtifactReader(path)
    assert reader.keys() == sorted(maps)
    np.testing.assert_array_equal(reader["k1"], maps["k1"]) if damage != "table" else None
    with pytest.raises(ArtifactCorrupt, match=r"checksum table of .*maps.h5" if damage == "table"
                       else r"key 'k2' of .*maps.h5 fails its checksum .*delete .*maps.h5 and rerun"):
        reader["k2"]
        reader.attrs("k2")


# ---------------------------------------------------------------- image size bound

def test_a_10000_px_jpeg_stops_extract_cams_before_it_is_decoded(inputs, tmp_path):
    """At the default scales (up to 2.0, flipped) a 10000 x 10000 image needs gigabytes per map;
    the stage names the file, its size and the key, and its peak memory stays that of a small run."""
    root = copy_root(inputs["root"], tmp_path / "VOC")
    victim = split_ids(root, "train")[0]
    side = 10000
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    image = np.broadcast_to(ramp[None, :, None], (side, side, 3))
    assert cv2.imwrite(str(root / "JPEGImages" / f"{victim}.jpg"), np.ascontiguousarray(image))
    del image
    out = tmp_path / "cams.h5"
    args = ["--root", root, "--classes", CLASSES_JSON, "--split", "train", "--out", out,
            "--tally", tmp_path / "tally.json", "--device", "cpu", "--threads", 1,
            "--classifier", inputs["dir"] / "classifier.pt", "--method", "cam"]   # config.yaml's scales
    rc, log, peak = stage_cli("extract_cams", args)
    print(f"extract_cams on a {side} x {side} JPEG: exit {rc}, peak memory {peak / 2**30:.2f} GiB")
    assert rc == STATUS["dataset"], log[-3000:]
    line = last_line(log)
    assert f"{victim}.jpg is {side} x {side} px" in line and "cams.max_side" in line, line
    assert peak < 3 * 2**30, f"peak memory {peak / 2**30:.2f} GiB"
    assert not out.exists() and not Path(f"{out}.partial").exists()


# ---------------------------------------------------------------- one-line errors

def test_the_projects_errors_are_one_line_with_a_status_per_kind(inputs, tmp_path):
    assert len(set(STATUS.values())) == len(STATUS) and not {0, 1, 2} & set(STATUS.values())
    args = ["--root", inputs["root"], "--classes", CLASSES_JSON, "--split", "no_such_split", "--cams",
            inputs["extract_cams"], "--method", "cam", "--out", tmp_path / "seeds.json"]
    rc, log, _ = stage_cli("evaluate_seeds", args)
    assert rc == STATUS["dataset"] and "Traceback" not in log, log[-3000:]
    assert log.startswith("stages.evaluate_seeds: dataset error: missing split list "), log[:500]
    # another backbone than the checkpoint's: a checkpoint error
    args = per_image_args("extract_cams", inputs, tmp_path / "cams.h5")
    args[args.index("--backbone") + 1] = "resnet18"
    rc, log, _ = stage_cli("extract_cams", args)
    assert rc == STATUS["checkpoint"] and "Traceback" not in log, log[-3000:]
    assert last_line(log).startswith("stages.extract_cams: checkpoint error: ") and "resnet18" in last_line(log)
    # the debug switch: the traceback, and the same status
    rc, log, _ = stage_cli("extract_cams", args, env={"WSSS_DEBUG": "1"})
    assert rc == STATUS["checkpoint"] and "Traceback (most recent call last)" in log


# ---------------------------------------------------------------- disk full when the partial is created

def test_disk_full_creating_the_partial_is_the_projects_error_and_leaves_nothing(tmp_path):
    path = tmp_path / "maps.h5"
    real = h5py.File.flush

    def full(f):   # the first flush: the one that writes the new file's header and attributes
        raise OSError(errno.ENOSPC, "No space left on device")

    def create():
        h5py.File.flush = full
        try:
            ArtifactWriter(path, meta={"p": 1}, provenance={"x": 1})
        except ArtifactWriteError as exc:
            return str(exc)
        finally:
            h5py.File.flush = real
        return "no error"
    message, log = in_child(create, tmp_path / "create.log")
    assert message is not None and "disk full: cannot create " in message and f"{path}.partial" in message, \
        log[-2000:]
    assert not Path(f"{path}.partial").exists(), "an empty partial was left for the rerun to misread"


@pytest.mark.parametrize("leftover, reason", [("empty", "is empty (its creation was cut short"),
                                              ("header", "holds nothing (its creation was cut short")])
def test_a_partial_whose_creation_was_cut_short_is_logged_as_such(leftover, reason, tmp_path, capfd):
    """A partial left by a creation that failed anyway (the file could not be removed, or a kill): the
    rerun's log line says what it is, not "written by an older version"."""
    path = tmp_path / "maps.h5"
    partial = Path(f"{path}.partial")
    if leftover == "empty":
        partial.write_bytes(b"")
    else:
        h5py.File(partial, "w").close()
    capfd.readouterr()
    with ArtifactWriter(path, meta={"p": 1}, provenance={"x": 1}) as w:
        w.write("k", np.ones((2, 2), np.float32))
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("store: ")]
    assert len(lines) == 1 and reason in lines[0] and "older version" not in lines[0], lines
    assert ArtifactReader(path).keys() == ["k"]


def test_a_really_full_disk_at_creation_gives_the_projects_message(tiny_disk, tmp_path):
    ballast = tiny_disk / "ballast"
    with open(ballast, "wb") as fh:   # every block of the 4 MiB disk
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass

    def create():
        try:
            ArtifactWriter(tiny_disk / "maps.h5", meta={"p": 1}, provenance={"x": 1}).close()
        except ArtifactWriteError as exc:
            return str(exc)
        return "no error"
    message, log = in_child(create, tmp_path / "create.log")
    assert message is not None and "disk full: cannot create " in message, log[-2000:]
    assert not (tiny_disk / "maps.h5.partial").exists()
    ballast.unlink()


# ---------------------------------------------------------------- the publish window

def test_a_kill_after_publishing_loses_no_finished_work(inputs, tmp_path, monkeypatch):
    """Killed after its output is published but before it exits, the stage's output is deleted by
    Snakemake as a failed job's; the rerun computes no image again and ends as an uninterrupted run."""
    stage = "extract_cams"
    whole = tmp_path / "whole.h5"
    run_stage(stage, per_image_args(stage, inputs, whole), tmp_path / "whole.log")
    assert not Path(f"{whole}.partial").exists(), "a stage that ended well left its receipt behind"
    import stages._args
    real = stages._args.write_json

    def killed_at_tally(path, data):   # the tally is written after the artifact is published
        os.kill(os.getpid(), signal.SIGKILL)
    monkeypatch.setattr(stages._args, "write_json", killed_at_tally)
    out = tmp_path / "out.h5"
    assert run_stage(stage, per_image_args(stage, inputs, out), tmp_path / "cut.log")["killed"]
    assert out.exists(), "the kill came before publishing: the test would prove nothing"
    out.unlink()   # what Snakemake does with a failed job's output
    monkeypatch.setattr(stages._args, "write_json", real)
    run_stage(stage, per_image_args(stage, inputs, out), tmp_path / "rerun.log")
    tally = json.loads(out.with_suffix(".tally.json").read_text())
    assert tally["computed_now"] == 0 and tally["images"] == len(split_ids(inputs["root"], "train")), tally
    assert same_h5(whole, out) is None
    assert not Path(f"{out}.partial").exists()


def test_a_training_killed_after_publishing_resumes_its_last_state(inputs, tmp_path, monkeypatch):
    """The same window for a training stage: killed after the checkpoint is published, while the report
    is written; Snakemake deletes both, and the rerun trains no epoch again."""
    stage = "train_classifier"
    whole = tmp_path / "whole.pt"
    run_stage(stage, training_args(stage, inputs, whole), tmp_path / "whole.log", training=True)
    assert not Path(f"{whole}.partial").exists()
    import stages._args
    real = stages._args.write_json

    def killed_at_report(path, data):
        os.kill(os.getpid(), signal.SIGKILL)
    monkeypatch.setattr(stages._args, "write_json", killed_at_report)
    out = tmp_path / "out.pt"
    assert run_stage(stage, training_args(stage, inputs, out), tmp_path / "cut.log", training=True)["killed"]
    assert out.exists(), "the kill came before publishing: the test would prove nothing"
    out.unlink()   # what Snakemake does with a failed job's output
    monkeypatch.setattr(stages._args, "write_json", real)
    rerun = run_stage(stage, training_args(stage, inputs, out), tmp_path / "rerun.log", training=True)
    epochs = CLASSIFIER["epochs"]
    assert f"after epoch {epochs}" in rerun["log"] and f"epoch {epochs}/{epochs}" not in rerun["log"], rerun["log"][-2000:]
    assert same_training(whole, out) is None
    assert not Path(f"{out}.partial").exists()


# ---------------------------------------------------------------- the dataset check

def check_args(root: Path, tmp_path: Path, **change) -> list:
    values = {"splits": {"classifier": "train", "classifier_val": "val", "cams": "train", "seeds": "train",
                         "val": "val"},
              "max_side": 1024, "batches": {"classifier": ["classifier", 4]}, "weights": {}}
    values.update(change)
    return ["--root", root, "--classes", CLASSES_JSON, "--kind", "voc", "--splits", json.dumps(values["splits"]),
            "--mask-roles", "seeds", "val", "--max-side", values["max_side"], "--batches", json.dumps(values["batches"]),
            "--weights", json.dumps(values["weights"]), "--cache", tmp_path / "passed.json",
            "--out", tmp_path / "check.json"]


def run_check(args, capsys) -> tuple[int, str]:
    from stages.check_dataset import main
    capsys.readouterr()
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def _damage(root: Path, what: str) -> str:
    """Damage one file of the dataset; returns what the message must name."""
    image_id = split_ids(root, "train")[1]
    jpeg, xml = root / "JPEGImages" / f"{image_id}.jpg", root / "Annotations" / f"{image_id}.xml"
    if what == "truncated jpeg":
        data = jpeg.read_bytes()
        jpeg.write_bytes(data[:len(data) // 2])
        return f"image {jpeg} does not decode"
    if what == "zero-byte jpeg":
        jpeg.write_bytes(b"")
        return f"{jpeg} is not a readable image"
    if what == "mask out of range":
        mask = root / "SegmentationClass" / f"{image_id}.png"
        values = np.array(Image.open(mask))
        values[0, 0] = len(DEMO_CLASSES) + 3
        Image.fromarray(values, mode="L").save(mask)
        return f"mask {mask} holds class index {len(DEMO_CLASSES) + 3}"
    if what == "unknown class":
        xml.write_text(re.sub(r"<name>[^<]*</name>", "<name>unicorn</name>", xml.read_text(), count=1))
        return f"annotation {xml} names class 'unicorn'"
    if what == "object without box":
        xml.write_text(re.sub(r"<bndbox>.*?</bndbox>", "", xml.read_text(), count=1, flags=re.S))
        return f"annotation {xml}: object"
    if what == "too large":
        Image.new("RGB", (1500, 40)).save(jpeg, "JPEG")
        return f"image {jpeg} is 1500 x 40 px"
    raise ValueError(what)


@pytest.mark.parametrize("what", ["truncated jpeg", "zero-byte jpeg", "mask out of range", "unknown class",
                                  "object without box", "too large"])
def test_the_dataset_check_names_each_bad_input(what, tiny_voc, tmp_path, capsys):
    root = copy_root(tiny_voc, tmp_path / "VOC")
    expected = _damage(root, what)
    rc, err = run_check(check_args(root, tmp_path), capsys)
    assert rc == STATUS["dataset"], err
    assert last_line(err).startswith("stages.check_dataset: dataset error: ") and expected in last_line(err), err
    assert "Traceback" not in err and not (tmp_path / "check.json").exists()


def test_the_dataset_check_catches_a_batch_larger_than_its_split(tiny_voc, tmp_path, capsys):
    n = len(split_ids(tiny_voc, "train"))
    rc, err = run_check(check_args(tiny_voc, tmp_path, batches={"segmentation": ["cams", n + 1]}), capsys)
    assert rc == STATUS["dataset"] and f"split 'train' (cams) has {n} images, fewer than segmentation's " \
        f"batch_size {n + 1}" in err, err


def test_the_dataset_check_catches_another_backbones_weights(tiny_voc, tmp_path, capsys):
    import timm
    other = tmp_path / "resnet18.pt"
    torch.save(timm.create_model("resnet18", pretrained=False, features_only=True).state_dict(), other)
    weights = {"classifier": {**CLASSIFIER, "weights": str(other)}}
    rc, err = run_check(check_args(tiny_voc, tmp_path, weights=weights), capsys)
    assert rc == STATUS["checkpoint"] and f"backbone checkpoint {other}" in err and "another backbone" in err, err


def test_the_dataset_check_reads_only_what_changed(tiny_voc, tmp_path, capsys):
    root = copy_root(tiny_voc, tmp_path / "VOC")
    total = len(set(split_ids(root, "train")) | set(split_ids(root, "val")))
    reads = []
    for step in range(3):
        if step == 2:   # one image rewritten: only it is read again
            jpeg = root / "JPEGImages" / f"{split_ids(root, 'val')[0]}.jpg"
            jpeg.write_bytes(jpeg.read_bytes())
            os.utime(jpeg, ns=(jpeg.stat().st_atime_ns, jpeg.stat().st_mtime_ns + 10**9))
        rc, err = run_check(check_args(root, tmp_path), capsys)
        assert rc == 0, err
        reads.append(json.loads((tmp_path / "check.json").read_text())["read_now"])
    assert reads == [total, 0, 1]


def tiny_config(work: Path, root: Path, **overrides) -> Path:
    cfg = work / "cfg.yaml"
    sections = {"classifier": {"epochs": 1, "batch_size": 4, "crop_size": 32, "workers": 0, "weights": "none"},
                **overrides}
    cfg.write_text(json.dumps({"device": "cpu", "threads": 1, "datasets": {"tiny": {
        "kind": "voc", "root": str(root), "classes": DEMO_CLASSES, "overrides": sections,
        "splits": {"classifier": "train", "classifier_val": "val", "cams": "train", "seeds": "train", "val": "val"}}}}))
    return cfg


def test_a_bad_image_stops_the_dag_before_the_classifier_trains(tiny_voc, tmp_path):
    work, root = tmp_path / "work", copy_root(tiny_voc, tmp_path / "VOC")
    work.mkdir()
    expected = _damage(root, "truncated jpeg")
    run = snakemake("--cores", "1", "--configfile", str(tiny_config(work, root)), "--", "results/tiny/classifier.pt",
                    cwd=work, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode != 0
    log = (work / "results/tiny/logs/check_dataset.log").read_text()
    assert last_line(log).startswith("stages.check_dataset: dataset error: ") and expected in log, log[-2000:]
    assert not (work / "results/tiny/logs/train_classifier.log").exists(), "the classifier started"
    assert not (work / "results/tiny/classifier.pt").exists()


@pytest.mark.parametrize("problem", ["batch", "weights"])
def test_a_batch_larger_than_its_split_or_foreign_weights_stop_the_dry_run(problem, tiny_voc, tmp_path):
    """Both are known while the DAG is built: `snakemake -n` already fails, naming the key or the file."""
    work = tmp_path / "work"
    work.mkdir()
    n = len(split_ids(tiny_voc, "train"))
    if problem == "batch":
        overrides = {"segmentation": {"batch_size": n + 1}}
        expected = f"split 'train' (cams) has {n} images, fewer than segmentation's batch_size {n + 1}"
    else:
        import timm
        other = tmp_path / "resnet18.pt"
        torch.save(timm.create_model("resnet18", pretrained=False, features_only=True).state_dict(), other)
        overrides = {"affinity": {"weights": str(other)}}
        expected = f"backbone checkpoint {other} lacks key"
    run = snakemake("-n", "--cores", "1", "--configfile", str(tiny_config(work, tiny_voc, **overrides)), "--",
                    "results/tiny/miou.json", cwd=work, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert run.returncode != 0 and expected in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]
