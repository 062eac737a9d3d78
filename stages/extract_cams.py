"""Extract class activation maps of one shard into an HDF5 file: python -m stages.extract_cams ..."""
from pipeline.cams.extract import extract
from pipeline.core.cam_methods import ALL_METHODS
from pipeline.core.config import defaults as config_defaults
from pipeline.core.device import set_threads
from pipeline.models.classifier import load_classifier
from stages._args import check_classes, on_device, parse, shard_datasets, shard_parser, write_json
from stages._settings import add_settings
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = shard_parser(__doc__, "float16 maps with attribute `classes`")
    p.add_argument("--classifier", required=True, help="checkpoint written by train_classifier")
    p.add_argument("--backbone", default=None, help="expected backbone (config); a mismatch is an error")
    p.add_argument("--method", default="cam", choices=ALL_METHODS)
    add_settings(p, "extract_cams")
    p.add_argument("--workers", type=int, default=1)
    args, cfg = parse(p, argv)

    set_threads(args.threads)
    voc, _ = shard_datasets(args)
    model, meta = load_classifier(args.classifier, args.backbone)
    check_classes(args.classifier, meta["classes"], args.classes)
    with on_device(args) as device:
        tally = extract(model, meta, voc, args.out, cfg["scales"], cfg["flip"], device,
                        args.method, cfg["fullycam_levels"], args.workers, classifier=args.classifier,
                        max_side=cfg.get("max_side", config_defaults("cams").get("max_side")),
                        protocol=cfg.get("vit_protocol", "published"))
    write_json(args.tally, {"method": args.method, "split": args.split, **tally})
    print(f"extract_cams: {args.method} maps of {len(voc)} images of shard {args.shard} ({tally['computed_now']} "
          f"computed now in {tally['seconds']:.1f} s) -> {args.out}")


if __name__ == "__main__":
    main()
