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
        amp=config["amp"],
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
    conda:
        ENV
    shell:
        "python -m stages.train_classifier {params.data} --train-split {params.train:q}"
        " --val-split {params.val:q} {params.settings:q} --device {params.device:q} --amp {params.amp:q} --seed {params.seed:q}"
        " --threads {threads} --out {output.ckpt:q} --report {output.report:q} 2>&1 | tee {log:q}"


# ReCAM's extra training step: the CNN classifier goes on beside a bias-free classifier W_new
# (pipeline/classifier/recam.py); CAM method recam reads the result.
rule train_recam:
    input:
        data=dataset_files,
        classifier="results/{dataset}/classifier.pt",
    output:
        ckpt="results/{dataset}/classifier_recam.pt",
        report="results/{dataset}/classifier_recam.json",
    params:
        data=lambda wc: dataset_args(wc.dataset),
        train=lambda wc: ds(wc.dataset)["splits"]["classifier"],
        val=lambda wc: ds(wc.dataset)["splits"]["classifier_val"],
        settings=settings("train_recam"),
        device=config["device"],
        amp=config["amp"],
        seed=config["seed"],
    threads: THREADS
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=360,
    benchmark:
        "results/{dataset}/benchmarks/train_recam.tsv"
    log:
        "results/{dataset}/logs/train_recam.log",
    conda:
        ENV
    shell:
        "python -m stages.train_recam {params.data} --train-split {params.train:q} --val-split {params.val:q}"
        " --classifier {input.classifier:q} {params.settings:q} --device {params.device:q} --amp {params.amp:q}"
        " --seed {params.seed:q}"
        " --threads {threads} --out {output.ckpt:q} --report {output.report:q} 2>&1 | tee {log:q}"
