# Everything a dataset can produce, as one target: results/{dataset}/all (a manifest of it). The
# pseudo-labels and the predictions as VOC-palette PNGs, the trained segmentation network, the report,
# the network's labels for root/unlabelled/ when the dataset has that folder, and miou.json where the
# val split has masks. None of it needs a mask but miou.json.


rule segment_unlabelled:
    input:
        model=final_input("results/{dataset}/segnet/{method}.pt"),
        images=lambda wc: unlabelled_folder(wc.dataset) or [],
    output:
        directory("results/{dataset}/unlabelled"),
    params:
        scales=lambda wc: cfgmod.stage_config(config, wc.dataset, "segmentation")["test_scales"],
        flip=lambda wc: [] if cfgmod.stage_config(config, wc.dataset, "segmentation")["test_flip"] else ["--no-flip"],
        device=config["device"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    log:
        "results/{dataset}/logs/segment_unlabelled.log",
    conda:
        ENV
    shell:
        "python -m stages.segment_folder --model {input.model:q} --images {input.images:q} --out {output:q}"
        " --scales {params.scales:q} {params.flip:q} --device {params.device:q} --threads {threads} 2>&1 | tee {log:q}"


rule deliverables:
    input:
        unpack(deliverable_files),
    output:
        "results/{dataset}/all",
    params:
        named=lambda wc, input: [f"{name}={path}" for name, path in input.items()],
    log:
        "results/{dataset}/logs/deliverables.log",
    conda:
        ENV
    shell:
        "python -m stages.deliverables --items {params.named:q} --out {output:q} 2>&1 | tee {log:q}"
