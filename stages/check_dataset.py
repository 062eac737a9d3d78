"""Check a dataset before any stage reads it: python -m stages.check_dataset ...

Every image decodes and fits cams.max_side, annotations name known classes and give every object
a box, masks hold class ids in range (pipeline/data/check.py); given, the training batch sizes fit
their splits and backbone weights given as a checkpoint path fit their network
(pipeline/models/check.py; the Snakefile checks these two while it builds the DAG).
"""

from pipeline.data.check import check_dataset
from pipeline.models.check import check_weights
from stages._args import add_dataset, dataset, json_arg, parser, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p, split_flags=())
    p.add_argument("--kind", required=True, help="dataset kind (voc, demo, coco, ...): which extra checks run")
    p.add_argument("--splits", required=True, type=json_arg, help="JSON {role: split}")
    p.add_argument("--mask-roles", nargs="*", default=[], help="roles whose masks are read (scored splits)")
    p.add_argument("--max-side", required=True, type=int, help="cams.max_side")
    p.add_argument("--batches", type=json_arg, default={}, help="JSON {stage: [role, batch_size]}")
    p.add_argument("--weights", type=json_arg, default={},
                   help="JSON {section: config} of the networks (classifier, classifier_vit, affinity, "
                        "segmentation) whose weights, if a checkpoint path, are checked")
    p.add_argument("--cache", required=True, help="JSON cache of the images that passed (file size, mtime)")
    p.add_argument("--out", required=True, help="JSON report")
    args = p.parse_args(argv)
    splits = {role: dataset(args, split) for role, split in args.splits.items()}
    report = check_dataset(args.kind, splits, set(args.mask_roles), args.max_side, args.batches, args.cache)
    report["weights_checked"] = check_weights(args.weights, args.classes)
    write_json(args.out, report)
    print(f"check_dataset: {sum(report['images'].values())} images of splits {sorted(report['images'])} pass "
          f"({report['read_now']} read now, the rest unchanged since they passed) -> {args.out}")


if __name__ == "__main__":
    main()
