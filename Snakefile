# The WSSS pipeline as a DAG over cached artifacts (see DESIGN.md, "Artifacts").
#   snakemake --cores 2 results/demo/miou.json      (results/demo/report.html: the report)
# Each rule calls one stage module with explicit paths; stage settings go through params,
# so changing a value in config.yaml reruns only the rules that use it.
# Per-image stages run as `shards` jobs each (config; scatter) whose files rule gather merges into
# the one artifact the next stage reads. Rules that may use a GPU declare resources gpu=1;
# profiles/default caps them locally, profiles/slurm turns them into GPU requests.
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
from pipeline.data import coco as cocomod
from pipeline.data.voc import VOCDataset
from pipeline.core.interrupt import interrupt_stages
from stages._settings import STAGE_SETTINGS, stage_argv


configfile: f"{workflow.basedir}/config.yaml"


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


wildcard_constraints:
    dataset="|".join(DATASETS),
    shard=r"\d+-of-\d+",
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


SHARDS = config["shards"]
THREADS = config["threads"]
GPU = 0 if config["device"] == "cpu" else 1   # a job that may use the GPU holds one


def shard_file(pattern):
    """A sharded stage's output: pattern with `.shard-{shard}` before the extension, kept only
    until rule gather has merged it."""
    stem, ext = os.path.splitext(pattern)
    return temp(f"{stem}.shard-{{shard}}{ext}")


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


# COCO-format datasets: each split's annotation file is indexed (ids, sizes, labels, boxes) and its
# semantic masks rasterised once, sharded like the per-image stages; the stages read only these.
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


rule coco_index:
    input:
        lambda wc: checked_coco_split(wc.coco, wc.split),
    output:
        "results/{coco}/coco/{split}.json",
    params:
        root=lambda wc: root(wc.coco),
        classes=lambda wc: json.dumps(ds(wc.coco)["classes"]),
        images=lambda wc: coco_layout(wc.coco)["images"],
        annotations=lambda wc: coco_layout(wc.coco)["annotations"],
    resources:
        mem_mb=8000,
        runtime=30,
    log:
        "results/{coco}/logs/coco_index_{split}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.coco_index --root {params.root:q} --split {wildcards.split:q}"
        " --classes {params.classes:q} --images {params.images:q} --annotations {params.annotations:q}"
        " --out {output:q} 2>&1 | tee {log:q}"


rule coco_masks:
    input:
        index="results/{coco}/coco/{split}.json",
        annotations=lambda wc: checked_coco_split(wc.coco, wc.split),
    output:
        maps=shard_file("results/{coco}/masks/{split}.h5"),
        tally=shard_file("results/{coco}/masks/{split}.json"),
    resources:
        mem_mb=8000,
        runtime=240,
    log:
        "results/{coco}/logs/coco_masks_{split}.shard-{shard}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.coco_masks --index {input.index:q} --shard {wildcards.shard:q}"
        " --out {output.maps:q} --tally {output.tally:q} 2>&1 | tee {log:q}"


rule all:
    input:
        "results/demo/report.html",
        "results/demo/seeds/summary.json",
        "results/demo/rw/cam.json",
        "results/demo/rw/gradcam.json",


rule make_demo:
    output:
        directory("results/{demo}/data"),
    params:
        classes=lambda wc: json.dumps(ds(wc.demo)["classes"]),
        generator=lambda wc: json.dumps(ds(wc.demo)["generator"], sort_keys=True),
    log:
        "results/{demo}/logs/make_demo.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.make_demo --out {output:q} --classes {params.classes:q}"
        " --generator {params.generator:q} 2>&1 | tee {log:q}"


rule train_classifier:
    input:
        dataset_files,
    output:
        ckpt="results/{dataset}/{net}.pt",
        report="results/{dataset}/{net}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        train=lambda wc: ds(wc.dataset)["splits"]["classifier"],
        val=lambda wc: ds(wc.dataset)["splits"]["classifier_val"],
        settings=settings("train_classifier", lambda wc: NETS[wc.net]),
        device=config["device"],
        seed=config["seed"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=720,
    log:
        "results/{dataset}/logs/train_{net}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.train_classifier {params.data} --train-split {params.train:q}"
        " --val-split {params.val:q} {params.settings:q} --device {params.device:q} --seed {params.seed:q}"
        " --threads {threads} --out {output.ckpt:q} --report {output.report:q} 2>&1 | tee {log:q}"


def classifier_ckpt(wildcards):
    return f"results/{wildcards.dataset}/{classifier_of(wildcards.method)}.pt"


rule extract_cams:
    input:
        data=dataset_files,
        ckpt=classifier_ckpt,
    output:
        maps=shard_file("results/{dataset}/cams/{method}.h5"),
        tally=shard_file("results/{dataset}/cams/{method}.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        settings=settings("extract_cams"),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, NETS[classifier_of(wc.method)])["backbone"],
        device=config["device"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    log:
        "results/{dataset}/logs/extract_cams_{method}.shard-{shard}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.extract_cams {params.data} --split {params.split:q} --shard {wildcards.shard}"
        " --classifier {input.ckpt:q} --backbone {params.backbone:q} --method {wildcards.method} {params.settings:q}"
        " --device {params.device:q} --threads {threads} --out {output.maps:q} --tally {output.tally:q} 2>&1 | tee {log:q}"


rule evaluate_seeds:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
    output:
        "results/{dataset}/seeds/{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["seeds"],
        settings=settings("evaluate_seeds"),
    log:
        "results/{dataset}/logs/evaluate_seeds_{method}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.evaluate_seeds {params.data} --split {params.split:q} --cams {input.cams:q}"
        " --method {wildcards.method} {params.settings:q} --out {output:q} 2>&1 | tee {log:q}"


rule evaluate_boxes:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
    output:
        "results/{dataset}/boxes/{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["seeds"],
        settings=settings("evaluate_boxes"),
    log:
        "results/{dataset}/logs/evaluate_boxes_{method}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.evaluate_boxes {params.data} --split {params.split:q} --cams {input.cams:q}"
        " --method {wildcards.method} {params.settings:q} --out {output:q} 2>&1 | tee {log:q}"


rule affinity_labels:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
    output:
        labels=shard_file("results/{dataset}/affinity/{method}_labels.h5"),
        tally=shard_file("results/{dataset}/affinity/{method}_labels.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        eval_split=lambda wc: ds(wc.dataset)["splits"]["seeds"],
        settings=settings("affinity_labels"),
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=240,
    log:
        "results/{dataset}/logs/affinity_labels_{method}.shard-{shard}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.affinity_labels {params.data} --split {params.split:q} --eval-split {params.eval_split:q}"
        " --shard {wildcards.shard} --cams {input.cams:q} {params.settings:q} --workers {threads}"
        " --out {output.labels:q} --tally {output.tally:q} 2>&1 | tee {log:q}"


rule train_affinity:
    input:
        data=dataset_files,
        labels="results/{dataset}/affinity/{method}_labels.h5",
    output:
        ckpt="results/{dataset}/affinity/{method}.pt",
        report="results/{dataset}/affinity/{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        settings=settings("train_affinity"),
        device=config["device"],
        seed=config["seed"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=720,
    log:
        "results/{dataset}/logs/train_affinity_{method}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.train_affinity {params.data} --split {params.split:q} --labels {input.labels:q}"
        " {params.settings:q} --device {params.device:q} --seed {params.seed:q} --threads {threads}"
        " --out {output.ckpt:q} --report {output.report:q} 2>&1 | tee {log:q}"


rule propagate:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
        affinity="results/{dataset}/affinity/{method}.pt",
    output:
        maps=shard_file("results/{dataset}/rw/{method}.h5"),
        tally=shard_file("results/{dataset}/rw/{method}.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        eval_split=lambda wc: ds(wc.dataset)["splits"]["seeds"],
        settings=settings("propagate"),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, "affinity")["backbone"],
        device=config["device"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    log:
        "results/{dataset}/logs/propagate_{method}.shard-{shard}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.propagate {params.data} --split {params.split:q} --eval-split {params.eval_split:q}"
        " --shard {wildcards.shard} --cams {input.cams:q} --affinity {input.affinity:q} --backbone {params.backbone:q}"
        " --method {wildcards.method} {params.settings:q} --device {params.device:q} --threads {threads}"
        " --out {output.maps:q} --tally {output.tally:q} 2>&1 | tee {log:q}"


def refine_source(wildcards):
    source = cfgmod.stage_config(config, wildcards.dataset, "refine")["source"]
    return f"results/{wildcards.dataset}/{source}/{wildcards.method}.h5"


rule refine:
    input:
        data=dataset_files,
        maps=refine_source,
    output:
        labels=shard_file("results/{dataset}/pseudo/{method}.h5"),
        tally=shard_file("results/{dataset}/pseudo/{method}.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        eval_split=lambda wc: ds(wc.dataset)["splits"]["seeds"],
        settings=settings("refine"),
        bg=lambda wc: cfgmod.stage_config(config, wc.dataset, "seeds")["bg_threshold"],
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=240,
    log:
        "results/{dataset}/logs/refine_{method}.shard-{shard}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.refine {params.data} --split {params.split:q} --eval-split {params.eval_split:q}"
        " --shard {wildcards.shard} --maps {input.maps:q} --method {wildcards.method}"
        " --bg-threshold {params.bg:q} {params.settings:q} --workers {threads} --out {output.labels:q}"
        " --tally {output.tally:q} 2>&1 | tee {log:q}"


# Segmentation: segnet/{labels}.pt is trained on pseudo/{labels}.h5, or on the ground truth when
# labels is `full` (the fully-supervised reference, same network and schedule).
def pseudo_labels(wildcards):
    return [] if wildcards.labels == "full" else f"results/{wildcards.dataset}/pseudo/{wildcards.labels}.h5"


rule train_segmentation:
    input:
        data=dataset_files,
        labels=pseudo_labels,
    output:
        ckpt="results/{dataset}/segnet/{labels}.pt",
        report="results/{dataset}/segnet/{labels}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        labels=lambda wc, input: input.labels or "gt",
        settings=settings("train_segmentation"),
        device=config["device"],
        seed=config["seed"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=1440,
    log:
        "results/{dataset}/logs/train_segmentation_{labels}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.train_segmentation {params.data} --split {params.split:q} --labels {params.labels:q}"
        " {params.settings:q} --device {params.device:q} --seed {params.seed:q} --threads {threads}"
        " --out {output.ckpt:q} --report {output.report:q} 2>&1 | tee {log:q}"


rule predict:
    input:
        data=dataset_files,
        model="results/{dataset}/segnet/{labels}.pt",
    output:
        preds=shard_file("results/{dataset}/pred/{labels}.h5"),
        tally=shard_file("results/{dataset}/pred/{labels}.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["val"],
        settings=settings("predict"),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, "segmentation")["backbone"],
        device=config["device"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    log:
        "results/{dataset}/logs/predict_{labels}.shard-{shard}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.predict {params.data} --split {params.split:q} --shard {wildcards.shard}"
        " --model {input.model:q} --backbone {params.backbone:q} {params.settings:q} --device {params.device:q}"
        " --threads {threads} --out {output.preds:q} --tally {output.tally:q} 2>&1 | tee {log:q}"


def shards_of(ext):
    """The files of every shard of the artifact rule gather makes."""
    def files(wildcards):
        return [f"results/{wildcards.dataset}/{wildcards.artifact}.shard-{k}-of-{SHARDS}.{ext}"
                for k in range(1, SHARDS + 1)]
    return files


rule gather:
    input:
        shards=shards_of("h5"),
        tallies=shards_of("json"),
    output:
        maps="results/{dataset}/{artifact}.h5",
        report="results/{dataset}/{artifact}.json",
    wildcard_constraints:
        artifact=r"(cams|rw|pseudo|pred)/\w+|affinity/\w+_labels|masks/[A-Za-z0-9_-]+",
    params:
        classes=lambda wc: json.dumps(ds(wc.dataset)["classes"]),
    log:
        "results/{dataset}/logs/gather_{artifact}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.gather --classes {params.classes:q} --shards {input.shards:q} --tallies {input.tallies:q}"
        " --out {output.maps:q} --report {output.report:q} 2>&1 | tee {log:q}"


rule export_png:
    """Pseudo-labels or predictions as VOC-palette PNGs named by image id (DeepLab/mmseg's input)."""
    input:
        "results/{dataset}/{kind}/{labels}.h5",
    output:
        directory("results/{dataset}/{kind}/{labels}"),
    wildcard_constraints:
        kind="pseudo|pred",
    log:
        "results/{dataset}/logs/export_png_{kind}_{labels}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.export_png --maps {input:q} --out {output:q} 2>&1 | tee {log:q}"


rule evaluate_full:
    input:
        data=dataset_files,
        preds="results/{dataset}/pred/full.h5",
    output:
        "results/{dataset}/miou_full.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["val"],
    log:
        "results/{dataset}/logs/evaluate_full.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.evaluate {params.data} --split {params.split:q} --preds {input.preds:q}"
        " --out {output:q} 2>&1 | tee {log:q}"


def final_input(name):
    """Inputs of the final evaluation, for the method whose pseudo-labels train the network."""
    def path(wildcards):
        method = cfgmod.stage_config(config, wildcards.dataset, "segmentation")["labels_from"]
        return name.format(dataset=wildcards.dataset, method=method)
    return path


rule evaluate:
    input:
        data=dataset_files,
        preds=final_input("results/{dataset}/pred/{method}.h5"),
        classifier="results/{dataset}/classifier.json",
        seeds=final_input("results/{dataset}/seeds/{method}.json"),
        pseudo=final_input("results/{dataset}/pseudo/{method}.json"),
        full="results/{dataset}/miou_full.json",
    output:
        "results/{dataset}/miou.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["val"],
        method=lambda wc: cfgmod.stage_config(config, wc.dataset, "segmentation")["labels_from"],
    log:
        "results/{dataset}/logs/evaluate.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.evaluate {params.data} --split {params.split:q} --preds {input.preds:q}"
        " --method {params.method:q} --classifier {input.classifier:q} --seeds {input.seeds:q}"
        " --pseudo {input.pseudo:q} --full {input.full:q} --out {output:q} 2>&1 | tee {log:q}"


def per_method(pattern):
    def files(wildcards):
        methods = cfgmod.stage_config(config, wildcards.dataset, "cams")["methods"]
        return [pattern.format(dataset=wildcards.dataset, method=m) for m in methods]
    return files


rule summarize_cams:
    input:
        seeds=per_method("results/{dataset}/seeds/{method}.json"),
        boxes=per_method("results/{dataset}/boxes/{method}.json"),
        timing=per_method("results/{dataset}/cams/{method}.json"),
    output:
        "results/{dataset}/seeds/summary.json",
    log:
        "results/{dataset}/logs/summarize_cams.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.summarize_cams --seeds {input.seeds:q} --boxes {input.boxes:q}"
        " --timing {input.timing:q} --out {output:q} 2>&1 | tee {log:q}"


# the published ladder the report shows beside a run, by dataset kind
ANCHOR_FLAGS = {"voc": "--voc-anchors", "demo": "--voc-anchors", "coco": "--coco-anchors"}   # the demo stands in for VOC


def uses_rw(dataset):
    return cfgmod.stage_config(config, dataset, "refine")["source"] == "rw"


def final_if_rw(name):
    """An input that exists only when the pseudo-labels come from the random walk."""
    def paths(wildcards):
        return [final_input(name)(wildcards)] if uses_rw(wildcards.dataset) else []
    return paths


rule report:
    input:
        data=dataset_files,
        miou="results/{dataset}/miou.json",
        seeds=per_method("results/{dataset}/seeds/{method}.json"),
        classifier="results/{dataset}/classifier.json",
        affinity=final_if_rw("results/{dataset}/affinity/{method}.json"),
        segnet=final_input("results/{dataset}/segnet/{method}.json"),
        segnet_full="results/{dataset}/segnet/full.json",
        cams=final_input("results/{dataset}/cams/{method}.h5"),
        rw=final_if_rw("results/{dataset}/rw/{method}.h5"),
        pseudo=final_input("results/{dataset}/pseudo/{method}.h5"),
        preds=final_input("results/{dataset}/pred/{method}.h5"),
        preds_full="results/{dataset}/pred/full.h5",
    output:
        report("results/{dataset}/report.html", category="Report"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        val=lambda wc: ds(wc.dataset)["splits"]["val"],
        seeds=lambda wc, input: [f"{Path(f).stem}={f}" for f in input.seeds],
        histories=lambda wc, input: [f"classifier={input.classifier}", *(f"affinity={f}" for f in input.affinity),
                                     f"segnet_weak={input.segnet}", f"segnet_full={input.segnet_full}"],
        rw=lambda wc, input: ["--rw", *input.rw] if input.rw else [],
        anchors=lambda wc: [flag] if (flag := ANCHOR_FLAGS.get(ds(wc.dataset)["kind"])) else [],
        samples=lambda wc: cfgmod.stage_config(config, wc.dataset, "report")["samples"],
    log:
        "results/{dataset}/logs/report.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.report {params.data} --split {params.split:q} --val-split {params.val:q}"
        " --title 'WSSS run: {wildcards.dataset}' --miou {input.miou:q} --seeds {params.seeds:q}"
        " --histories {params.histories:q} --cams {input.cams:q} {params.rw:q} --pseudo {input.pseudo:q}"
        " --preds weak={input.preds:q} full={input.preds_full:q} --samples {params.samples:q} {params.anchors:q}"
        " --out {output:q} 2>&1 | tee {log:q}"
