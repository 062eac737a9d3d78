"""Refine one shard's class maps into the final pseudo-labels (PAMR, CRF, saliency): python -m stages.refine ..."""
import json
from pathlib import Path

from pipeline.core.device import set_threads
from pipeline.core.store import ArtifactReader
from pipeline.refine.pseudo_labels import refine
from stages._args import parse, shard_datasets, shard_parser, write_json
from stages._settings import add_settings
from stages._main import stage_main


def _threshold(text: str):
    return "auto" if text == "auto" else float(text)


@stage_main
def main(argv=None) -> None:
    p = shard_parser(__doc__, "uint8 labels, 255 = ignore", eval_split=True, runtime=False)
    p.add_argument("--maps", required=True, help="HDF5 of class maps: cams/{method}.h5 or rw/{method}.h5")
    p.add_argument("--method", required=True)
    p.add_argument("--affinity", default=None, choices=["affinitynet", "irn"],
                   help="the affinity behind rw maps (affinity.kind), named in the ladder as rw:AFFINITY")
    p.add_argument("--bg-threshold", type=_threshold, required=True,
                   help="background of CAM maps (seeds.bg_threshold): a number, or auto with --bg-calibration")
    p.add_argument("--bg-calibration", default=None, help="JSON of stages.calibrate_seeds (bg_threshold auto)")
    add_settings(p, "refine")
    p.add_argument("--workers", type=int, default=1, help="processes refining images")
    args, cfg = parse(p, argv)

    bg = args.bg_threshold
    if bg == "auto" and cfg["source"] == "cams":
        if args.bg_calibration is None:
            raise SystemExit("seeds.bg_threshold is auto: --bg-calibration (the JSON of stages.calibrate_seeds) "
                             "is required to refine the CAMs")
        bg = json.loads(Path(args.bg_calibration).read_text())["chosen"]
    set_threads(1)   # one thread per worker process: images run in parallel instead
    voc, eval_voc = shard_datasets(args, eval_split=True)
    source = f"rw:{args.affinity}" if cfg["source"] == "rw" and args.affinity else cfg["source"]
    tally = refine(ArtifactReader(args.maps), voc, eval_voc, args.out, cfg, bg, source, args.workers)
    write_json(args.tally, {"method": args.method, **tally})
    print(f"refine: {args.method} labels of {len(voc)} images of shard {args.shard} -> {args.out}")


if __name__ == "__main__":
    main()
