# The final scores (miou.json with the run's ladder) and the HTML report.


rule evaluate_full:
    input:
        data=dataset_files,
        preds="results/{dataset}/pred/full.h5",
    output:
        "results/{dataset}/miou_full.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "scored_val"),
    log:
        "results/{dataset}/logs/evaluate_full.log",
    conda:
        ENV
    shell:
        "python -m stages.evaluate {params.data} --split {params.split:q} --preds {input.preds:q}"
        " --out {output:q} 2>&1 | tee {log:q}"


rule evaluate:
    input:
        data=dataset_files,
        preds=final_input("results/{dataset}/pred/{method}.h5"),
        classifier="results/{dataset}/classifier.json",
        seeds=if_scored("seeds", final_input("results/{dataset}/seeds/{method}.json")),
        pseudo=final_input("results/{dataset}/pseudo/{method}.json"),
        full=if_full("results/{dataset}/miou_full.json"),
        walk_calibration=final_walk_calibration,
    output:
        "results/{dataset}/miou.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "scored_val"),
        method=lambda wc: cfgmod.stage_config(config, wc.dataset, "segmentation")["labels_from"],
        seeds=lambda wc, input: ["--seeds", *input.seeds] if input.seeds else [],
        full=lambda wc, input: ["--full", *input.full] if input.full else [],
        walk_calibration=lambda wc, input: ["--walk-calibration", *input.walk_calibration] if input.walk_calibration else [],
    log:
        "results/{dataset}/logs/evaluate.log",
    conda:
        ENV
    shell:
        "python -m stages.evaluate {params.data} --split {params.split:q} --preds {input.preds:q}"
        " --method {params.method:q} --classifier {input.classifier:q} {params.seeds:q}"
        " --pseudo {input.pseudo:q} {params.full:q} {params.walk_calibration:q} --out {output:q} 2>&1 | tee {log:q}"


rule report:
    input:
        data=dataset_files,
        miou=if_scored("scored_val", "results/{dataset}/miou.json"),
        seeds=if_scored("seeds", per_method("results/{dataset}/seeds/{method}.json")),
        classifier="results/{dataset}/classifier.json",
        affinity=final_if_rw("results/{dataset}/{affinity}/{method}.json"),
        segnet=final_input("results/{dataset}/segnet/{method}.json"),
        segnet_full=if_full("results/{dataset}/segnet/full.json"),
        cams=final_input("results/{dataset}/cams/{method}.h5"),
        rw=final_if_rw("results/{dataset}/{rw}/{method}.h5"),
        pseudo=final_input("results/{dataset}/pseudo/{method}.h5"),
        preds=final_input("results/{dataset}/pred/{method}.h5"),
        preds_full=if_full("results/{dataset}/pred/full.h5"),
    output:
        report("results/{dataset}/report.html", category="Report"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "cams"),
        val=lambda wc: ds(wc.dataset)["splits"]["val"],
        miou=lambda wc, input: ["--miou", *input.miou] if input.miou else [],
        seeds=lambda wc, input: ["--seeds", *(f"{Path(f).stem}={f}" for f in input.seeds)] if input.seeds else [],
        histories=lambda wc, input: [f"classifier={input.classifier}", *(f"affinity={f}" for f in input.affinity),
                                     f"segnet_weak={input.segnet}", *(f"segnet_full={f}" for f in input.segnet_full)],
        preds=lambda wc, input: [f"weak={input.preds}", *(f"full={f}" for f in input.preds_full)],
        rw=lambda wc, input: ["--rw", *input.rw] if input.rw else [],
        anchors=lambda wc: [flag] if (flag := ANCHOR_FLAGS.get(ds(wc.dataset)["kind"])) else [],
        samples=lambda wc: cfgmod.stage_config(config, wc.dataset, "report")["samples"],
    log:
        "results/{dataset}/logs/report.log",
    conda:
        ENV
    shell:
        "python -m stages.report {params.data} --split {params.split:q} --val-split {params.val:q}"
        " --title 'WSSS run: {wildcards.dataset}' {params.miou:q} {params.seeds:q}"
        " --histories {params.histories:q} --cams {input.cams:q} {params.rw:q} --pseudo {input.pseudo:q}"
        " --preds {params.preds:q} --samples {params.samples:q} {params.anchors:q}"
        " --out {output:q} 2>&1 | tee {log:q}"
