"""Compare CAM methods side by side: python -m stages.summarize_cams --seeds A.json ... --out summary.json"""
import json
from pathlib import Path

from pipeline.evaluation.summary import format_table, method_row
from stages._args import parser, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", nargs="+", required=True, help="seeds/{method}.json, one per method")
    p.add_argument("--boxes", nargs="+", required=True, help="boxes/{method}.json, same order")
    p.add_argument("--timing", nargs="+", required=True, help="cams/{method}.json, same order")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    if not len(args.seeds) == len(args.boxes) == len(args.timing):
        raise SystemExit("--seeds, --boxes and --timing need one file per method each, in the same order")
    load = lambda path: json.loads(Path(path).read_text())  # noqa: E731
    rows = [method_row(load(s), load(b), load(t)) for s, b, t in zip(args.seeds, args.boxes, args.timing)]
    write_json(args.out, {"methods": rows})
    print("summarize_cams:\n" + format_table(rows))


if __name__ == "__main__":
    main()
