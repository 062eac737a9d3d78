"""The random walk of a split's CAMs over ground-truth affinities (1 inside a label, --cross across),
scored on that split: what the rw stage would reach with a perfect AffinityNet, beside what it
reached (docs/diagnostics.md). A diagnostic run by hand, not a rule:
python -m stages.diagnostics.walk_ceiling --root ... --classes ... --split train --cams ... --stride 8 --out X.json"""
from pipeline.diagnostics.walk_ceiling import ceiling_confusion
from pipeline.core.device import set_threads
from pipeline.core.store import ArtifactReader
from pipeline.maps.metrics import scores
from stages._args import add_dataset, dataset, parse, parser, write_json
from stages._settings import add_settings
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p)
    p.add_argument("--cams", required=True, help="HDF5 written by extract_cams")
    p.add_argument("--stride", type=int, required=True, help="the affinity grid's stride (affinity.stride)")
    p.add_argument("--cross", type=float, default=0.2,
                   help="affinity between cells of two labels (raised to beta: 0.2^8 = 2.6e-6)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_settings(p, "propagate")
    p.add_argument("--out", required=True, help="JSON output")
    args, cfg = parse(p, argv)

    set_threads(args.threads)
    voc = dataset(args, args.split)
    voc.check(masks=True)
    matrix = ceiling_confusion(ArtifactReader(args.cams), voc, args.stride, args.cross, cfg)
    result = {"split": args.split, "images": len(voc), "stride": args.stride, "cross": args.cross, **cfg,
              **scores(matrix, voc.classes), "confusion": matrix.tolist()}
    write_json(args.out, result)
    print(f"walk_ceiling: {len(voc)} images of '{args.split}', logt {cfg['logt']}: mIoU {result['miou']:.4f}, "
          f"fg precision {result['fg_precision']:.3f} recall {result['fg_recall']:.3f} -> {args.out}")


if __name__ == "__main__":
    main()
