"""Choose the seeds' background threshold (seeds.bg_threshold: auto) on the calibration split, or,
without one, by the label-free heuristic: python -m stages.calibrate_seeds ..."""
from pipeline.cams.seeds import SETTING, calibrate_threshold, sweep_values
from pipeline.core.store import ArtifactReader
from pipeline.maps.calibration import auto_record, label_free_threshold
from stages._args import calibration_parser, check_calibration_args, dataset, parse, write_json
from stages._settings import add_settings


def main(argv=None) -> None:
    p = calibration_parser(__doc__)
    p.add_argument("--method", required=True)
    add_settings(p, "calibrate_seeds")
    p.add_argument("--out", required=True, help="JSON: the calibration record")
    args, cfg = parse(p, argv)
    check_calibration_args(args)

    heuristic = label_free_threshold(ArtifactReader(args.cams), dataset(args, args.split))
    calibrated = None
    if args.calibration_split is not None:
        calib = dataset(args, args.calibration_split)
        calib.check(masks=True)
        calibrated = calibrate_threshold(ArtifactReader(args.calibration_cams), calib, sweep_values(*cfg["sweep"]),
                                         cfg["per_class"])
    record = auto_record(SETTING, calibrated, heuristic, "no calibration split in config (datasets.<name>.splits."
                                                       "calibration): the label-free heuristic's threshold is used")
    write_json(args.out, {"method": args.method, **record})
    how = (f"calibrated on {record['images']} images of '{record['split']}' (mIoU {record['miou']:.4f})"
           if record["mode"] == "calibrated" else "label-free heuristic (no calibration split)")
    print(f"calibrate_seeds: {args.method} bg_threshold {record['chosen']}, {how}; heuristic "
          f"{heuristic['value']} -> {args.out}")


if __name__ == "__main__":
    main()
