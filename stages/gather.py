"""Merge the shards of a per-image stage into its artifact and report: python -m stages.gather ..."""
import json
from pathlib import Path

from pipeline.core.shards import gather
from stages._args import parser, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--classes", required=True, type=json.loads, help="JSON list of class names, background first")
    p.add_argument("--shards", nargs="+", required=True, help="the shards' HDF5 files")
    p.add_argument("--tallies", nargs="+", required=True, help="the shards' JSON tallies, same order")
    p.add_argument("--out", required=True, help="the merged HDF5 artifact")
    p.add_argument("--report", required=True, help="the stage's JSON report")
    args = p.parse_args(argv)

    if len(args.shards) != len(args.tallies):
        raise SystemExit(f"{len(args.shards)} shard files but {len(args.tallies)} tallies")
    tallies = [json.loads(Path(t).read_text()) for t in args.tallies]
    report = gather(args.shards, tallies, args.tallies, args.out, args.classes)
    write_json(args.report, report)
    score = f", mIoU {report['miou']:.4f} on {report['eval_split']}" if report.get("miou") is not None else ""
    print(f"gather: {report['images']} images from {len(args.shards)} shards{score} -> {args.out}")


if __name__ == "__main__":
    main()
