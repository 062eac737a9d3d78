"""Score WSOL boxes drawn from CAMs against the VOC boxes of a split: python -m stages.evaluate_boxes ..."""
from pipeline.cams.boxes import evaluate
from pipeline.cams.seeds import sweep_values
from pipeline.core.store import ArtifactReader
from stages._args import add_cams_scoring, dataset, parse, parser, write_json


def main(argv=None) -> None:
    p = parser(__doc__)
    add_cams_scoring(p, "evaluate_boxes")
    args, cfg = parse(p, argv)

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
