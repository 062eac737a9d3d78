"""IRN's random walk of one shard's CAMs over the path affinities of its boundary map: python -m stages.propagate_irn ..."""
from pipeline.affinity.irn import propagate_irn
from pipeline.affinity.propagate import argmax_confusion
from pipeline.core.device import set_threads
from pipeline.core.store import ArtifactReader
from pipeline.models.boundary_net import load_boundary_net
from stages._args import on_device, parse, resolve_auto, shard_datasets, shard_parser, write_json
from stages._settings import add_settings
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = shard_parser(__doc__, "float16 maps, background first", eval_split=True)
    p.add_argument("--cams", required=True, help="HDF5 written by extract_cams")
    p.add_argument("--boundary", required=True, help="checkpoint written by train_irn")
    p.add_argument("--backbone", default=None, help="expected backbone (config); a mismatch is an error")
    p.add_argument("--method", required=True)
    add_settings(p, "propagate_irn")
    p.add_argument("--calibration", default=None, help="JSON of stages.calibrate_irn_walk (logt or walk_bg auto)")
    args, cfg = parse(p, argv)
    record = resolve_auto(cfg, ("logt", "walk_bg"), args.calibration, "irn.logt or irn.walk_bg",
                          "calibrate_irn_walk")

    set_threads(args.threads)
    voc, eval_voc = shard_datasets(args, eval_split=True)
    model, meta = load_boundary_net(args.boundary, args.backbone)
    with on_device(args) as device:
        tally = propagate_irn(model, meta, ArtifactReader(args.cams), voc, args.out, cfg, device,
                              boundary_net=args.boundary)
    confusion = argmax_confusion(ArtifactReader(args.out), eval_voc, desc="IRN random-walk mIoU")
    write_json(args.tally, {"method": args.method, "affinity": "irn", "split": args.split,
                            "eval_split": args.eval_split, "eval_images": len(eval_voc), **tally,
                            **({"calibration": record} if record else {}),
                            "confusion": [["rw:irn", confusion.tolist()]]})
    print(f"propagate_irn: {args.method} IRN random walk of {len(voc)} images of shard {args.shard} "
          f"({tally['computed_now']} computed now) -> {args.out}")


if __name__ == "__main__":
    main()
