# Artifacts of the per-image stages: the shards merged into the one file the next stage reads
# (scattergather: shard), and label artifacts exported as PNG folders.


rule gather:
    input:
        shards=gather.shard("results/{{dataset}}/{{artifact}}.shard-{scatteritem}.h5"),
        tallies=gather.shard("results/{{dataset}}/{{artifact}}.shard-{scatteritem}.json"),
    output:
        maps="results/{dataset}/{artifact}.h5",
        report="results/{dataset}/{artifact}.json",
    wildcard_constraints:
        artifact=r"(cams|rw|rw_irn|pseudo|pred)/\w+|(affinity|irn)/\w+_labels|masks/[A-Za-z0-9_-]+",
    params:
        classes=lambda wc: json.dumps(ds(wc.dataset)["classes"]),
    log:
        "results/{dataset}/logs/gather_{artifact}.log",
    conda:
        ENV
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
        ENV
    shell:
        "python -m stages.export_png --maps {input:q} --out {output:q} 2>&1 | tee {log:q}"
