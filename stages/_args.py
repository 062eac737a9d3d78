"""Argument helpers shared by the stage CLIs (stages only wire arguments to pipeline/)."""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from pipeline.core.device import loader_workers, resolve_device, set_threads
from pipeline.core.precision import AMP_CHOICES, amp_name, mixed_precision, resolve_amp
from pipeline.core.shards import select_shard
from pipeline.core.store import ArtifactReader
from pipeline.data.datasets import open_split
from pipeline.models.checkpoint import CheckpointError
from stages._settings import add_settings, settings


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description)


def add_dataset(p: argparse.ArgumentParser, split_flags=("--split",)) -> None:
    p.add_argument("--root", required=True, help="dataset root")
    p.add_argument("--classes", required=True, type=json.loads, help="JSON list of class names, background first")
    p.add_argument("--coco-cache", default=None,
                   help="a COCO-format dataset: the results directory holding its index and masks")
    p.add_argument("--tags", default=None, type=json.loads,
                   help='a tags dataset: JSON {"file": tags file under root, "holdout": fraction, "seed": int}')
    for flag in split_flags:
        p.add_argument(flag, required=True, help="split name (ImageSets/Segmentation/<split>.txt; a tags dataset's: pipeline/data/tags.py)")


def dataset(args, split: str):
    """The reader of a split of the dataset that add_dataset's arguments name."""
    return open_split(args.root, args.classes, split, args.coco_cache, args.tags)


def calibration_parser(description: str) -> argparse.ArgumentParser:
    """A stage that chooses an `auto` setting: the dataset, the split the CAMs are made on with their
    file (the label-free fallback's input), and the calibration split with its CAMs (both or neither)."""
    p = parser(description)
    add_dataset(p, split_flags=("--split",))
    p.add_argument("--cams", required=True, help="HDF5 of extract_cams on --split (the label-free heuristic's input)")
    p.add_argument("--calibration-split", default=None, help="the calibration split (images with masks)")
    p.add_argument("--calibration-cams", default=None, help="HDF5 of extract_cams on the calibration split")
    return p


def check_calibration_args(args) -> None:
    if (args.calibration_split is None) != (args.calibration_cams is None):
        raise SystemExit("--calibration-split and --calibration-cams go together")


def cams_scoring(description: str, stage: str, argv, masks: bool, extra=()):
    """A stage that scores one method's CAMs on a split into a JSON report (seeds, boxes):
    (arguments, settings, the split's reader, checked). `extra`: (flag, help) of optional paths."""
    p = parser(description)
    add_dataset(p)
    p.add_argument("--cams", required=True, help="HDF5 written by extract_cams")
    p.add_argument("--method", required=True)
    for flag, help_text in extra:
        p.add_argument(flag, default=None, help=help_text)
    add_settings(p, stage)
    p.add_argument("--out", required=True, help="JSON output")
    args, cfg = parse(p, argv)
    voc = dataset(args, args.split)
    voc.check(masks=masks)
    return args, cfg, voc


def shard_parser(description: str, what: str, eval_split: bool = False, runtime: bool = True):
    """The parser of a per-image stage: its dataset (and the split it scores), device and threads,
    its shard and outputs (`what` the HDF5 holds)."""
    p = parser(description)
    add_dataset(p, split_flags=("--split", "--eval-split") if eval_split else ("--split",))
    if runtime:
        add_runtime(p)
    add_shard(p, what)
    return p


def parse(p: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, dict]:
    """The arguments, and the stage's settings (stages/_settings.py)."""
    args = p.parse_args(argv)
    return args, settings(args)


def check_classes(checkpoint: str, trained: list[str], classes: list[str]) -> None:
    """A network answers in the classes it was trained on: another dataset's list is an error."""
    if trained != classes:
        raise CheckpointError(f"{checkpoint} was trained on classes {trained}, this dataset has {classes}")


def add_demo_generator(p: argparse.ArgumentParser) -> None:
    """The demo's classes and generator settings (datasets.demo in config.yaml)."""
    p.add_argument("--classes", required=True, type=json.loads)
    p.add_argument("--generator", required=True, type=json_arg,
                   help="JSON: seed, n_train, n_val, min_size, max_size, collar_tint, collar_reach, "
                        "format (voc | coco | tags), masks (format tags: all | val | none)")


def add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--amp", default="auto", choices=AMP_CHOICES,
                   help="mixed precision of the networks: auto = bf16 on a GPU that has it (else fp16), "
                        "off on the CPU")


@contextlib.contextmanager
def on_device(args):
    """The stage's device (--device), with its networks in the precision --amp gives on it."""
    device = resolve_device(args.device)
    dtype = resolve_amp(args.amp, device)
    print(f"device {device}, mixed precision {amp_name(dtype)}")
    with mixed_precision(dtype):
        yield device


def add_shard(p: argparse.ArgumentParser, what: str) -> None:
    """A per-image stage: which shard of the split it runs, and the tally it leaves for
    stages.gather (pipeline/core/shards.py)."""
    p.add_argument("--shard", default="1-of-1", help="k-of-n: every n-th image of the split, from the k-th on")
    p.add_argument("--out", required=True, help=f"HDF5 output of this shard ({what})")
    p.add_argument("--tally", required=True, help="JSON tally of this shard, for stages.gather")


def shard_datasets(args, eval_split: bool = False):
    """(this shard's images of --split, checked; and of --eval-split among them, masks checked)."""
    voc, eval_voc = select_shard(dataset(args, args.split), args.shard,
                                 dataset(args, args.eval_split) if eval_split else None)
    voc.check(masks=False)
    if eval_voc is not None:
        eval_voc.check(masks=True)
    return voc, eval_voc


def add_training(p: argparse.ArgumentParser, stage: str, report: str, defaults: str | None = None) -> None:
    """What every training stage takes: its settings, the seed and the two outputs."""
    add_settings(p, stage, defaults)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    p.add_argument("--report", required=True, help=report)


def start_training(args) -> dict:
    """The job's torch threads; its settings, with the DataLoader workers (`workers`) capped to them."""
    set_threads(args.threads)
    cfg = settings(args)
    cfg["workers"] = loader_workers(cfg["workers"], args.threads)
    return cfg


def train_on_labels(description: str, stage: str, labels_stage: str, train_fn, argv) -> None:
    """A stage that trains a pair-affinity network on a split's label artifact (AffinityNet on the
    affinity labels, IRN's boundary network on the IR labels): train_fn(voc, labels, cfg, out,
    device, seed) returns the report, whose loss curve ends in the line printed."""
    p = parser(description)
    add_dataset(p)
    add_runtime(p)
    p.add_argument("--labels", required=True, help=f"HDF5 written by stages.{labels_stage}")
    add_training(p, stage, "JSON with the loss curve")
    args = p.parse_args(argv)

    cfg = start_training(args)
    voc = dataset(args, args.split)
    voc.check(masks=False)
    with on_device(args) as device:
        result = train_fn(voc, ArtifactReader(args.labels), cfg, args.out, device, args.seed)
    write_json(args.report, result)
    print(f"{stage}: {result['images']} images, final loss {result['history'][-1]['loss']:.4f} -> {args.out}")


def resolve_auto(cfg: dict, keys, calibration: str | None, setting: str, calibrating_stage: str) -> dict | None:
    """The values of cfg's keys set to `auto` replaced by the choice in the calibration record (a
    number for a single setting, a mapping for settings chosen together); returns the record, or
    None when no key is auto."""
    auto = [key for key in keys if cfg[key] == "auto"]
    if not auto:
        return None
    if calibration is None:
        raise SystemExit(f"{setting} is auto: --calibration (the JSON of stages.{calibrating_stage}) is required")
    record = json.loads(Path(calibration).read_text())
    chosen = record["chosen"]
    cfg.update({key: chosen[key] if isinstance(chosen, dict) else chosen for key in auto})
    return record


def json_arg(text: str) -> dict:
    return json.loads(text)


def write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
