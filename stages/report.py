"""Write the run's self-contained HTML report: python -m stages.report ..."""
import json
from pathlib import Path

from pipeline.core.store import ArtifactReader
from pipeline.evaluation import report
from stages._args import add_dataset, dataset, parser
from stages._main import stage_main


def named(pairs: list[str]) -> dict[str, str]:
    """['name=path', ...] -> {name: path}."""
    return dict(pair.split("=", 1) for pair in pairs)


def read(path: str) -> dict:
    return json.loads(Path(path).read_text())


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p, split_flags=("--split", "--val-split"))
    p.add_argument("--title", required=True)
    p.add_argument("--miou", default=None, help="miou.json of the run (absent when the val split has no mask)")
    p.add_argument("--seeds", nargs="+", default=[], help="seed reports, method=path (absent without train masks)")
    p.add_argument("--histories", nargs="+", required=True, help="training reports with a 'history', name=path")
    p.add_argument("--cams", required=True)
    p.add_argument("--rw", default=None, help="random-walk maps, when the run has them")
    p.add_argument("--pseudo", required=True)
    p.add_argument("--preds", nargs="+", required=True, help="val predictions, name=path")
    p.add_argument("--samples", type=int, default=4, help="images per overlay grid")
    p.add_argument("--voc-anchors", action="store_true", help="show the published VOC figures beside the ladder")
    p.add_argument("--coco-anchors", action="store_true", help="show the published COCO 2014 figures beside the ladder")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    train, val = dataset(args, args.split), dataset(args, args.val_split)
    sections = []
    if args.miou:
        miou = read(args.miou)
        sections += [
            report.ladder_section(miou, report.VOC_ANCHORS if args.voc_anchors else
                                  report.COCO_ANCHORS if args.coco_anchors else None,
                                  "COCO 2014" if args.coco_anchors else "VOC"),
            report.per_class_section(miou, args.classes)]
    else:
        sections.append(report.no_scores_note(val))
    if args.seeds:
        sections.append(report.seed_curves_section({m: read(path) for m, path in named(args.seeds).items()}))
    preds = {name: ArtifactReader(path) for name, path in named(args.preds).items()}
    sections += [
        report.pixel_shares_section({"pseudo-labels": ArtifactReader(args.pseudo),
                                     **{f"prediction ({name})": maps for name, maps in preds.items()}},
                                    args.classes),
        report.training_section({name: read(path)["history"] for name, path in named(args.histories).items()}),
        report.train_overlays(train, ArtifactReader(args.cams), ArtifactReader(args.rw) if args.rw else None,
                              ArtifactReader(args.pseudo), train.ids[:args.samples]),
        report.val_overlays(val, preds, val.ids[:args.samples]),
    ]
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(report.render(args.title, sections))
    tmp.replace(out)
    print(f"report: {len(sections)} sections, {args.samples} sample images per grid -> {out}")


if __name__ == "__main__":
    main()
