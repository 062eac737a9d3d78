# The expected time of each heavy stage before a long run (pipeline/core/estimate.py):
#   snakemake --cores 1 results/voc/estimate.json


rule estimate:
    input:
        # the split lists (or COCO index) it counts; a demo is described by its generator until it exists
        lambda wc: [] if ds(wc.dataset)["kind"] == "demo" else dataset_files(wc),
    output:
        "results/{dataset}/estimate.json",
    params:
        dataset=lambda wc: json.dumps(ds(wc.dataset)),
        sections=lambda wc: json.dumps({s: cfgmod.stage_config(config, wc.dataset, s) for s in (
            "classifier", "vit_classifier", "cams", "affinity", "random_walk", "refine", "segmentation")}),
        root=lambda wc: root(wc.dataset),
        coco=lambda wc: ["--coco-cache", f"results/{wc.dataset}"] if wc.dataset in COCOS else [],
        device=config["device"],
        threads=THREADS,
    log:
        "results/{dataset}/logs/estimate.log",
    conda:
        ENV
    shell:
        "python -m stages.estimate --dataset {wildcards.dataset} --dataset-config {params.dataset:q}"
        " --sections {params.sections:q} --root {params.root:q} {params.coco:q} --device {params.device:q}"
        " --threads {params.threads} --out {output:q} 2>&1 | tee {log:q}"
