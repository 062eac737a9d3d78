# Helpers of the rules (rules/*.smk): the validated config, each rule's inputs and parameters.
import functools
import json
import os
import shlex
import signal
import sys
import threading
from types import SimpleNamespace
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

sys.path.insert(0, workflow.basedir)
from pipeline.core import config as cfgmod
from pipeline.core.cam_methods import CAM_METHODS, RECAM, VIT_METHODS, classifier_of
from pipeline.core.interrupt import interrupt_stages
from pipeline.data import coco as cocomod
from pipeline.data import tags as tagsmod
from pipeline.data.check import check_batches
from pipeline.data.voc import VOCDataset
from pipeline.models.check import check_weights
from pipeline.maps.calibration import check_calibration_split
from stages._settings import STAGE_SETTINGS, stage_argv

cfgmod.validate(config)

# The rules' software: by default `python` in the rules is the interpreter that runs Snakemake (the
# project's venv), even when the venv is not activated. Under `--sdm conda` each rule runs in the
# conda environment of its `conda:` directive (envs/, pyproject.toml's pins) and finds the project's
# code in the workflow's directory. A prefix replaces Snakemake's default strict mode, so it is
# restated: without pipefail, a failing stage piped into tee would count as a success.
ENV = "../envs/wsss.yaml"   # relative to rules/, where every rule is defined
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    shell.prefix(f'set -euo pipefail; export PYTHONPATH={shlex.quote(workflow.basedir)}"${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')
else:
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
TAGS = [d for d in DATASETS if cfgmod.is_tags(config["datasets"][d])]     # images with tags (pipeline/data/tags.py)

# the CNN classifier, and the ViTs that the ViT methods read (one class token; one per class); config section of each
NETS = {"classifier": "classifier", "classifier_vit": "vit_classifier", "classifier_mct": "mct_classifier"}
# the config section whose backbone each CAM method's checkpoint has (ReCAM's step keeps the CNN's)
CAM_SECTIONS = {**NETS, RECAM: "classifier"}

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
    """The dataset's config section; a tags dataset's `classes: auto` resolved from its tags file."""
    section = cfgmod.dataset_config(config, dataset)
    return {**section, "classes": tags_classes(dataset)} if section["classes"] == "auto" else section


def root(dataset):
    """Demo datasets are generated into results/; others live where config says."""
    section = cfgmod.dataset_config(config, dataset)
    return f"results/{dataset}/data" if section["kind"] == "demo" else section["root"]


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
    """The dataset a rule reads, and its check (rule check_dataset), so every stage waits for it; the
    batch sizes and weights are checked now (checked_training)."""
    sources = dataset_sources(wildcards)
    checked_training(wildcards.dataset)
    return [*sources, f"results/{wildcards.dataset}/checks/dataset.json"]


def dataset_sources(wildcards):
    """The dataset's files. A VOC dataset is checked here, while the DAG is built, so a
    missing or incomplete one fails at once (also under -n) with the expected layout. A COCO-format
    one is read through its index and rasterised masks (rules coco_index, coco_masks)."""
    if wildcards.dataset in COCOS:
        return coco_files(wildcards.dataset)
    if wildcards.dataset in TAGS and ds(wildcards.dataset)["kind"] == "tags":
        return tags_check(wildcards.dataset).inputs
    if ds(wildcards.dataset)["kind"] == "demo":
        return [f"results/{wildcards.dataset}/data"]
    return checked_split_lists(wildcards.dataset)


# Training stages and the split role each trains on: their batch sizes must fit.
TRAINING_SPLITS = {"classifier": "classifier", "affinity": "cams", "segmentation": "cams"}


def dataset_check_args(dataset):
    """The dataset check's options after the dataset's (rules/data.smk): the splits by role, the roles
    whose masks are read, cams.max_side."""
    # a tags dataset's masks are optional: the tags check reads those that exist (tags_check)
    mask_roles = [] if dataset in TAGS else ["seeds", "val"]
    words = ["--kind", ds(dataset)["kind"], "--splits", json.dumps(ds(dataset)["splits"], sort_keys=True),
             "--mask-roles", *mask_roles, "--max-side", str(cfgmod.stage_config(config, dataset, "cams")["max_side"])]
    return " ".join(shlex.quote(w) for w in words)


def split_sizes(dataset):
    """{split: images} of the splits whose size is known while the DAG is built (a COCO split's once
    its index exists)."""
    d = ds(dataset)
    if d["kind"] == "demo":
        return {"train": d["generator"]["n_train"], "val": d["generator"]["n_val"]}
    if d["kind"] == "tags":
        return {entry["split"]: entry["images"] for entry in tags_check(dataset).splits.values()}
    sizes = {}
    for split in set(d["splits"].values()):
        if dataset in COCOS:
            index = cocomod.index_path(f"results/{dataset}", split)
            if index.is_file():
                sizes[split] = len(json.loads(index.read_text())["images"])
        else:
            sizes[split] = len(VOCDataset(root(dataset), d["classes"], split).ids)
    return sizes


@functools.cache
def checked_training(dataset):
    """While the DAG is built (also under -n), before anything trains: each training stage's batch size
    fits the split it trains on, and backbone weights given as a checkpoint path fit their network
    (built once per checkpoint and settings: cached in results/<dataset>/checks/weights.json)."""
    sizes = split_sizes(dataset)
    splits = {role: SimpleNamespace(split=split, ids=range(sizes[split]))
              for role, split in ds(dataset)["splits"].items() if split in sizes}
    check_batches(splits, {section: [role, cfgmod.stage_config(config, dataset, section)["batch_size"]]
                           for section, role in TRAINING_SPLITS.items()})
    sections = {net: cfgmod.stage_config(config, dataset, section)
                for net, section in [*NETS.items(), ("affinity", "affinity"), ("segmentation", "segmentation")]}
    check_weights(sections, ds(dataset)["classes"], cache=f"results/{dataset}/checks/weights.json")
    return True


@functools.cache
def checked_split_lists(dataset):
    lists, ids = set(), {}
    for role, split in ds(dataset)["splits"].items():
        voc = VOCDataset(root(dataset), ds(dataset)["classes"], split)
        voc.check(masks=role in ("seeds", "val", "calibration"))
        lists.add(str(voc.split_file(split)))
        ids[role] = voc.ids
    # the calibration images must not be among those a result is scored on (docs/calibration.md)
    check_calibration_split(dataset, ds(dataset)["splits"], ids if "calibration" in ids else None)
    return sorted(lists)


def dataset_args(dataset):
    """--root and --classes (and a COCO dataset's cache), each shell-quoted: config values never
    reach the shell bare."""
    coco = f" --coco-cache {shlex.quote(f'results/{dataset}')}" if dataset in COCOS else ""
    tags = f" --tags {shlex.quote(json.dumps(tags_options(dataset)))}" if dataset in TAGS else ""
    return f"--root {shlex.quote(root(dataset))} --classes {shlex.quote(json.dumps(ds(dataset)['classes']))}{coco}{tags}"


def coco_files(dataset):
    """The index of every split, and the masks of the splits that are scored."""
    splits = ds(dataset)["splits"]
    return sorted({str(cocomod.index_path(f"results/{dataset}", s)) for s in splits.values()}
                  | {str(cocomod.masks_path(f"results/{dataset}", splits[r]))
                     for r in ("seeds", "val", "calibration") if r in splits})


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


# Tags datasets (pipeline/data/tags.py): images with image-level tags, masks for none, some or all.
# The CAM stages read the tagged images of their split (`:tagged`), the scoring steps the masked ones
# (`:masked`); a scoring rule whose split has no mask is left out of the DAG.
def tags_options(dataset):
    section = cfgmod.dataset_config(config, dataset)
    return {"file": section.get("tags", tagsmod.DEFAULT_TAGS), "holdout": section.get("holdout", 0.1),
            "seed": config["seed"]}


@functools.cache
def tags_classes(dataset):
    return tagsmod.resolve_classes(root(dataset), "auto", tags_options(dataset)["file"])


@functools.cache
def tags_check(dataset):
    """The tags dataset checked while the DAG is built (tags file, every image and mask header,
    splits), so bad input stops `snakemake -n` with the file and line; warnings go to stderr."""
    from tqdm import tqdm

    section, opts = cfgmod.dataset_config(config, dataset), tags_options(dataset)
    progress = lambda ids: tqdm(ids, desc=f"{dataset}: image headers", disable=len(ids) < 2000, file=sys.stderr)  # noqa: E731
    result = tagsmod.check_dataset(root(dataset), opts["file"], section["classes"], section["splits"],
                                   opts["holdout"], opts["seed"], progress=progress)
    for warning in result.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    return result


# the role whose split each tags-dataset split view filters; `scored_val` is the val split as scored
TAGS_VIEWS = {"classifier": "", "classifier_val": "", "cams": ":tagged", "seeds": ":tagged:masked",
              "val": "", "scored_val": ":masked"}


def split_of(dataset, role):
    """The split a stage gets for a role of config key `splits` (scored_val: the val split where scored)."""
    split = ds(dataset)["splits"][role.removeprefix("scored_")]
    # a role not listed (a scoring role such as a calibration split) reads the tagged, masked images
    return split + TAGS_VIEWS.get(role, ":tagged:masked") if dataset in TAGS else split


def masked_count(dataset, role):
    """How many images of the role's split (as split_of gives it) have a mask; None: all (not a tags
    dataset). A demo in tags layout says by generator.masks which of its splits have masks."""
    if dataset not in TAGS:
        return None
    section = cfgmod.dataset_config(config, dataset)
    if section["kind"] == "demo":
        coverage = section["generator"].get("masks", "all")
        split = section["splits"][role.removeprefix("scored_")]
        return None if coverage == "all" or (coverage == "val" and split == "val") else 0
    counts = tags_check(dataset).splits[role.removeprefix("scored_")]
    return counts["tagged_masked"] if ":tagged" in TAGS_VIEWS.get(role, ":tagged:masked") else counts["masked"]


def scored(dataset, role):
    """Whether a scoring step on the role's split has any mask to score against."""
    return masked_count(dataset, role) != 0


def fully_masked(dataset, role):
    """Every image of the role's split has a mask (the ground truth can train the reference network)."""
    count = masked_count(dataset, role)
    if count is None or count == 0:
        return count is None
    return count == tags_check(dataset).splits[role]["tagged"]


def if_scored(role, inputs):
    """Inputs (a path or an input function) that exist only where the role's split has masks."""
    def paths(wildcards):
        if not scored(wildcards.dataset, role):
            return []
        found = inputs(wildcards) if callable(inputs) else inputs.format(dataset=wildcards.dataset)
        return [found] if isinstance(found, str) else found
    return paths


def if_full(path):
    """The fully-supervised reference's files: only where every image of the cams split has a mask."""
    return lambda wildcards: [path.format(dataset=wildcards.dataset)] if fully_masked(wildcards.dataset, "cams") else []


# results/{dataset}/all (rules/deliverables.smk)
def unlabelled_folder(dataset):
    folder = Path(root(dataset)) / "unlabelled"
    return str(folder) if folder.is_dir() else None


def deliverable_files(wildcards):
    d = wildcards.dataset
    files = {
        "pseudo_png": final_input("results/{dataset}/pseudo/{method}")(wildcards),
        "segnet": final_input("results/{dataset}/segnet/{method}.pt")(wildcards),
        "pred_png": final_input("results/{dataset}/pred/{method}")(wildcards),
        "report": f"results/{d}/report.html",
    }
    if unlabelled_folder(d):
        files["unlabelled"] = f"results/{d}/unlabelled"
    if scored(d, "scored_val"):
        files["miou"] = f"results/{d}/miou.json"
    return files
# Background settings set to `auto` (docs/calibration.md): chosen by rules calibrate_seeds and
# calibrate_walk on the dataset's calibration split (or by the label-free heuristic without one).
def is_auto(dataset, section, key):
    return cfgmod.stage_config(config, dataset, section)[key] == "auto"


def calibration_record(name, section, key):
    """The calibration JSON a rule reads when section.key is auto (no input otherwise)."""
    def path(wildcards):
        if not is_auto(wildcards.dataset, section, key):
            return []
        return [f"results/{wildcards.dataset}/calibration/{name}_{wildcards.method}.json"]
    return path


def calibration_flag(flag):
    """`flag FILE` for the calibration input of a rule, nothing when its setting is fixed."""
    return lambda wildcards, input: [flag, input.calibration[0]] if input.calibration else []


def calibration_inputs(wildcards):
    """The calibration split's CAMs, when the dataset names a calibration split."""
    if "calibration" not in ds(wildcards.dataset)["splits"]:
        return []
    return [f"results/{wildcards.dataset}/calibration/cams_{wildcards.method}.h5"]


def calibration_args(wildcards, input):
    """--calibration-split and --calibration-cams, or nothing (the label-free heuristic)."""
    if not input.calibration_cams:
        return []
    return ["--calibration-split", ds(wildcards.dataset)["splits"]["calibration"],
            "--calibration-cams", input.calibration_cams[0]]


def irn_walk_calibration(wildcards):
    """IRN's walk record (rule calibrate_irn_walk) when irn.logt or irn.walk_bg is auto."""
    irn = cfgmod.stage_config(config, wildcards.dataset, "irn")
    if "auto" not in (irn["logt"], irn["walk_bg"]):
        return []
    return [f"results/{wildcards.dataset}/calibration/rw_irn_{wildcards.method}.json"]


def final_walk_calibration(wildcards):
    """The calibration record of the walk behind the final pseudo-labels (affinity.kind's), if auto chose."""
    if not uses_rw(wildcards.dataset):
        return []
    method = cfgmod.stage_config(config, wildcards.dataset, "segmentation")["labels_from"]
    at = SimpleNamespace(dataset=wildcards.dataset, method=method)
    if affinity_kind(wildcards.dataset) == "irn":
        return irn_walk_calibration(at)
    return calibration_record("rw", "random_walk", "alpha")(at)


def label_alphas_calibration(wildcards):
    """The seeds' calibration record when affinity.alpha_low or alpha_high is auto (derived from it)."""
    affinity = cfgmod.stage_config(config, wildcards.dataset, "affinity")
    if "auto" not in (affinity["alpha_low"], affinity["alpha_high"]):
        return []
    return [f"results/{wildcards.dataset}/calibration/seeds_{wildcards.method}.json"]
