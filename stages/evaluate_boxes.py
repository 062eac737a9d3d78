"""Score WSOL boxes drawn from CAMs against the VOC boxes of a split: python -m stages.evaluate_boxes ..."""
from pipeline.cams.boxes import evaluate
from pipeline.cams.seeds import sweep_values
from pipeline.core.store import ArtifactReader
from stages._args import cams_scoring, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    args, cfg, voc = cams_scoring(__doc__, "evaluate_boxes", argv, masks=False)
    result = evaluate(ArtifactReader(args.cams), voc, sweep_values(*cfg["sweep"]), cfg["mode"],
                      cfg["threshold"], cfg["iou"])
    write_json(args.out, {"method": args.method, **result})
    print(f"evaluate_boxes: {args.method} CorLoc {result['corloc']:.4f} at {result['threshold']} "
          f"({result['mode']}, IoU >= {result['iou']}), MaxBoxAcc {result['maxboxacc']:.4f} at "
          f"{result['best_threshold']}, {result['pairs']} pairs over {result['images']} images")


if __name__ == "__main__":
    main()
