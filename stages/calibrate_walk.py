"""Choose the random walk's background power (random_walk.alpha: auto) on the calibration split, or,
without one, as the power that crosses the label-free seed threshold: python -m stages.calibrate_walk ..."""
from pipeline.affinity.propagate import SETTING, alpha_curve
from pipeline.core.device import resolve_device, set_threads
from pipeline.core.store import ArtifactReader
from pipeline.maps.calibration import auto_record, calibrated_record, crossing_alpha, label_free_threshold
from pipeline.models.affinity_net import load_affinity_net
from stages._args import add_runtime, calibration_parser, check_calibration_args, dataset, parse, write_json
from stages._settings import add_settings


def main(argv=None) -> None:
    p = calibration_parser(__doc__)
    p.add_argument("--affinity", required=True, help="checkpoint written by train_affinity")
    p.add_argument("--backbone", default=None, help="expected backbone (config); a mismatch is an error")
    p.add_argument("--method", required=True)
    add_runtime(p)
    add_settings(p, "calibrate_walk")
    p.add_argument("--out", required=True, help="JSON: the calibration record")
    args, cfg = parse(p, argv)
    check_calibration_args(args)

    set_threads(args.threads)
    threshold = label_free_threshold(ArtifactReader(args.cams), dataset(args, args.split))
    heuristic = {**threshold, "name": f"the power crossing {threshold['name']}",
                 "threshold": threshold["value"], "value": crossing_alpha(threshold["value"])}
    calibrated = None
    if args.calibration_split is not None:
        calib = dataset(args, args.calibration_split)
        calib.check(masks=True)
        model, meta = load_affinity_net(args.affinity, args.backbone)
        grid = [float(a) for a in cfg["alpha_grid"]]
        scorer = alpha_curve(model, meta, ArtifactReader(args.calibration_cams), calib, [*grid, heuristic["value"]],
                             cfg, resolve_device(args.device))
        curve = scorer.curve()
        heuristic["miou_on_calibration"] = curve[-1]["miou"]   # scored beside the grid, never chosen
        calibrated = calibrated_record(SETTING, calib.split, len(calib), curve[:-1])
    record = auto_record(SETTING, calibrated, heuristic, "no calibration split in config (datasets.<name>.splits."
                                                         "calibration): the power crossing the label-free seed "
                                                         "threshold is used")
    write_json(args.out, {"method": args.method, **record})
    how = (f"calibrated on {record['images']} images of '{record['split']}' (mIoU {record['miou']:.4f})"
           if record["mode"] == "calibrated" else "label-free heuristic (no calibration split)")
    print(f"calibrate_walk: {args.method} alpha {record['chosen']:g}, {how}; heuristic {heuristic['value']:.2f} "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
