# The WSSS pipeline as a DAG over cached artifacts (docs/design.md): the table of contents.
#   snakemake --cores 2 results/demo/miou.json      (results/demo/report.html: the report)
# Each rule calls one stage module (stages/) with explicit paths; a stage's settings go through
# params as named options, so changing a value in config.yaml reruns only the rules that use it.
# Per-image stages run as `shards` jobs each (config; scattergather) whose files rule gather merges
# into the one artifact the next stage reads. Rules that may use a GPU declare resources gpu=1;
# profiles/default caps them locally, profiles/slurm turns them into GPU requests. Heavy rules
# write their wall time and memory under results/{dataset}/benchmarks/.
from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"   # validated against pipeline/core/config.schema.yaml


include: "rules/common.smk"          # helpers: dataset inputs, settings as options, shards
include: "rules/data.smk"            # make_demo, coco_index, coco_masks, check_dataset
include: "rules/classifier.smk"      # train_classifier, train_recam
include: "rules/cams.smk"            # extract_cams, evaluate_seeds, evaluate_boxes, summarize_cams
include: "rules/affinity.smk"        # affinity_labels, train_affinity, propagate
include: "rules/irn.smk"             # ir_labels, train_irn, propagate_irn
include: "rules/refine.smk"          # refine
include: "rules/segmentation.smk"    # train_segmentation, predict
include: "rules/gather.smk"          # gather (the shards of a per-image stage), export_png
include: "rules/evaluation.smk"      # evaluate_full, evaluate, report
include: "rules/estimate.smk"        # estimate: the expected time of each heavy stage
include: "rules/deliverables.smk"    # segment_unlabelled, deliverables (results/{dataset}/all)


# Cheap rules (merging, scoring, summaries, the report, PNG export) run in the Snakemake process
# itself, not as cluster jobs.
localrules:
    all,
    make_demo,
    check_dataset,
    gather,
    export_png,
    summarize_cams,
    evaluate_full,
    evaluate,
    report,
    estimate,
    deliverables,


rule all:
    default_target: True
    input:
        "results/demo/report.html",
        "results/demo/seeds/summary.json",
        "results/demo/rw/cam.json",
        "results/demo/rw/gradcam.json",
