# Segmentation: segnet/{labels}.pt is trained on pseudo/{labels}.h5, or on the ground truth when
# labels is `full` (the fully-supervised reference, same network and schedule); predictions on val.


rule train_segmentation:
    input:
        data=dataset_files,
        labels=pseudo_labels,
    output:
        ckpt="results/{dataset}/segnet/{labels}.pt",
        report="results/{dataset}/segnet/{labels}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "cams"),
        labels=lambda wc, input: input.labels or "gt",
        settings=settings("train_segmentation"),
        device=config["device"],
        amp=config["amp"],
        seed=config["seed"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=1440,
    benchmark:
        "results/{dataset}/benchmarks/train_segmentation_{labels}.tsv"
    log:
        "results/{dataset}/logs/train_segmentation_{labels}.log",
    conda:
        ENV
    shell:
        "python -m stages.train_segmentation {params.data} --split {params.split:q} --labels {params.labels:q}"
        " {params.settings:q} --device {params.device:q} --amp {params.amp:q} --seed {params.seed:q} --threads {threads}"
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
        amp=config["amp"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    benchmark:
        "results/{dataset}/benchmarks/predict_{labels}.{scatteritem}.tsv"
    log:
        "results/{dataset}/logs/predict_{labels}.shard-{scatteritem}.log",
    conda:
        ENV
    shell:
        "python -m stages.predict {params.data} --split {params.split:q} --shard {wildcards.scatteritem}"
        " --model {input.model:q} --backbone {params.backbone:q} {params.settings:q} --device {params.device:q} --amp {params.amp:q}"
        " --threads {threads} --out {output.preds:q} --tally {output.tally:q} 2>&1 | tee {log:q}"
