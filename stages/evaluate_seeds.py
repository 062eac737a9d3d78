"""Score CAM seeds against the ground truth of a split: python -m stages.evaluate_seeds ..."""
from pipeline.cams.seeds import evaluate, sweep_values
from pipeline.core.store import ArtifactReader
from stages._args import add_dataset, dataset, parser, write_json
from stages._settings import add_settings, settings


def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p)
    p.add_argument("--cams", required=True, help="HDF5 written by extract_cams")
    p.add_argument("--method", required=True)
    add_settings(p, "evaluate_seeds")
    p.add_argument("--out", required=True, help="JSON output")
    args = p.parse_args(argv)
    cfg = settings(args)

    voc = dataset(args, args.split)
    voc.check(masks=True)
    result = evaluate(ArtifactReader(args.cams), voc, cfg["bg_threshold"], sweep_values(*cfg["sweep"]))
    write_json(args.out, {"method": args.method, **result})
    best = result["best_on_curve"]
    print(f"evaluate_seeds: {args.method} seed mIoU {result['miou']:.4f} at bg {result['threshold']} "
          f"(best on the sweep {best['miou']:.4f} at {best['threshold']}), fg precision "
          f"{result['fg_precision']:.3f} recall {result['fg_recall']:.3f}")


if __name__ == "__main__":
    main()
