# Helpers of the rules (rules/*.smk): the validated config, each rule's inputs and parameters.
import functools
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, workflow.basedir)
from pipeline.core import config as cfgmod
from pipeline.core.cam_methods import CAM_METHODS, classifier_of
from pipeline.core.interrupt import interrupt_stages
from pipeline.data import coco as cocomod
from pipeline.data.voc import VOCDataset
from stages._settings import STAGE_SETTINGS, stage_argv

cfgmod.validate(config)

# `python` in the rules is the interpreter that runs Snakemake (the project's venv), even
# when the venv is not activated. A prefix replaces Snakemake's default strict mode, so it is
# restated: without pipefail, a failing stage piped into tee would count as a success.
shell.prefix(f'set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH"; ')


def _interrupt_stages(signum, frame):
    """SIGINT to Snakemake alone is passed on to the running stages (pipeline/core/interrupt.py), which
    stop at once and keep their .partial; then Snakemake stops as usual."""
    jobs = getattr(shell, "_processes", {})
    interrupt_stages([proc.pid for proc in list(jobs.values())])
    signal.default_int_handler(signum, frame)


if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, _interrupt_stages)

DATASETS = list(config["datasets"])
DEMOS = [d for d in DATASETS if config["datasets"][d]["kind"] == "demo"]
COCOS = [d for d in DATASETS if cfgmod.is_coco(config["datasets"][d])]   # read in COCO format

# the CNN classifier, and the ViT-hybrid that the ViT methods read; config section of each
NETS = {"classifier": "classifier", "classifier_vit": "vit_classifier"}

THREADS = config["threads"]
GPU = 0 if config["device"] == "cpu" else 1   # a job that may use the GPU holds one

# Per-image stages run as `shards` jobs each: scatteritem k-of-n, shard k takes every n-th image.
scattergather:
    shard=config["shards"],


wildcard_constraints:
    dataset="|".join(DATASETS),
    net="|".join(NETS),
    demo="|".join(DEMOS) or "^$",
    method="|".join(CAM_METHODS),
    labels="|".join(["full", *CAM_METHODS]),
    coco="|".join(COCOS) or "^$",
    split=r"[A-Za-z0-9_-]+",   # no ".": a shard file (train.shard-1-of-2.h5) is not a split


def ds(dataset):
    return cfgmod.dataset_config(config, dataset)


def root(dataset):
    """Demo datasets are generated into results/; others live where config says."""
    return f"results/{dataset}/data" if ds(dataset)["kind"] == "demo" else ds(dataset)["root"]


def settings(stage, section=None):
    """The params of a stage's settings: its keys of the dataset's config section as named options
    (stages/_settings.py), so a change elsewhere in the section does not rerun it."""
    def argv(wildcards):
        name = section(wildcards) if callable(section) else section or STAGE_SETTINGS[stage][0]
        return stage_argv(stage, name, cfgmod.stage_config(config, wildcards.dataset, name))
    return argv


def shard_file(pattern):
    """A sharded stage's output: pattern with `.shard-{scatteritem}` (k-of-n) before the extension, kept only
    until rule gather has merged it."""
    stem, ext = os.path.splitext(pattern)
    return temp(f"{stem}.shard-{{scatteritem}}{ext}")


def dataset_files(wildcards):
    """The dataset a rule reads. A VOC dataset is checked here, while the DAG is built, so a
    missing or incomplete one fails at once (also under -n) with the expected layout. A COCO-format
    one is read through its index and rasterised masks (rules coco_index, coco_masks)."""
    if wildcards.dataset in COCOS:
        return coco_files(wildcards.dataset)
    if ds(wildcards.dataset)["kind"] == "demo":
        return f"results/{wildcards.dataset}/data"
    return checked_split_lists(wildcards.dataset)


@functools.cache
def checked_split_lists(dataset):
    lists = set()
    for role, split in ds(dataset)["splits"].items():
        voc = VOCDataset(root(dataset), ds(dataset)["classes"], split)
        voc.check(masks=role in ("seeds", "val"))
        lists.add(str(voc.split_file(split)))
    return sorted(lists)


def dataset_args(dataset):
    """--root and --classes (and a COCO dataset's cache), each shell-quoted: config values never
    reach the shell bare."""
    coco = f" --coco-cache {shlex.quote(f'results/{dataset}')}" if dataset in COCOS else ""
    return f"--root {shlex.quote(root(dataset))} --classes {shlex.quote(json.dumps(ds(dataset)['classes']))}{coco}"


def coco_files(dataset):
    """The index of every split, and the masks of the splits that are scored."""
    splits = ds(dataset)["splits"]
    return sorted({str(cocomod.index_path(f"results/{dataset}", s)) for s in splits.values()}
                  | {str(cocomod.masks_path(f"results/{dataset}", splits[r])) for r in ("seeds", "val")})


def coco_layout(dataset):
    return {k: ds(dataset).get(k, default) for k, default in
            (("images", cocomod.DEFAULT_IMAGES), ("annotations", cocomod.DEFAULT_ANNOTATIONS))}


@functools.cache
def checked_coco_split(dataset, split):
    """The split's annotation file, checked now (layout, every listed image on disk) so that a
    missing or incomplete COCO root stops the DAG at once; a demo's is made by rule make_demo."""
    if ds(dataset)["kind"] == "demo":
        return f"results/{dataset}/data"
    return str(cocomod.check_layout(root(dataset), split, **coco_layout(dataset)))


def classifier_ckpt(wildcards):
    return f"results/{wildcards.dataset}/{classifier_of(wildcards.method)}.pt"


# the walk of each affinity.kind: its maps' directory and its training report
WALKS = {"affinitynet": ("rw", "affinity"), "irn": ("rw_irn", "irn")}


def affinity_kind(dataset):
    return cfgmod.stage_config(config, dataset, "affinity")["kind"]


def refine_source(wildcards):
    source = cfgmod.stage_config(config, wildcards.dataset, "refine")["source"]
    folder = WALKS[affinity_kind(wildcards.dataset)][0] if source == "rw" else source
    return f"results/{wildcards.dataset}/{folder}/{wildcards.method}.h5"


# Segmentation: segnet/{labels}.pt is trained on pseudo/{labels}.h5, or on the ground truth when
# labels is `full` (the fully-supervised reference, same network and schedule).
def pseudo_labels(wildcards):
    return [] if wildcards.labels == "full" else f"results/{wildcards.dataset}/pseudo/{wildcards.labels}.h5"


def final_input(name):
    """Inputs of the final evaluation, for the method whose pseudo-labels train the network; {rw} and
    {affinity} in name are the folders of the walk affinity.kind picks (WALKS)."""
    def path(wildcards):
        method = cfgmod.stage_config(config, wildcards.dataset, "segmentation")["labels_from"]
        rw, affinity = WALKS[affinity_kind(wildcards.dataset)]
        return name.format(dataset=wildcards.dataset, method=method, rw=rw, affinity=affinity)
    return path


def per_method(pattern):
    def files(wildcards):
        methods = cfgmod.stage_config(config, wildcards.dataset, "cams")["methods"]
        return [pattern.format(dataset=wildcards.dataset, method=m) for m in methods]
    return files


# the published ladder the report shows beside a run, by dataset kind
ANCHOR_FLAGS = {"voc": "--voc-anchors", "demo": "--voc-anchors", "coco": "--coco-anchors"}   # the demo stands in for VOC


def uses_rw(dataset):
    return cfgmod.stage_config(config, dataset, "refine")["source"] == "rw"


def final_if_rw(name):
    """An input that exists only when the pseudo-labels come from the random walk."""
    def paths(wildcards):
        return [final_input(name)(wildcards)] if uses_rw(wildcards.dataset) else []
    return paths
