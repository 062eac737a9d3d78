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
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        settings=lambda wc: settings("extract_vit_cams" if wc.method in VIT_METHODS else "extract_cnn_cams")(wc),
        backbone=lambda wc: cfgmod.stage_config(config, wc.dataset, NETS[classifier_of(wc.method)])["backbone"],
        device=config["device"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    benchmark:
        "results/{dataset}/benchmarks/extract_cams_{method}.{scatteritem}.tsv"
    log:
        "results/{dataset}/logs/extract_cams_{method}.shard-{scatteritem}.log",
    shell:
        "python -m stages.extract_cams {params.data} --split {params.split:q} --shard {wildcards.scatteritem}"
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
    shell:
        "python -m stages.summarize_cams --seeds {input.seeds:q} --boxes {input.boxes:q}"
        " --timing {input.timing:q} --out {output:q} 2>&1 | tee {log:q}"
