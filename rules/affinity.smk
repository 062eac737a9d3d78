# AffinityNet: confident labels from the CAMs, its training, and the random walk of the CAMs
# over its affinities.


rule affinity_labels:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
        calibration=label_alphas_calibration,
    output:
        labels=shard_file("results/{dataset}/affinity/{method}_labels.h5"),
        tally=shard_file("results/{dataset}/affinity/{method}_labels.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "cams"),
        eval_split=lambda wc: split_of(wc.dataset, "seeds"),
        settings=settings("affinity_labels"),
        calibration=calibration_flag("--calibration"),
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=240,
    benchmark:
        "results/{dataset}/benchmarks/affinity_labels_{method}.{scatteritem}.tsv"
    log:
        "results/{dataset}/logs/affinity_labels_{method}.shard-{scatteritem}.log",
    conda:
        ENV
    shell:
        "python -m stages.affinity_labels {params.data} --split {params.split:q} --eval-split {params.eval_split:q}"
        " --shard {wildcards.scatteritem} --cams {input.cams:q} {params.settings:q} {params.calibration:q}"
        " --workers {threads}"
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
        split=lambda wc: split_of(wc.dataset, "cams"),
        settings=settings("train_affinity"),
        device=config["device"],
        amp=config["amp"],
        seed=config["seed"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=720,
    benchmark:
        "results/{dataset}/benchmarks/train_affinity_{method}.tsv"
    log:
        "results/{dataset}/logs/train_affinity_{method}.log",
    conda:
        ENV
    shell:
        "python -m stages.train_affinity {params.data} --split {params.split:q} --labels {input.labels:q}"
        " {params.settings:q} --device {params.device:q} --amp {params.amp:q} --seed {params.seed:q} --threads {threads}"
        " --out {output.ckpt:q} --report {output.report:q} 2>&1 | tee {log:q}"


rule calibrate_walk:
    """random_walk.alpha auto: the background power of best walk mIoU on the calibration split."""
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
        calibration_cams=calibration_inputs,
        affinity="results/{dataset}/affinity/{method}.pt",
    output:
        "results/{dataset}/calibration/rw_{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        calibration=calibration_args,
        settings=settings("calibrate_walk"),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, "affinity")["backbone"],
        device=config["device"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    log:
        "results/{dataset}/logs/calibrate_walk_{method}.log",
    conda:
        ENV
    shell:
        "python -m stages.calibrate_walk {params.data} --split {params.split:q} --cams {input.cams:q}"
        " {params.calibration:q} --affinity {input.affinity:q} --backbone {params.backbone:q}"
        " --method {wildcards.method} {params.settings:q} --device {params.device:q} --threads {threads}"
        " --out {output:q} 2>&1 | tee {log:q}"


rule propagate:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
        affinity="results/{dataset}/affinity/{method}.pt",
        calibration=calibration_record("rw", "random_walk", "alpha"),
    output:
        maps=shard_file("results/{dataset}/rw/{method}.h5"),
        tally=shard_file("results/{dataset}/rw/{method}.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "cams"),
        eval_split=lambda wc: split_of(wc.dataset, "seeds"),
        settings=settings("propagate"),
        calibration=calibration_flag("--calibration"),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, "affinity")["backbone"],
        device=config["device"],
        amp=config["amp"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    benchmark:
        "results/{dataset}/benchmarks/propagate_{method}.{scatteritem}.tsv"
    log:
        "results/{dataset}/logs/propagate_{method}.shard-{scatteritem}.log",
    conda:
        ENV
    shell:
        "python -m stages.propagate {params.data} --split {params.split:q} --eval-split {params.eval_split:q}"
        " --shard {wildcards.scatteritem} --cams {input.cams:q} --affinity {input.affinity:q} --backbone {params.backbone:q}"
        " --method {wildcards.method} {params.settings:q} {params.calibration:q} --device {params.device:q}"
        " --amp {params.amp:q} --threads {threads} --out {output.maps:q} --tally {output.tally:q} 2>&1 | tee {log:q}"
