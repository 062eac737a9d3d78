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
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)
from pipeline import config as cfgmod
from pipeline.methods import ALL_METHODS as CAM_METHODS, VIT_METHODS
from pipeline.data.voc import VOCDataset


configfile: f"{workflow.basedir}/config.yaml"


cfgmod.validate(config)

# `python` in the rules is the interpreter that runs Snakemake (the project's venv), even
# when the venv is not activated. A prefix replaces Snakemake's default strict mode, so it is
# restated: without pipefail, a failing stage piped into tee would count as a success.
shell.prefix(f'set -euo pipefail; export PATH="{os.path.dirname(sys.executable)}:$PATH"; ')
DATASETS = list(config["datasets"])
DEMOS = [d for d in DATASETS if config["datasets"][d]["kind"] == "demo"]


# the CNN classifier, and the ViT-hybrid that the ViT methods read; config section of each
NETS = {"classifier": "classifier", "classifier_vit": "vit_classifier"}


wildcard_constraints:
    dataset="|".join(DATASETS),
    shard=r"\d+-of-\d+",
    net="|".join(NETS),
    demo="|".join(DEMOS) or "^$",
    method="|".join(CAM_METHODS),
    labels="|".join(["full", *CAM_METHODS]),


def ds(dataset):
    return cfgmod.dataset_config(config, dataset)


def root(dataset):
    """Demo datasets are generated into results/; others live where config says."""
    return f"results/{dataset}/data" if ds(dataset)["kind"] == "demo" else ds(dataset)["root"]


def stage(dataset, section, keys=None, exclude=()):
    """A stage's settings as JSON; `keys` limits them to what the stage reads (or `exclude` drops
    what another stage reads), so a change elsewhere in the section does not rerun it."""
    cfg = cfgmod.stage_config(config, dataset, section)
    cfg = {k: cfg[k] for k in keys} if keys else {k: v for k, v in cfg.items() if k not in exclude}
    return json.dumps(cfg, sort_keys=True)


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
    missing or incomplete one fails at once (also under -n) with the expected layout."""
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
    return f"--root {root(dataset)} --classes '{json.dumps(ds(dataset)['classes'])}'"


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
        "python -m stages.make_demo --out {output} --classes '{params.classes}'"
        " --generator '{params.generator}' 2>&1 | tee {log}"


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
        cfg=lambda wc: stage(wc.dataset, NETS[wc.net]),
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
        "python -m stages.train_classifier {params.data} --train-split {params.train}"
        " --val-split {params.val} --cfg '{params.cfg}' --device {params.device} --seed {params.seed}"
        " --threads {threads} --out {output.ckpt} --report {output.report} 2>&1 | tee {log}"


def net_of(method):
    return "classifier_vit" if method in VIT_METHODS else "classifier"


def classifier_of(wildcards):
    return f"results/{wildcards.dataset}/{net_of(wildcards.method)}.pt"


rule extract_cams:
    input:
        data=dataset_files,
        ckpt=classifier_of,
    output:
        maps=shard_file("results/{dataset}/cams/{method}.h5"),
        tally=shard_file("results/{dataset}/cams/{method}.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        cfg=lambda wc: stage(wc.dataset, "cams", ("scales", "flip", "fullycam_levels")),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, NETS[net_of(wc.method)])["backbone"],
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
        "python -m stages.extract_cams {params.data} --split {params.split} --shard {wildcards.shard}"
        " --classifier {input.ckpt} --backbone {params.backbone} --method {wildcards.method} --cfg '{params.cfg}'"
        " --device {params.device} --threads {threads} --out {output.maps} --tally {output.tally} 2>&1 | tee {log}"


rule evaluate_seeds:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
    output:
        "results/{dataset}/seeds/{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["seeds"],
        cfg=lambda wc: stage(wc.dataset, "seeds"),
    log:
        "results/{dataset}/logs/evaluate_seeds_{method}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.evaluate_seeds {params.data} --split {params.split} --cams {input.cams}"
        " --method {wildcards.method} --cfg '{params.cfg}' --out {output} 2>&1 | tee {log}"


rule evaluate_boxes:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
    output:
        "results/{dataset}/boxes/{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["seeds"],
        cfg=lambda wc: stage(wc.dataset, "boxes"),
    log:
        "results/{dataset}/logs/evaluate_boxes_{method}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.evaluate_boxes {params.data} --split {params.split} --cams {input.cams}"
        " --method {wildcards.method} --cfg '{params.cfg}' --out {output} 2>&1 | tee {log}"


LABEL_KEYS = ("alpha_low", "alpha_high", "crf")


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
        cfg=lambda wc: stage(wc.dataset, "affinity", LABEL_KEYS),
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=240,
    log:
        "results/{dataset}/logs/affinity_labels_{method}.shard-{shard}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.affinity_labels {params.data} --split {params.split} --eval-split {params.eval_split}"
        " --shard {wildcards.shard} --cams {input.cams} --cfg '{params.cfg}' --workers {threads}"
        " --out {output.labels} --tally {output.tally} 2>&1 | tee {log}"


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
        cfg=lambda wc: stage(wc.dataset, "affinity", exclude=LABEL_KEYS),
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
        "python -m stages.train_affinity {params.data} --split {params.split} --labels {input.labels}"
        " --cfg '{params.cfg}' --device {params.device} --seed {params.seed} --threads {threads}"
        " --out {output.ckpt} --report {output.report} 2>&1 | tee {log}"


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
        cfg=lambda wc: stage(wc.dataset, "random_walk"),
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
        "python -m stages.propagate {params.data} --split {params.split} --eval-split {params.eval_split}"
        " --shard {wildcards.shard} --cams {input.cams} --affinity {input.affinity} --backbone {params.backbone}"
        " --method {wildcards.method} --cfg '{params.cfg}' --device {params.device} --threads {threads}"
        " --out {output.maps} --tally {output.tally} 2>&1 | tee {log}"


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
        cfg=lambda wc: stage(wc.dataset, "refine"),
        source=lambda wc: cfgmod.stage_config(config, wc.dataset, "refine")["source"],
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
        "python -m stages.refine {params.data} --split {params.split} --eval-split {params.eval_split}"
        " --shard {wildcards.shard} --maps {input.maps} --source {params.source} --method {wildcards.method}"
        " --bg-threshold {params.bg} --cfg '{params.cfg}' --workers {threads} --out {output.labels}"
        " --tally {output.tally} 2>&1 | tee {log}"


# Segmentation: segnet/{labels}.pt is trained on pseudo/{labels}.h5, or on the ground truth when
# labels is `full` (the fully-supervised reference, same network and schedule).
SEG_TEST_KEYS = ("test_scales", "test_flip", "test_crf", "crf")


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
        cfg=lambda wc: stage(wc.dataset, "segmentation", exclude=(*SEG_TEST_KEYS, "labels_from")),
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
        "python -m stages.train_segmentation {params.data} --split {params.split} --labels {params.labels}"
        " --cfg '{params.cfg}' --device {params.device} --seed {params.seed} --threads {threads}"
        " --out {output.ckpt} --report {output.report} 2>&1 | tee {log}"


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
        cfg=lambda wc: stage(wc.dataset, "segmentation", SEG_TEST_KEYS),
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
        "python -m stages.predict {params.data} --split {params.split} --shard {wildcards.shard}"
        " --model {input.model} --backbone {params.backbone} --cfg '{params.cfg}' --device {params.device}"
        " --threads {threads} --out {output.preds} --tally {output.tally} 2>&1 | tee {log}"


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
        artifact=r"(cams|rw|pseudo|pred)/\w+|affinity/\w+_labels",
    params:
        classes=lambda wc: json.dumps(ds(wc.dataset)["classes"]),
    log:
        "results/{dataset}/logs/gather_{artifact}.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.gather --classes '{params.classes}' --shards {input.shards} --tallies {input.tallies}"
        " --out {output.maps} --report {output.report} 2>&1 | tee {log}"


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
        "python -m stages.evaluate {params.data} --split {params.split} --preds {input.preds}"
        " --out {output} 2>&1 | tee {log}"


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
        "python -m stages.evaluate {params.data} --split {params.split} --preds {input.preds}"
        " --method {params.method} --classifier {input.classifier} --seeds {input.seeds}"
        " --pseudo {input.pseudo} --full {input.full} --out {output} 2>&1 | tee {log}"


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
        "python -m stages.summarize_cams --seeds {input.seeds} --boxes {input.boxes}"
        " --timing {input.timing} --out {output} 2>&1 | tee {log}"


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
        seeds=lambda wc, input: " ".join(f"{Path(f).stem}={f}" for f in input.seeds),
        histories=lambda wc, input: " ".join(
            [f"classifier={input.classifier}"] + [f"affinity={f}" for f in input.affinity]
            + [f"segnet_weak={input.segnet}", f"segnet_full={input.segnet_full}"]),
        rw=lambda wc, input: f"--rw {input.rw}" if input.rw else "",
        anchors=lambda wc: "--voc-anchors" if ds(wc.dataset)["kind"] in ("voc", "demo") else "",
        samples=lambda wc: cfgmod.stage_config(config, wc.dataset, "report")["samples"],
    log:
        "results/{dataset}/logs/report.log",
    conda:
        "envs/wsss.yaml"
    shell:
        "python -m stages.report {params.data} --split {params.split} --val-split {params.val}"
        " --title 'WSSS run: {wildcards.dataset}' --miou {input.miou} --seeds {params.seeds}"
        " --histories {params.histories} --cams {input.cams} {params.rw} --pseudo {input.pseudo}"
        " --preds weak={input.preds} full={input.preds_full} --samples {params.samples} {params.anchors}"
        " --out {output} 2>&1 | tee {log}"
