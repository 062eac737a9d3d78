# CAMs of every method (pipeline/core/cam_methods.py), their seeds and WSOL boxes scored on the
# seeds split, and the summary that compares the methods.


rule extract_cams:
    input:
        data=dataset_files,
        ckpt=classifier_ckpt,
    output:
        maps=shard_file("results/{dataset}/cams/{method}.h5"),
        tally=shard_file("results/{dataset}/cams/{method}.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "cams"),
        settings=lambda wc: settings("extract_vit_cams" if wc.method in VIT_METHODS else "extract_cnn_cams")(wc),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, CAM_SECTIONS[classifier_of(wc.method)])["backbone"],
        device=config["device"],
        amp=config["amp"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    benchmark:
        "results/{dataset}/benchmarks/extract_cams_{method}.{scatteritem}.tsv"
    log:
        "results/{dataset}/logs/extract_cams_{method}.shard-{scatteritem}.log",
    conda:
        ENV
    shell:
        "python -m stages.extract_cams {params.data} --split {params.split:q} --shard {wildcards.scatteritem}"
        " --classifier {input.ckpt:q} --backbone {params.backbone:q} --method {wildcards.method} {params.settings:q}"
        " --device {params.device:q} --amp {params.amp:q} --threads {threads} --out {output.maps:q} --tally {output.tally:q} 2>&1 | tee {log:q}"


rule extract_cams_calibration:
    """The CAMs of the calibration split (a few images), on which `auto` settings are chosen."""
    input:
        data=dataset_files,
        ckpt=classifier_ckpt,
    output:
        maps="results/{dataset}/calibration/cams_{method}.h5",
        tally="results/{dataset}/calibration/cams_{method}.tally.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["calibration"],
        settings=settings("extract_cams"),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, NETS[classifier_of(wc.method)])["backbone"],
        device=config["device"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    log:
        "results/{dataset}/logs/extract_cams_calibration_{method}.log",
    conda:
        ENV
    shell:
        "python -m stages.extract_cams {params.data} --split {params.split:q}"
        " --classifier {input.ckpt:q} --backbone {params.backbone:q} --method {wildcards.method} {params.settings:q}"
        " --device {params.device:q} --threads {threads} --out {output.maps:q} --tally {output.tally:q} 2>&1 | tee {log:q}"


rule calibrate_seeds:
    """seeds.bg_threshold auto: the threshold of best seed mIoU on the calibration split."""
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
        calibration_cams=calibration_inputs,
    output:
        "results/{dataset}/calibration/seeds_{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        calibration=calibration_args,
        settings=settings("calibrate_seeds"),
    log:
        "results/{dataset}/logs/calibrate_seeds_{method}.log",
    conda:
        ENV
    shell:
        "python -m stages.calibrate_seeds {params.data} --split {params.split:q} --cams {input.cams:q}"
        " {params.calibration:q} --method {wildcards.method} {params.settings:q} --out {output:q} 2>&1 | tee {log:q}"


rule evaluate_seeds:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
        calibration=calibration_record("seeds", "seeds", "bg_threshold"),
    output:
        "results/{dataset}/seeds/{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "seeds"),
        settings=settings("evaluate_seeds"),
        calibration=calibration_flag("--calibration"),
    log:
        "results/{dataset}/logs/evaluate_seeds_{method}.log",
    conda:
        ENV
    shell:
        "python -m stages.evaluate_seeds {params.data} --split {params.split:q} --cams {input.cams:q}"
        " --method {wildcards.method} {params.settings:q} {params.calibration:q} --out {output:q} 2>&1 | tee {log:q}"


rule evaluate_boxes:
    input:
        data=dataset_files,
        cams="results/{dataset}/cams/{method}.h5",
    output:
        "results/{dataset}/boxes/{method}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "seeds"),
        settings=settings("evaluate_boxes"),
    log:
        "results/{dataset}/logs/evaluate_boxes_{method}.log",
    conda:
        ENV
    shell:
        "python -m stages.evaluate_boxes {params.data} --split {params.split:q} --cams {input.cams:q}"
        " --method {wildcards.method} {params.settings:q} --out {output:q} 2>&1 | tee {log:q}"


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
        ENV
    shell:
        "python -m stages.summarize_cams --seeds {input.seeds:q} --boxes {input.boxes:q}"
        " --timing {input.timing:q} --out {output:q} 2>&1 | tee {log:q}"
