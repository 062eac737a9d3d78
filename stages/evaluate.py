"""Score predictions against the ground truth, with the run's ladder: python -m stages.evaluate ...

Without --classifier/--seeds/--pseudo it writes the scores only (the fully-supervised reference)."""
import json
from pathlib import Path

from pipeline.core.store import ArtifactReader
from pipeline.evaluation.evaluate import evaluate_predictions, final_report, ladder
from pipeline.maps.calibration import value_text
from stages._args import add_dataset, dataset, parser, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p)
    p.add_argument("--preds", required=True, help="HDF5 of label maps written by stages.predict")
    p.add_argument("--method", default=None, help="the CAM method behind the pseudo-labels")
    p.add_argument("--classifier", help="classifier report (JSON)")
    p.add_argument("--seeds", help="seed report of the method (JSON)")
    p.add_argument("--pseudo", help="refinement report of the method (JSON)")
    p.add_argument("--full", help="miou_full.json of the fully-supervised reference")
    p.add_argument("--walk-calibration", nargs="*", default=[],
                   help="the walk's calibration record (random_walk.alpha auto, or irn.logt / irn.walk_bg auto), "
                        "shown on the ladder's walk row")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    voc = dataset(args, args.split)
    voc.check(masks=True)
    scores = evaluate_predictions(ArtifactReader(args.preds), voc)
    if args.pseudo is None:
        write_json(args.out, {"labels": "ground truth", **scores})
        print(f"evaluate: {args.split} mIoU {scores['miou']:.4f} (full supervision) -> {args.out}")
    else:
        full = json.loads(Path(args.full).read_text()) if args.full else None
        rows = ladder(args.classifier, args.seeds, args.pseudo, scores, full, args.walk_calibration)
        report = final_report(scores, rows, full, args.method)
        write_json(args.out, report)
        for row in rows:
            chosen = f"  ({row['calibration']['setting']} = {value_text(row['calibration']['chosen'])}, " \
                f"{row['calibration']['mode']})" if "calibration" in row else ""
            print(f"  {row['stage']:<40} {row['metric']:<5} {row['split']:<10} {row['value']:.4f}{chosen}")
        ratio = report["weak_over_full"]
        print(f"evaluate: {args.split} mIoU {scores['miou']:.4f}" + (f", weak / full {ratio:.3f}" if ratio else "")
              + f" -> {args.out}")


if __name__ == "__main__":
    main()
