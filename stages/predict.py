"""Predict label maps of one shard of a split with a trained segmentation network: python -m stages.predict ..."""
from pipeline.core.device import set_threads
from pipeline.models.segnet import load_segnet
from pipeline.segmentation.predict import predict
from stages._args import check_classes, on_device, parse, shard_datasets, shard_parser, write_json
from stages._settings import add_settings
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = shard_parser(__doc__, "uint8 label maps")
    p.add_argument("--model", required=True, help="checkpoint written by stages.train_segmentation")
    p.add_argument("--backbone", required=True, help="segmentation.backbone from config (checked against the checkpoint)")
    add_settings(p, "predict")
    args, cfg = parse(p, argv)

    set_threads(args.threads)
    voc, _ = shard_datasets(args)
    model, meta = load_segnet(args.model, args.backbone)
    check_classes(args.model, meta["classes"], voc.classes)
    with on_device(args) as device:
        tally = predict(model, meta, voc, args.out, cfg, device, checkpoint=args.model)
    write_json(args.tally, {"model": args.model, **tally})
    print(f"predict: {len(voc)} images of shard {args.shard} of {args.split} -> {args.out}")


if __name__ == "__main__":
    main()
