"""Confident affinity labels of one shard from the CAMs, via two dense CRFs: python -m stages.affinity_labels ..."""
import json
from pathlib import Path

from pipeline.affinity.labels import labels_confusion, make_labels
from pipeline.core.store import ArtifactReader
from pipeline.maps.calibration import derived_label_alphas
from stages._args import parse, shard_datasets, shard_parser, write_json
from stages._settings import add_settings
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = shard_parser(__doc__, "uint8 labels, 255 = ignore", eval_split=True, runtime=False)
    p.add_argument("--cams", required=True, help="HDF5 written by extract_cams")
    add_settings(p, "affinity_labels")
    p.add_argument("--workers", type=int, default=1, help="processes running the CRF")
    p.add_argument("--calibration", default=None,
                   help="JSON of stages.calibrate_seeds (alpha_low / alpha_high auto: derived from its threshold)")
    args, cfg = parse(p, argv)
    record = None
    if "auto" in (cfg["alpha_low"], cfg["alpha_high"]):
        if args.calibration is None:
            raise SystemExit("affinity.alpha_low / alpha_high auto: --calibration (the JSON of stages.calibrate_seeds) "
                             "is required")
        values, record = derived_label_alphas(json.loads(Path(args.calibration).read_text()), cfg)
        cfg.update(values)

    voc, eval_voc = shard_datasets(args, eval_split=True)
    tally = make_labels(ArtifactReader(args.cams), voc, args.out, cfg, args.workers)
    confusion = labels_confusion(ArtifactReader(args.out), eval_voc)
    write_json(args.tally, {"split": args.split, "eval_split": args.eval_split, "eval_images": len(eval_voc), **tally,
                            **({"calibration": record} if record else {}),
                            "confusion": [["labelled", confusion.tolist()]]})
    print(f"affinity_labels: {len(voc)} images of shard {args.shard} -> {args.out}")


if __name__ == "__main__":
    main()
