"""Score WSOL boxes drawn from CAMs against the VOC boxes of a split: python -m stages.evaluate_boxes ..."""
from pipeline.cams.boxes import evaluate
from pipeline.cams.seeds import sweep_values
from pipeline.core.store import ArtifactReader
from stages._args import add_dataset, dataset, parser, write_json
from stages._settings import add_settings, settings


def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p)
    p.add_argument("--cams", required=True, help="HDF5 written by extract_cams")
    p.add_argument("--method", required=True)
    add_settings(p, "evaluate_boxes")
    p.add_argument("--out", required=True, help="JSON output")
    args = p.parse_args(argv)
    cfg = settings(args)

    voc = dataset(args, args.split)
    voc.check(masks=False)
    result = evaluate(ArtifactReader(args.cams), voc, sweep_values(*cfg["sweep"]), cfg["mode"],
                      cfg["threshold"], cfg["iou"])
    write_json(args.out, {"method": args.method, **result})
    print(f"evaluate_boxes: {args.method} CorLoc {result['corloc']:.4f} at {result['threshold']} "
          f"({result['mode']}, IoU >= {result['iou']}), MaxBoxAcc {result['maxboxacc']:.4f} at "
          f"{result['best_threshold']}, {result['pairs']} pairs over {result['images']} images")


if __name__ == "__main__":
    main()
