"""Score CAM seeds against the ground truth of a split: python -m stages.evaluate_seeds ..."""
from pipeline.cams.seeds import evaluate, sweep_values
from pipeline.core.store import ArtifactReader
from stages._args import cams_scoring, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    args, cfg, voc = cams_scoring(__doc__, "evaluate_seeds", argv, masks=True)
    result = evaluate(ArtifactReader(args.cams), voc, cfg["bg_threshold"], sweep_values(*cfg["sweep"]))
    write_json(args.out, {"method": args.method, **result})
    best = result["best_on_curve"]
    print(f"evaluate_seeds: {args.method} seed mIoU {result['miou']:.4f} at bg {result['threshold']} "
          f"(best on the sweep {best['miou']:.4f} at {best['threshold']}), fg precision "
          f"{result['fg_precision']:.3f} recall {result['fg_recall']:.3f}")


if __name__ == "__main__":
    main()
