# The datasets: the generated demo, and a COCO-format dataset's index and rasterised masks
# (sharded like the per-image stages); the stages read only these, after rule check_dataset passed them.


rule make_demo:
    output:
        directory("results/{demo}/data"),
    params:
        classes=lambda wc: json.dumps(ds(wc.demo)["classes"]),
        generator=lambda wc: json.dumps(ds(wc.demo)["generator"], sort_keys=True),
    log:
        "results/{demo}/logs/make_demo.log",
    conda:
        ENV
    shell:
        "python -m stages.make_demo --out {output:q} --classes {params.classes:q}"
        " --generator {params.generator:q} 2>&1 | tee {log:q}"


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
        ENV
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
        "results/{coco}/logs/coco_masks_{split}.shard-{scatteritem}.log",
    conda:
        ENV
    shell:
        "python -m stages.coco_masks --index {input.index:q} --shard {wildcards.scatteritem:q}"
        " --out {output.maps:q} --tally {output.tally:q} 2>&1 | tee {log:q}"


rule check_dataset:
    input:
        dataset_sources,
    output:
        "results/{dataset}/checks/dataset.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        check=lambda wc: dataset_check_args(wc.dataset),
        cache=lambda wc: f"results/{wc.dataset}/checks/passed.json",
    log:
        "results/{dataset}/logs/check_dataset.log",
    conda:
        ENV
    shell:
        "python -m stages.check_dataset {params.data} {params.check} --cache {params.cache:q}"
        " --out {output:q} 2>&1 | tee {log:q}"
