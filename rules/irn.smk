# IRN's inter-pixel relations (docs/irn.md): IR labels from the CAMs, the boundary network's
# training, and IRN's random walk over its path affinities. Its artifacts live beside
# AffinityNet's (irn/, rw_irn/), so both chains exist in one results dir; affinity.kind picks
# the one whose walk refine reads.


rule ir_labels:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
    output:
        labels=shard_file("results/{dataset}/irn/{method}_labels.h5"),
        tally=shard_file("results/{dataset}/irn/{method}_labels.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "cams"),
        eval_split=lambda wc: split_of(wc.dataset, "seeds"),
        settings=settings("ir_labels"),
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=240,
    benchmark:
        "results/{dataset}/benchmarks/ir_labels_{method}.{scatteritem}.tsv"
    log:
        "results/{dataset}/logs/ir_labels_{method}.shard-{scatteritem}.log",
    conda:
        ENV
    shell:
        "python -m stages.ir_labels {params.data} --split {params.split:q} --eval-split {params.eval_split:q}"
        " --shard {wildcards.scatteritem} --cams {input.cams:q} {params.settings:q} --workers {threads}"
        " --out {output.labels:q} --tally {output.tally:q} 2>&1 | tee {log:q}"


rule train_irn:
    input:
        data=dataset_files,
        labels="results/{dataset}/irn/{method}_labels.h5",
    output:
        ckpt="results/{dataset}/irn/{method}.pt",
        report="results/{dataset}/irn/{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "cams"),
        settings=settings("train_irn"),
        device=config["device"],
        amp=config["amp"],
        seed=config["seed"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=720,
    benchmark:
        "results/{dataset}/benchmarks/train_irn_{method}.tsv"
    log:
        "results/{dataset}/logs/train_irn_{method}.log",
    conda:
        ENV
    shell:
        "python -m stages.train_irn {params.data} --split {params.split:q} --labels {input.labels:q}"
        " {params.settings:q} --device {params.device:q} --amp {params.amp:q} --seed {params.seed:q} --threads {threads}"
        " --out {output.ckpt:q} --report {output.report:q} 2>&1 | tee {log:q}"


rule calibrate_irn_walk:
    """irn.logt / irn.walk_bg auto: the walk length and background of best walk mIoU on the calibration split."""
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
        calibration_cams=calibration_inputs,
        boundary="results/{dataset}/irn/{method}.pt",
    output:
        "results/{dataset}/calibration/rw_irn_{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        calibration=calibration_args,
        settings=settings("calibrate_irn_walk"),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, "irn")["backbone"],
        device=config["device"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    log:
        "results/{dataset}/logs/calibrate_irn_walk_{method}.log",
    conda:
        ENV
    shell:
        "python -m stages.calibrate_irn_walk {params.data} --split {params.split:q} --cams {input.cams:q}"
        " {params.calibration:q} --boundary {input.boundary:q} --backbone {params.backbone:q}"
        " --method {wildcards.method} {params.settings:q} --device {params.device:q} --threads {threads}"
        " --out {output:q} 2>&1 | tee {log:q}"


rule propagate_irn:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
        boundary="results/{dataset}/irn/{method}.pt",
        calibration=irn_walk_calibration,
    output:
        maps=shard_file("results/{dataset}/rw_irn/{method}.h5"),
        tally=shard_file("results/{dataset}/rw_irn/{method}.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "cams"),
        eval_split=lambda wc: split_of(wc.dataset, "seeds"),
        settings=settings("propagate_irn"),
        calibration=calibration_flag("--calibration"),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, "irn")["backbone"],
        device=config["device"],
        amp=config["amp"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    benchmark:
        "results/{dataset}/benchmarks/propagate_irn_{method}.{scatteritem}.tsv"
    log:
        "results/{dataset}/logs/propagate_irn_{method}.shard-{scatteritem}.log",
    conda:
        ENV
    shell:
        "python -m stages.propagate_irn {params.data} --split {params.split:q} --eval-split {params.eval_split:q}"
        " --shard {wildcards.scatteritem} --cams {input.cams:q} --boundary {input.boundary:q}"
        " --backbone {params.backbone:q} --method {wildcards.method} {params.settings:q} {params.calibration:q} --device {params.device:q} --amp {params.amp:q}"
        " --threads {threads} --out {output.maps:q} --tally {output.tally:q} 2>&1 | tee {log:q}"
