# The multi-label classifiers that the CAM methods read: results/{dataset}/classifier.pt (CNN),
# classifier_vit.pt (ViT with one class token, config section vit_classifier) and classifier_mct.pt
# (ViT with one class token per class, config section mct_classifier).


rule train_classifier:
    input:
        dataset_files,
    output:
        ckpt="results/{dataset}/{net}.pt",
        report="results/{dataset}/{net}.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        train=lambda wc: ds(wc.dataset)["splits"]["classifier"],
        val=lambda wc: ds(wc.dataset)["splits"]["classifier_val"],
        settings=settings("train_classifier", lambda wc: NETS[wc.net]),
        device=config["device"],
        seed=config["seed"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=720,
    benchmark:
        "results/{dataset}/benchmarks/train_{net}.tsv"
    log:
        "results/{dataset}/logs/train_{net}.log",
    shell:
        "python -m stages.train_classifier {params.data} --train-split {params.train:q}"
        " --val-split {params.val:q} {params.settings:q} --device {params.device:q} --seed {params.seed:q}"
        " --threads {threads} --out {output.ckpt:q} --report {output.report:q} 2>&1 | tee {log:q}"
