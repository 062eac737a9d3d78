# The final pseudo-labels: random-walk maps (or CAMs, refine.source) through refine.steps.


rule refine:
    input:
        data=dataset_files,
        maps=refine_source,
        calibration=lambda wc: calibration_record("seeds", "seeds", "bg_threshold")(wc) if not uses_rw(wc.dataset) else [],
    output:
        labels=shard_file("results/{dataset}/pseudo/{method}.h5"),
        tally=shard_file("results/{dataset}/pseudo/{method}.json"),
    params:
        data=lambda wc: dataset_args(wc.dataset),
        split=lambda wc: split_of(wc.dataset, "cams"),
        eval_split=lambda wc: split_of(wc.dataset, "seeds"),
        settings=settings("refine"),
        bg=lambda wc: cfgmod.stage_config(config, wc.dataset, "seeds")["bg_threshold"],
        calibration=calibration_flag("--bg-calibration"),
        affinity=lambda wc: affinity_kind(wc.dataset),
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=240,
    benchmark:
        "results/{dataset}/benchmarks/refine_{method}.{scatteritem}.tsv"
    log:
        "results/{dataset}/logs/refine_{method}.shard-{scatteritem}.log",
    conda:
        ENV
    shell:
        "python -m stages.refine {params.data} --split {params.split:q} --eval-split {params.eval_split:q}"
        " --shard {wildcards.scatteritem} --maps {input.maps:q} --method {wildcards.method}"
        " --affinity {params.affinity:q} --bg-threshold {params.bg:q} {params.calibration:q} {params.settings:q}"
        " --workers {threads} --out {output.labels:q}"
        " --tally {output.tally:q} 2>&1 | tee {log:q}"
