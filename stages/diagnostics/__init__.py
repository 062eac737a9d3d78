"""The diagnostics as command-line programs (pipeline/diagnostics/): run by hand, not by a rule.

The classifier diagnoses (attnfusion, class_tokens, recam) share their command line and set-up:
a checkpoint, the first --images images of a split with their masks, the CAM protocol's scales and
flip, and the seed threshold sweep their curves are scored over."""
from pipeline.core.device import set_threads
from pipeline.models.classifier import load_classifier
from stages._args import add_dataset, add_runtime, dataset, json_arg, parser

CNN_SCALES = [1.0, 0.5, 1.5, 2.0]


def classifier_diagnosis(doc: str, argv, checkpoint: str, scales=CNN_SCALES, scales_help=None):
    """Parse a classifier diagnosis's options and open what it reads: (args, the split's first
    --images images, masks checked, model, meta)."""
    p = parser(doc)
    add_dataset(p)
    add_runtime(p)
    p.add_argument("--classifier", required=True, help=checkpoint)
    p.add_argument("--images", type=int, default=None, help="only the first N images of the split")
    p.add_argument("--scales", type=json_arg, default=list(scales), help=scales_help)
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--sweep", type=json_arg, default=[0.05, 0.60, 0.05], help="start, stop, step")
    p.add_argument("--out", required=True, help="JSON output")
    args = p.parse_args(argv)

    set_threads(args.threads)
    voc = dataset(args, args.split)
    voc = voc.subset(voc.ids[:args.images]) if args.images else voc
    voc.check(masks=True)
    model, meta = load_classifier(args.classifier)
    return args, voc, model, meta


def print_curves(curves: dict, width: int) -> None:
    """One line per seed curve: its mIoU at each threshold and its best point."""
    for name, curve in curves.items():
        best = max(curve, key=lambda r: r["miou"])
        print(f"{name:{width}s} " + " ".join(f"{r['miou']:.3f}" for r in curve)
              + f"  best {best['miou']:.3f} at {best['threshold']}")
