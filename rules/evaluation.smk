# The final scores (miou.json with the run's ladder) and the HTML report.


rule evaluate_full:
    input:
        data=dataset_files,
        preds="results/{dataset}/pred/full.h5",
    output:
        "results/{dataset}/miou_full.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["val"],
    log:
        "results/{dataset}/logs/evaluate_full.log",
    shell:
        "python -m stages.evaluate {params.data} --split {params.split:q} --preds {input.preds:q}"
        " --out {output:q} 2>&1 | tee {log:q}"


rule evaluate:
    input:
        data=dataset_files,
        preds=final_input("results/{dataset}/pred/{method}.h5"),
        classifier="results/{dataset}/classifier.json",
        seeds=final_input("results/{dataset}/seeds/{method}.json"),
        pseudo=final_input("results/{dataset}/pseudo/{method}.json"),
        full="results/{dataset}/miou_full.json",
    output:
        "results/{dataset}/miou.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["val"],
        method=lambda wc: cfgmod.stage_config(config, wc.dataset, "segmentation")["labels_from"],
    log:
        "results/{dataset}/logs/evaluate.log",
    shell:
        "python -m stages.evaluate {params.data} --split {params.split:q} --preds {input.preds:q}"
        " --method {params.method:q} --classifier {input.classifier:q} --seeds {input.seeds:q}"
        " --pseudo {input.pseudo:q} --full {input.full:q} --out {output:q} 2>&1 | tee {log:q}"


rule report:
    input:
        data=dataset_files,
        miou="results/{dataset}/miou.json",
        seeds=per_method("results/{dataset}/seeds/{method}.json"),
        classifier="results/{dataset}/classifier.json",
        affinity=final_if_rw("results/{dataset}/{affinity}/{method}.json"),
        segnet=final_input("results/{dataset}/segnet/{method}.json"),
        segnet_full="results/{dataset}/segnet/full.json",
        cams=final_input("results/{dataset}/cams/{method}.h5"),
        rw=final_if_rw("results/{dataset}/{rw}/{method}.h5"),
        pseudo=final_input("results/{dataset}/pseudo/{method}.h5"),
        preds=final_input("results/{dataset}/pred/{method}.h5"),
        preds_full="results/{dataset}/pred/full.h5",
    output:
        report("results/{dataset}/report.html", category="Report"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: ds(wc.dataset)["splits"]["cams"],
        val=lambda wc: ds(wc.dataset)["splits"]["val"],
        seeds=lambda wc, input: [f"{Path(f).stem}={f}" for f in input.seeds],
        histories=lambda wc, input: [f"classifier={input.classifier}", *(f"affinity={f}" for f in input.affinity),
                                     f"segnet_weak={input.segnet}", f"segnet_full={input.segnet_full}"],
        rw=lambda wc, input: ["--rw", *input.rw] if input.rw else [],
        anchors=lambda wc: [flag] if (flag := ANCHOR_FLAGS.get(ds(wc.dataset)["kind"])) else [],
        samples=lambda wc: cfgmod.stage_config(config, wc.dataset, "report")["samples"],
    log:
        "results/{dataset}/logs/report.log",
    shell:
        "python -m stages.report {params.data} --split {params.split:q} --val-split {params.val:q}"
        " --title 'WSSS run: {wildcards.dataset}' --miou {input.miou:q} --seeds {params.seeds:q}"
        " --histories {params.histories:q} --cams {input.cams:q} {params.rw:q} --pseudo {input.pseudo:q}"
        " --preds weak={input.preds:q} full={input.preds_full:q} --samples {params.samples:q} {params.anchors:q}"
        " --out {output:q} 2>&1 | tee {log:q}"
