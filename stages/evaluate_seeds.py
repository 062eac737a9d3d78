"""Score CAM seeds against the ground truth of a split: python -m stages.evaluate_seeds ..."""
import json
from pathlib import Path

from pipeline.cams.seeds import evaluate, sweep_values
from pipeline.core.store import ArtifactReader
from stages._args import cams_scoring, write_json
from stages._main import stage_main


def resolved_threshold(value, calibration: str | None) -> tuple[float, dict | None]:
    """A fixed threshold as given; `auto`: the value chosen in the calibration record."""
    if value != "auto":
        return value, None
    if calibration is None:
        raise SystemExit("seeds.bg_threshold is auto: --calibration (the JSON of stages.calibrate_seeds) is required")
    record = json.loads(Path(calibration).read_text())
    return record["chosen"], record


@stage_main
def main(argv=None) -> None:
    args, cfg, voc = cams_scoring(__doc__, "evaluate_seeds", argv, masks=True,
                                  extra=[("--calibration", "JSON of stages.calibrate_seeds (bg_threshold auto)")])
    threshold, record = resolved_threshold(cfg["bg_threshold"], args.calibration)
    class_thresholds = record["per_class"]["thresholds"] if record and cfg["per_class"] and "per_class" in record else None
    if cfg["per_class"] and class_thresholds is None:
        raise SystemExit("seeds.per_class is true: it needs bg_threshold auto with a calibration split "
                         f"(the record {args.calibration} has no per-class thresholds)")
    result = evaluate(ArtifactReader(args.cams), voc, threshold, sweep_values(*cfg["sweep"]), class_thresholds)
    write_json(args.out, {"method": args.method, **result, **({"calibration": record} if record else {})})
    best = result["best_on_curve"]
    how = f" ({record['mode']})" if record else ""
    print(f"evaluate_seeds: {args.method} seed mIoU {result['miou']:.4f} at bg {result['threshold']}{how} "
          f"(best on the sweep {best['miou']:.4f} at {best['threshold']}), fg precision "
          f"{result['fg_precision']:.3f} recall {result['fg_recall']:.3f}")


if __name__ == "__main__":
    main()
