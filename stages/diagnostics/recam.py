"""ReCAM's map beside the CAM and W_new's own map on a classifier_recam.pt, with the sign of the
features (docs/recam.md): python -m stages.diagnostics.recam ..."""
from pipeline.diagnostics.recam import diagnose
from pipeline.cams.seeds import sweep_values
from pipeline.core.device import set_threads
from pipeline.models.classifier import load_classifier
from stages._args import add_dataset, add_runtime, check_classes, dataset, json_arg, on_device, parser, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p)
    add_runtime(p)
    p.add_argument("--classifier", required=True, help="checkpoint written by train_recam")
    p.add_argument("--images", type=int, default=None, help="only the first N images of the split")
    p.add_argument("--scales", type=json_arg, default=[1.0, 0.5, 1.5, 2.0])
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--sweep", type=json_arg, default=[0.05, 0.60, 0.05], help="start, stop, step")
    p.add_argument("--out", required=True, help="JSON output")
    args = p.parse_args(argv)

    set_threads(args.threads)
    voc = dataset(args, args.split)
    voc = voc.subset(voc.ids[:args.images]) if args.images else voc
    voc.check(masks=True)
    model, meta = load_classifier(args.classifier)
    check_classes(args.classifier, meta["classes"], args.classes)
    if getattr(model, "recam", None) is None:
        raise SystemExit(f"{args.classifier} has no ReCAM classifier W_new; give the checkpoint train_recam wrote")
    with on_device(args) as device:
        result = diagnose(model, meta, voc, args.scales, args.flip, sweep_values(*args.sweep), device)
    write_json(args.out, result)
    print(f"diagnose_recam: {result['images']} images of {args.split}; negative feature values "
          f"{result['negative_feature_fraction']:.3f}")
    for name, row in result["classes"].items():
        print(f"  {name:12s} cos(W_cls, W_new) {row['cosine']:.3f}  same sign {row['same_sign']:.3f}")
    for name, curve in result["curves"].items():
        best = max(curve, key=lambda r: r["miou"])
        print(f"{name:6s} " + " ".join(f"{r['miou']:.3f}" for r in curve) + f"  best {best['miou']:.3f} at {best['threshold']}")


if __name__ == "__main__":
    main()
