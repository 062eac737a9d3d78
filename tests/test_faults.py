"""Fault injection: `pytest -m faults`. Also part of the default run, so every case is small:
the tiny fixture dataset, untrained tiny networks, one thread.

Each stage runs through its real command line (stages/*.py) in a forked child, so one run costs
milliseconds of start-up instead of a fresh interpreter importing torch. A child can be killed with
SIGKILL (kill -9: no cleanup, no atexit) at the k-th *event* of its run, k drawn by a seeded
generator: for the per-image stages an event is an HDF5 dataset created or the moment before or
after a flush (inside a key's write, between data and marker, between keys), for the training
stages a training step or the middle of a checkpoint save (half the bytes written, then the kill).
Then the stage is rerun, and its output must equal an uninterrupted run's, every image once.
"""
from __future__ import annotations

import errno
import html
import io
import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from conftest import DEMO_CLASSES, REPO, TINY
from pipeline.core.store import ArtifactReader, ArtifactWriteError, ArtifactWriter, merge_artifacts
from pipeline.data import demo
from pipeline.models.affinity_net import AffinityNet, save_affinity_net
from pipeline.models.backbone import normalisation
from pipeline.models.classifier import build_classifier, save_checkpoint
from pipeline.models.segnet import build_segnet, save_segnet
from slurm.compare_results import same_checkpoint, same_h5

pytestmark = pytest.mark.faults

KILLS_PER_STAGE = 5
BACKBONE = "tf_efficientnet_lite0"
CLASSES_JSON = json.dumps(DEMO_CLASSES)
CRF = {"iterations": 2, "gaussian_sxy": 3, "gaussian_compat": 3, "bilateral_sxy": 50, "bilateral_srgb": 5,
       "bilateral_compat": 10}
TRAIN = {"optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9, "poly_power": 0.9, "epochs": 2,
         "batch_size": 4, "crop_size": 48, "scale_range": [0.8, 1.0], "workers": 0}
CLASSIFIER = {"backbone": BACKBONE, "weights": "none", "pooling": "gap", "output_stride": 16,
              "feature_level": "last", **TRAIN}
AFFINITY = {"backbone": BACKBONE, "weights": "none", "output_stride": 16, "levels": [1, 2], "dims": [8, 16],
            "stride": 4, "radius": 3, **TRAIN}
SEGMENTATION = {"backbone": BACKBONE, "weights": "none", "feature_level": "last", "head": "aspp",
                "output_stride": 16, "channels": 32, "scale_attention": False, "attention_scales": [1.0, 0.5],
                "loss": "ce", "clip_start": 0.2, "clip_window": 5, **TRAIN}
REFINE = {"source": "rw", "steps": ["pamr", "crf"], "crf_mode": "label", "crf_softmax": CRF,
          "crf_label": {"gt_prob": 0.7, **CRF}, "pamr": {"iterations": 2, "dilations": [1, 2], "temperature": 0.1},
          "saliency": {"dir": None, "percentile": 90}}


# ---------------------------------------------------------------- running a stage in a forked child

class Events:
    """Counts the events of a run in this (child) process and SIGKILLs it at event `kill_at`."""

    def __init__(self, kill_at: int | None):
        self.kill_at, self.count, self.saves = kill_at, 0, []

    def tick(self):
        self.count += 1
        if self.count == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def install_store_events(self):
        flush, create = h5py.File.flush, h5py.Group.create_dataset

        def counted_flush(f):
            self.tick()
            flush(f)
            self.tick()

        def counted_create(group, *args, **kwargs):
            ds = create(group, *args, **kwargs)
            self.tick()
            return ds
        h5py.File.flush, h5py.Group.create_dataset = counted_flush, counted_create

    def install_training_events(self):
        import pipeline.core.training as training
        poly_lr, save = training.poly_lr, torch.save

        def counted_step(*args):
            self.tick()
            return poly_lr(*args)

        def torn_save(obj, path):
            if self.count + 1 == self.kill_at:   # this save is the kill point: leave half a file behind
                buffer = io.BytesIO()
                save(obj, buffer)
                Path(path).write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
            self.tick()
            self.saves.append(self.count)
            save(obj, path)
        training.poly_lr, torch.save = counted_step, torn_save


def fork_safely() -> int:
    """os.fork() with OpenCV's thread pool shut down first. Earlier tests in this process leave
    the pool's threads waiting on a condition variable; a child only inherits the variable, and
    its first cv2.setNumThreads (every stage calls it) then blocks forever destroying it."""
    cv2.setNumThreads(1)
    return os.fork()


def run_stage(module: str, args: list, log: Path, kill_at: int | None = None, training: bool = False) -> dict:
    """Run `python -m stages.<module> args` in a forked child; returns {'killed', 'events', 'saves', 'log'}:
    the events of a run to its end, and at which of them a checkpoint was saved."""
    events_file = log.with_suffix(".events")
    pid = fork_safely()
    if pid == 0:   # child: never returns
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(fd, "w", buffering=1, closefd=False)   # not pytest's capture
            torch.set_num_threads(1)
            events = Events(kill_at)
            events.install_training_events() if training else events.install_store_events()
            sys.argv = [module, *map(str, args)]
            runpy.run_module(f"stages.{module}", run_name="__main__", alter_sys=True)
            events_file.write_text(json.dumps({"count": events.count, "saves": events.saves}))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:   # noqa: BLE001  the traceback goes to the log
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    text = log.read_text()
    if not killed and os.waitstatus_to_exitcode(status) != 0:
        raise AssertionError(f"stages.{module} failed:\n{text[-3000:]}")
    events = json.loads(events_file.read_text()) if events_file.exists() else {"count": None, "saves": None}
    return {"killed": killed, "events": events["count"], "saves": events["saves"], "log": text}


def kill_points(total: int, stage: str) -> list[int]:
    rng = np.random.default_rng(zlib.crc32(stage.encode()))
    return sorted(int(k) for k in rng.choice(np.arange(1, total + 1), size=min(KILLS_PER_STAGE, total),
                                             replace=False))


# ---------------------------------------------------------------- inputs: tiny dataset and networks

@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_voc):
    """Untrained tiny networks (an artifact's equality does not need a trained one) and the
    finished artifacts each per-image stage reads, from uninterrupted runs."""
    d = tmp_path_factory.mktemp("fault_inputs")
    root = d / "VOC"
    shutil.copytree(tiny_voc, root)
    # scored images: 3 of train, so that refine (which recomputes what it scores) resumes the rest
    (root / "ImageSets/Segmentation/train_eval.txt").write_text("\n".join(split_ids(root, "train")[:3]) + "\n")
    mean, std = normalisation(BACKBONE)
    torch.manual_seed(0)
    save_checkpoint(build_classifier(CLASSIFIER, len(DEMO_CLASSES) - 1, "none"), d / "classifier.pt",
                    classes=DEMO_CLASSES, mean=list(mean), std=list(std), val_map=0.0)
    torch.manual_seed(1)
    save_checkpoint(build_classifier(CLASSIFIER, len(DEMO_CLASSES) - 1, "none"), d / "classifier_b.pt",
                    classes=DEMO_CLASSES, mean=list(mean), std=list(std), val_map=0.0)
    save_affinity_net(AffinityNet(BACKBONE, AFFINITY["levels"], AFFINITY["dims"], AFFINITY["stride"], 16, "none"),
                      d / "affinity.pt", mean=list(mean), std=list(std), radius=AFFINITY["radius"])
    for name, seed in (("segnet", 2), ("segnet_b", 3)):
        torch.manual_seed(seed)
        save_segnet(build_segnet(SEGMENTATION, len(DEMO_CLASSES)), d / f"{name}.pt", classes=DEMO_CLASSES,
                    mean=list(mean), std=list(std), labels="ground truth")
    paths = {"dir": d, "root": root}
    for stage in ("extract_cams", "affinity_labels", "propagate", "refine"):   # each reads the one before
        out = d / f"{stage}.h5"
        run_stage(stage, per_image_args(stage, paths, out), d / f"{stage}.log")
        paths[stage] = out
    return paths


def per_image_args(stage: str, p: dict, out: Path, **swap) -> list:
    """The stage's command line on the tiny dataset (as the Snakefile writes it); `swap` replaces an input."""
    d = p["dir"]
    common = ["--root", p["root"], "--classes", CLASSES_JSON, "--split", "train", "--out", out,
              "--tally", out.with_suffix(".tally.json")]
    evals = ["--eval-split", "train_eval"]
    runtime = ["--device", "cpu", "--threads", 1]
    if stage == "extract_cams":
        return [*common, *runtime, "--classifier", swap.get("classifier", d / "classifier.pt"), "--backbone", BACKBONE,
                "--method", "cam", "--cfg", json.dumps({"scales": [1.0], "flip": False, "fullycam_levels": []})]
    if stage == "affinity_labels":
        return [*common, *evals, "--cams", swap.get("cams", p.get("extract_cams")), "--workers", 1,
                "--cfg", json.dumps({"alpha_low": 4, "alpha_high": 32, "crf": CRF})]
    if stage == "propagate":
        return [*common, *evals, *runtime, "--cams", swap.get("cams", p.get("extract_cams")),
                "--affinity", d / "affinity.pt", "--backbone", BACKBONE, "--method", "cam",
                "--cfg", json.dumps({"radius": 3, "beta": 8, "logt": 3, "alpha": 16})]
    if stage == "refine":
        return [*common, *evals, "--maps", swap.get("maps", p.get("propagate")), "--source", "rw", "--method", "cam",
                "--bg-threshold", 0.15, "--workers", 1, "--cfg", json.dumps(REFINE)]
    if stage == "predict":
        return [*common[:5], "val", *common[6:], *runtime, "--model", swap.get("model", d / "segnet.pt"),
                "--backbone", BACKBONE, "--cfg", json.dumps({"test_scales": [1.0], "test_flip": False,
                                                             "test_crf": False, "crf": CRF})]
    raise ValueError(stage)


def split_ids(root: Path, split: str) -> list[str]:
    return (root / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()


# ---------------------------------------------------------------- kill -9 and rerun: per-image stages

def complete_keys(partial: Path) -> int:
    """Keys a killed run left marked complete (0 for a missing or unreadable file)."""
    try:
        with h5py.File(partial, "r", locking=False) as f:   # a killed run's loader worker may hold the lock
            return sum(f[k].attrs.get("_complete", 0) == 1 for k in f)
    except OSError:
        return 0


@pytest.mark.parametrize("stage", ["extract_cams", "affinity_labels", "propagate", "refine", "predict"])
def test_per_image_stage_killed_at_random_points_ends_as_an_uninterrupted_run(stage, inputs, tmp_path):
    whole = tmp_path / "whole.h5"
    total = run_stage(stage, per_image_args(stage, inputs, whole), tmp_path / "whole.log")["events"]
    ids = split_ids(inputs["root"], "val" if stage == "predict" else "train")
    resumed = []
    for n, k in enumerate(kill_points(total, stage)):
        out = tmp_path / f"cut{n}.h5"
        assert run_stage(stage, per_image_args(stage, inputs, out), tmp_path / f"cut{n}.log", kill_at=k)["killed"]
        assert not out.exists(), f"kill at event {k} of {total}: published a half-done artifact"
        resumed.append(complete_keys(Path(f"{out}.partial")))
        rerun = run_stage(stage, per_image_args(stage, inputs, out), tmp_path / f"rerun{n}.log")
        problem = same_h5(whole, out)
        assert problem is None, f"kill at event {k} of {total}: {problem}\n{rerun['log'][-2000:]}"
        keys = ArtifactReader(out).keys()
        assert keys == sorted(ids), f"kill at event {k}: images lost or foreign"   # HDF5 names are unique
        tally = json.loads(out.with_suffix(".tally.json").read_text())
        assert tally["images"] == len(ids)
        ArtifactReader(out).verify()
    assert any(resumed), "no kill point left a key to resume: the test would prove nothing"


@pytest.mark.parametrize("stage, swap, name", [
    ("extract_cams", "classifier", "classifier"),
    ("propagate", "cams", "cams"),
    ("predict", "model", "model"),
])
def test_a_partial_of_changed_inputs_is_recomputed_and_the_log_says_why(stage, swap, name, inputs, tmp_path):
    """Killed mid-run, then an input changes (another classifier; other CAMs; the other network's
    checkpoint under the same name): the rerun must not resume the old keys."""
    other = {"classifier": inputs["dir"] / "classifier_b.pt", "model": inputs["dir"] / "segnet_b.pt"}
    if swap == "cams":   # other CAMs: the first run's, but one map changed
        other["cams"] = tmp_path / "cams_b.h5"
        source = ArtifactReader(inputs["extract_cams"])
        with ArtifactWriter(other["cams"], meta=source.meta) as w:
            for key in source.keys():
                w.write(key, source[key] * (0.5 if key == source.keys()[0] else 1.0), **source.attrs(key))
    out = tmp_path / "out.h5"
    total = run_stage(stage, per_image_args(stage, inputs, tmp_path / "probe.h5"), tmp_path / "probe.log")["events"]
    assert run_stage(stage, per_image_args(stage, inputs, out), tmp_path / "cut.log", kill_at=total // 2)["killed"]
    assert (tmp_path / "out.h5.partial").exists()
    rerun = run_stage(stage, per_image_args(stage, inputs, out, **{swap: other[swap]}), tmp_path / "rerun.log")
    lines = [line for line in rerun["log"].splitlines() if line.startswith("store: ")]
    assert len(lines) == 1 and f"input {name} (" in lines[0] and "moved it to" in lines[0], rerun["log"][-2000:]
    tally = json.loads(out.with_suffix(".tally.json").read_text())
    assert tally["computed_now"] == tally["images"]
    fresh = tmp_path / "fresh.h5"
    run_stage(stage, per_image_args(stage, inputs, fresh, **{swap: other[swap]}), tmp_path / "fresh.log")
    assert same_h5(fresh, out) is None


# ---------------------------------------------------------------- kill -9 and rerun: training stages

def training_args(stage: str, p: dict, out: Path, seed: int = 0, labels: Path | None = None) -> list:
    common = ["--root", p["root"], "--classes", CLASSES_JSON, "--device", "cpu", "--threads", 1, "--seed", seed,
              "--out", out, "--report", out.with_suffix(".json")]
    if stage == "train_classifier":
        return [*common, "--train-split", "train", "--val-split", "val", "--cfg", json.dumps(CLASSIFIER)]
    if stage == "train_affinity":
        return [*common, "--split", "train", "--labels", labels or p["affinity_labels"], "--cfg", json.dumps(AFFINITY)]
    return [*common, "--split", "train", "--labels", labels or p["refine"], "--cfg", json.dumps(SEGMENTATION)]


def same_training(a: Path, b: Path) -> str | None:
    meta_a, meta_b = (torch.load(p, weights_only=True)["meta"] for p in (a, b))
    history_a, history_b = (json.loads(p.with_suffix(".json").read_text())["history"] for p in (a, b))
    if meta_a != meta_b or history_a != history_b:
        return f"metadata or loss history differ: {history_a} vs {history_b}"
    return same_checkpoint(a, b)


@pytest.mark.parametrize("stage", ["train_classifier", "train_affinity", "train_segmentation"])
def test_training_killed_at_random_points_ends_as_an_uninterrupted_run(stage, inputs, tmp_path):
    whole = tmp_path / "whole.pt"
    total = run_stage(stage, training_args(stage, inputs, whole), tmp_path / "whole.log", training=True)["events"]
    resumed = 0
    for n, k in enumerate(kill_points(total, stage)):
        out = tmp_path / f"cut{n}.pt"
        assert run_stage(stage, training_args(stage, inputs, out), tmp_path / f"cut{n}.log", kill_at=k,
                         training=True)["killed"]
        rerun = run_stage(stage, training_args(stage, inputs, out), tmp_path / f"rerun{n}.log", training=True)
        problem = same_training(whole, out)
        assert problem is None, f"kill at event {k} of {total}: {problem}\n{rerun['log'][-2000:]}"
        assert not Path(f"{out}.partial").exists()
        resumed += "resuming" in rerun["log"]   # (a kill before the first save leaves nothing to resume)
    assert resumed, "no kill point left a state to resume: the test would prove nothing"


def test_a_truncated_training_partial_is_moved_aside_and_the_rerun_trains(inputs, tmp_path):
    stage = "train_classifier"
    whole = tmp_path / "whole.pt"
    saves = run_stage(stage, training_args(stage, inputs, whole), tmp_path / "whole.log", training=True)["saves"]
    out = tmp_path / "cut.pt"
    # killed in the second epoch: the state after the first is on disk
    assert run_stage(stage, training_args(stage, inputs, out), tmp_path / "cut.log", kill_at=saves[0] + 1,
                     training=True)["killed"]
    partial = Path(f"{out}.partial")
    data = partial.read_bytes()
    partial.write_bytes(data[:len(data) // 3])   # as a disk that filled up under an in-place write would
    rerun = run_stage(stage, training_args(stage, inputs, out), tmp_path / "rerun.log", training=True)
    lines = [line for line in rerun["log"].splitlines() if line.startswith("store: ")]
    assert len(lines) == 1 and f"training state {partial} cannot be loaded" in lines[0], rerun["log"][-2000:]
    aside = re.search(r"moved it to (\S+);", lines[0]).group(1)
    assert Path(aside).read_bytes() == data[:len(data) // 3] and "resuming" not in rerun["log"]
    assert same_training(whole, out) is None


@pytest.mark.parametrize("stage, change, expected", [
    ("train_classifier", "seed", "seed (0 -> 1)"),
    ("train_affinity", "labels", "labels ("),
])
def test_a_training_state_of_other_inputs_is_not_resumed(stage, change, expected, inputs, tmp_path):
    kwargs = {"seed": 1} if change == "seed" else {"labels": tmp_path / "labels_b.h5"}
    if change == "labels":   # the same labels but one map rewritten
        source = ArtifactReader(inputs["affinity_labels"])
        with ArtifactWriter(kwargs["labels"], meta=source.meta) as w:
            for i, key in enumerate(source.keys()):
                w.write(key, np.where(source[key] == 255, 0, source[key]) if i == 0 else source[key])
    fresh = tmp_path / "fresh.pt"   # an uninterrupted run on the changed input
    saves = run_stage(stage, training_args(stage, inputs, fresh, **kwargs), tmp_path / "fresh.log",
                      training=True)["saves"]
    out = tmp_path / "cut.pt"   # killed in the second epoch on the old input, rerun on the new one
    assert run_stage(stage, training_args(stage, inputs, out), tmp_path / "cut.log", kill_at=saves[0] + 1,
                     training=True)["killed"]
    assert Path(f"{out}.partial").exists()
    rerun = run_stage(stage, training_args(stage, inputs, out, **kwargs), tmp_path / "rerun.log", training=True)
    lines = [line for line in rerun["log"].splitlines() if line.startswith("store: ")]
    assert len(lines) == 1 and "saved for other inputs or settings" in lines[0] and expected in lines[0], lines
    assert "resuming" not in rerun["log"]
    assert same_training(fresh, out) is None


# ---------------------------------------------------------------- disk full, corrupt data

def _maps(i: int, side: int = 40) -> np.ndarray:
    """Incompressible maps (random), exactly representable in float16."""
    return np.random.default_rng(i).integers(0, 1024, size=(3, side, side)).astype(np.float16) / 1024


def _write_until_failure(path: Path, n: int, side: int = 40) -> int:
    """Writes keys 0..n-1 until a write fails; returns how many are done (n if none failed)."""
    writer = ArtifactWriter(path, meta={"p": 1}, provenance={"x": 1})
    try:
        for i in range(n):
            if f"k{i:03d}" not in writer.done_keys():
                writer.write(f"k{i:03d}", _maps(i, side))
    except ArtifactWriteError as exc:
        assert str(path) + ".partial" in str(exc), str(exc)
        print(exc, file=sys.stderr)
        writer.close()
        return len(writer.done_keys())
    writer.finish()
    return n


def _check_published(path: Path, n: int, side: int = 40):
    reader = ArtifactReader(path)
    assert reader.keys() == [f"k{i:03d}" for i in range(n)]
    reader.verify()
    for i in range(n):
        np.testing.assert_array_equal(reader[f"k{i:03d}"], _maps(i, side))


def in_child(fn, log: Path):
    """fn() in a forked child (HDF5 may crash after a failed write: the test must not); returns
    (its result or None if it died, its stderr)."""
    result = log.with_suffix(".result")
    result.unlink(missing_ok=True)
    pid = fork_safely()
    if pid == 0:
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            sys.stderr = open(fd, "w", buffering=1, closefd=False)   # not pytest's capture
            result.write_text(json.dumps(fn()))
            code = 0
        except BaseException:   # noqa: BLE001
            import traceback
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.waitpid(pid, 0)
    return (json.loads(result.read_text()) if result.exists() else None), log.read_text()


@pytest.mark.parametrize("failing_call, done", [(7, 2), (8, 3)])
def test_a_failing_flush_leaves_no_completed_key(failing_call, done, tmp_path, monkeypatch):
    """The writer's flushes (1 on opening, then 2 per key: before and after the marker) report
    ENOSPC at call 7 (the third key's flush after its marker) or 8 (the fourth key's before it):
    that key is not done, the error names the file, and the rerun (space freed) computes it."""
    real, calls = h5py.File.flush, {"n": 0}

    def full_disk(f):
        calls["n"] += 1
        if calls["n"] == failing_call:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f)

    def first_run():
        h5py.File.flush = full_disk
        return _write_until_failure(tmp_path / "maps.h5", 8)
    assert in_child(first_run, tmp_path / "first.log")[0] == done
    log = tmp_path / "rerun.log"
    assert in_child(lambda: _write_until_failure(tmp_path / "maps.h5", 8), log)[0] == 8
    _check_published(tmp_path / "maps.h5", 8)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MiB tmpfs (root only): writes there fail with a real ENOSPC."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root; test_a_failing_flush_leaves_no_completed_key covers the logic")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("inside_hdf5", [False, True])
def test_a_full_disk_publishes_no_bad_key_and_the_rerun_completes(inside_hdf5, tiny_disk, tmp_path, monkeypatch):
    """16 keys of ~100 KB stored: more than the disk holds beside a 3 MiB ballast. The writer
    refuses a key the disk cannot hold (free space checked first); with that check off, HDF5 itself
    fails mid-write, and the rerun recovers the keys that verify from the damaged file."""
    # the check's margin scaled to this disk (1 MiB by default); off: never refuses
    monkeypatch.setattr("pipeline.core.store.SPACE_MARGIN", -(1 << 40) if inside_hdf5 else 1 << 16)
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(os.urandom(3 << 20))
    path, n, side = tiny_disk / "maps.h5", 16, 160
    written, first_log = in_child(lambda: _write_until_failure(path, n, side), tmp_path / "first.log")
    assert written is None or 0 < written < n, first_log[-2000:]
    assert "No space left on device" in first_log or "disk full" in first_log
    ballast.unlink()   # space freed
    monkeypatch.setattr("pipeline.core.store.SPACE_MARGIN", 1 << 16)
    rerun, rerun_log = in_child(lambda: _write_until_failure(path, n, side), tmp_path / "rerun.log")
    assert rerun == n, rerun_log[-2000:]
    _check_published(path, n, side)
    # resumed as is, or (the file damaged) moved aside with the keys that verify recovered
    lines = [line for line in rerun_log.splitlines() if line.startswith("store: ")]
    assert len(lines) <= 1 and all("recovered the" in line for line in lines), lines


def _flip_chunk_byte(path: Path, key: str):
    with h5py.File(path, "r") as f:
        info = f[key].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_a_corrupted_chunk_is_caught_at_gather_and_at_resume(tmp_path, capfd):
    shards = []
    for s in range(2):
        shards.append(tmp_path / f"maps.shard-{s + 1}-of-2.h5")
        with ArtifactWriter(shards[-1], meta={"p": 1}) as w:
            for i in range(s, 6, 2):
                w.write(f"k{i:03d}", _maps(i), classes=np.array([1, 2, 3]))
    _flip_chunk_byte(shards[1], "k003")
    out = tmp_path / "maps.h5"
    with pytest.raises(ValueError, match=r"key 'k003' of .*maps.shard-2-of-2.h5 (fails its checksum|cannot be read)"):
        merge_artifacts(shards, out)
    assert not out.exists() and not Path(f"{out}.partial").exists()

    # the same damage in a partial: the key is dropped and recomputed, the others resumed
    w = ArtifactWriter(tmp_path / "p.h5", meta={"p": 1})
    for i in range(3):
        w.write(f"k{i:03d}", _maps(i))
    w.close()
    _flip_chunk_byte(tmp_path / "p.h5.partial", "k001")
    capfd.readouterr()
    w = ArtifactWriter(tmp_path / "p.h5", meta={"p": 1})
    assert w.done_keys() == {"k000", "k002"}
    assert "1 completed keys failed their checksum and are recomputed, e.g. 'k001'" in capfd.readouterr().err
    w.close()


# ---------------------------------------------------------------- the DAG: hostile config, SIGINT

def snakemake(*args, cwd, timeout=600, **popen):
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, **popen)


# DEMO_CLASSES renamed, in order: the first four foreground names made shell syntax
HOSTILE_PATTERNS = ["o'{}", "$(touch PWNED)", '{}"x `touch PWNED`', "{}; touch PWNED"]
HOSTILE_CLASSES = ["background", *(p.format(name) for p, name in zip(HOSTILE_PATTERNS, DEMO_CLASSES[1:])),
                   *DEMO_CLASSES[1 + len(HOSTILE_PATTERNS):]]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A working directory and a dataset root whose names, and class names, are shell syntax."""
    base = tmp_path_factory.mktemp("hostile")
    work = base / "run $(touch PWNED) o'q"
    root = base / 'VOC "x" $(touch PWNED) `touch PWNED`'
    work.mkdir()
    demo.generate(root, DEMO_CLASSES, **{**TINY, "n_train": 8, "n_val": 4})
    for xml in (root / "Annotations").glob("*.xml"):   # the generator draws its own names: rename them
        text = xml.read_text()
        for plain, hostile_name in zip(DEMO_CLASSES[1:], HOSTILE_CLASSES[1:]):
            text = text.replace(f"<name>{plain}</name>", f"<name>{html.escape(hostile_name)}</name>")
        xml.write_text(text)
    cfg = work / "hostile.yaml"
    overrides = {"classifier": {"epochs": 1, "batch_size": 4, "crop_size": 32, "workers": 0, "weights": "none"},
                 "affinity": {"batch_size": 4}, "segmentation": {"batch_size": 4}}   # batches that fit 8 images
    cfg.write_text(json.dumps({"device": "cpu", "threads": 1, "datasets": {"odd": {
        "kind": "voc", "root": str(root), "classes": HOSTILE_CLASSES, "overrides": overrides,
        "splits": {"classifier": "train", "classifier_val": "val", "cams": "train", "seeds": "train",
                   "val": "val"}}}}))
    return {"base": base, "work": work, "root": root, "cfg": cfg}


def test_shell_syntax_in_roots_class_names_and_paths_runs_nothing(hostile):
    """The whole DAG plans (-n), and a real job runs on that root with those class names; no
    PWNED file appears anywhere."""
    plan = snakemake("-n", "--cores", "1", "--configfile", str(hostile["cfg"]), "--", "results/odd/miou.json",
                     cwd=hostile["work"], timeout=300)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    run = snakemake("--cores", "1", "--configfile", str(hostile["cfg"]), "--", "results/odd/classifier.pt",
                    cwd=hostile["work"], timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    meta = torch.load(hostile["work"] / "results/odd/classifier.pt", weights_only=True)["meta"]
    assert meta["classes"] == HOSTILE_CLASSES
    assert not list(hostile["base"].rglob("PWNED")) and not Path("PWNED").exists()


def test_sigint_to_snakemake_stops_the_stage_and_keeps_its_partial(hostile):
    cfg = hostile["work"] / "long.yaml"
    config = json.loads(hostile["cfg"].read_text())
    config["datasets"]["odd"]["overrides"]["classifier"].update(epochs=40)
    cfg.write_text(json.dumps(config))
    env = dict(os.environ, PYTHONUNBUFFERED="1")   # the stage's "resuming" line reaches the log at once
    target = ["--configfile", str(cfg), "--", "results/odd/classifier.pt"]
    for leftover in (hostile["work"] / "results/odd").glob("classifier*"):
        leftover.unlink()
    partial = hostile["work"] / "results/odd/classifier.pt.partial"
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1",
                             *target], cwd=hostile["work"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    deadline = time.monotonic() + 300
    while not partial.exists():   # the first epoch's state is on disk
        assert proc.poll() is None and time.monotonic() < deadline, "training never saved an epoch"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    proc.communicate(timeout=120)
    stopped_after = time.monotonic() - sent
    saved = torch.load(partial, weights_only=True)["epoch"]
    assert proc.returncode != 0 and not (hostile["work"] / "results/odd/classifier.pt").exists()
    assert 1 <= saved < 40, f"the stage ran on to epoch {saved} after SIGINT"
    assert stopped_after < 60, f"Snakemake took {stopped_after:.0f} s to stop"
    # the rerun resumes from that epoch (then stops again: 40 epochs are not needed to prove it)
    log = hostile["work"] / "results/odd/logs/train_classifier.log"
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1",
                             *target], cwd=hostile["work"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    deadline = time.monotonic() + 300
    while not (log.exists() and "resuming classifier training" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "the rerun did not resume"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert f"after epoch {saved}" in log.read_text()
    shutil.rmtree(hostile["work"] / "results/odd", ignore_errors=True)
