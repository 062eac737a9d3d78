"""Random-walk propagation of one shard's CAMs over AffinityNet affinities: python -m stages.propagate ..."""
from pipeline.affinity.propagate import argmax_confusion, propagate
from pipeline.core.device import set_threads
from pipeline.core.store import ArtifactReader
from pipeline.models.affinity_net import load_affinity_net
from stages._args import on_device, parse, resolve_auto, shard_datasets, shard_parser, write_json
from stages._settings import add_settings
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = shard_parser(__doc__, "float16 maps, background first", eval_split=True)
    p.add_argument("--cams", required=True, help="HDF5 written by extract_cams")
    p.add_argument("--affinity", required=True, help="checkpoint written by train_affinity")
    p.add_argument("--backbone", default=None, help="expected backbone (config); a mismatch is an error")
    p.add_argument("--method", required=True)
    add_settings(p, "propagate")
    p.add_argument("--calibration", default=None, help="JSON of stages.calibrate_walk (alpha auto)")
    args, cfg = parse(p, argv)
    record = resolve_auto(cfg, ("alpha",), args.calibration, "random_walk.alpha", "calibrate_walk")

    set_threads(args.threads)
    voc, eval_voc = shard_datasets(args, eval_split=True)
    model, meta = load_affinity_net(args.affinity, args.backbone)
    with on_device(args) as device:
        tally = propagate(model, meta, ArtifactReader(args.cams), voc, args.out, cfg, device, affinity=args.affinity)
    confusion = argmax_confusion(ArtifactReader(args.out), eval_voc, desc="random-walk mIoU")
    write_json(args.tally, {"method": args.method, "split": args.split, "eval_split": args.eval_split,
                            "eval_images": len(eval_voc), **tally, **({"calibration": record} if record else {}),
                            "confusion": [["rw", confusion.tolist()]]})
    print(f"propagate: {args.method} random walk of {len(voc)} images of shard {args.shard} ({tally['computed_now']} "
          f"computed now) -> {args.out}")


if __name__ == "__main__":
    main()
