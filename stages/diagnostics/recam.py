"""ReCAM's map beside the CAM and W_new's own map on a classifier_recam.pt, with the sign of the
features (docs/recam.md): python -m stages.diagnostics.recam ..."""
from pipeline.cams.seeds import sweep_values
from pipeline.diagnostics.recam import diagnose
from stages._args import check_classes, on_device, write_json
from stages._main import stage_main
from stages.diagnostics import classifier_diagnosis, print_curves


@stage_main
def main(argv=None) -> None:
    args, voc, model, meta = classifier_diagnosis(__doc__, argv, "checkpoint written by train_recam")
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
    print_curves(result["curves"], 6)


if __name__ == "__main__":
    main()
