"""Choose IRN's walk length and background (irn.logt and irn.walk_bg: auto) on the calibration
split; without one, walk_bg falls back to the label-free seed threshold: python -m stages.calibrate_irn_walk ..."""
from pipeline.affinity.irn import WALK_SETTING, walk_curve, walk_grid
from pipeline.core.device import resolve_device, set_threads
from pipeline.core.store import ArtifactReader
from pipeline.maps.calibration import calibrated_record, heuristic_record, label_free_threshold, value_text
from pipeline.models.boundary_net import load_boundary_net
from stages._args import add_runtime, calibration_parser, check_calibration_args, dataset, parse, write_json
from stages._main import stage_main
from stages._settings import add_settings


@stage_main
def main(argv=None) -> None:
    p = calibration_parser(__doc__)
    p.add_argument("--boundary", required=True, help="checkpoint written by train_irn")
    p.add_argument("--backbone", default=None, help="expected backbone (config); a mismatch is an error")
    p.add_argument("--method", required=True)
    add_runtime(p)
    add_settings(p, "calibrate_irn_walk")
    p.add_argument("--out", required=True, help="JSON: the calibration record")
    args, cfg = parse(p, argv)
    check_calibration_args(args)
    if "auto" not in (cfg["logt"], cfg["walk_bg"]):
        raise SystemExit("irn.logt and irn.walk_bg are both fixed: there is nothing to calibrate")

    set_threads(args.threads)
    fixed_logt = None if cfg["logt"] == "auto" else int(cfg["logt"])
    heuristic = None
    if cfg["walk_bg"] == "auto":
        threshold = label_free_threshold(ArtifactReader(args.cams), dataset(args, args.split))
        heuristic = {**threshold, "name": f"walk_bg at {threshold['name']}"}
    if args.calibration_split is not None:
        calib = dataset(args, args.calibration_split)
        calib.check(masks=True)
        model, meta = load_boundary_net(args.boundary, args.backbone)
        grid = walk_grid(cfg)
        # the heuristic's background is scored beside the grid at every logt, never chosen
        extra = ([{**point, "walk_bg": heuristic["value"]} for point in grid if point["walk_bg"] == grid[0]["walk_bg"]]
                 if heuristic else [])
        curve = walk_curve(model, meta, ArtifactReader(args.calibration_cams), calib, [*grid, *extra], cfg,
                           resolve_device(args.device)).curve()
        record = calibrated_record(WALK_SETTING, calib.split, len(calib), curve[:len(grid)])
        if heuristic:
            heuristic["miou_on_calibration"] = {str(row["value"]["logt"]): row["miou"] for row in curve[len(grid):]}
            record["heuristic"] = heuristic
    elif fixed_logt is None:
        raise SystemExit("irn.logt auto needs a calibration split (datasets.<name>.splits.calibration): "
                         "no label-free rule picks the walk's length")
    else:
        record = heuristic_record(WALK_SETTING, {"logt": fixed_logt, "walk_bg": heuristic["value"]}, heuristic,
                                  "no calibration split in config (datasets.<name>.splits.calibration): "
                                  "walk_bg is the label-free seed threshold")
    write_json(args.out, {"method": args.method, **record})
    how = (f"calibrated on {record['images']} images of '{record['split']}' (mIoU {record['miou']:.4f})"
           if record["mode"] == "calibrated" else "label-free heuristic (no calibration split)")
    fallback = f"; heuristic walk_bg {heuristic['value']:.3f}" if heuristic else ""
    print(f"calibrate_irn_walk: {args.method} {value_text(record['chosen'])}, {how}{fallback} -> {args.out}")


if __name__ == "__main__":
    main()
