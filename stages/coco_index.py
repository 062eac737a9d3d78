"""Index one split of a COCO-format dataset (ids, sizes, labels, boxes; annotations validated):
python -m stages.coco_index --root R --split S --classes JSON --out INDEX.json"""
import json

from pipeline.data import coco
from stages._args import parser, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--root", required=True, help="COCO-format dataset root")
    p.add_argument("--split", required=True, help="split name, e.g. train2014")
    p.add_argument("--classes", required=True, type=json.loads, help="JSON list of class names, background first")
    p.add_argument("--images", default=coco.DEFAULT_IMAGES, help="image folder under root ({split} replaced)")
    p.add_argument("--annotations", default=coco.DEFAULT_ANNOTATIONS, help="instances JSON under root ({split} replaced)")
    p.add_argument("--out", required=True, help="the index (JSON)")
    args = p.parse_args(argv)

    index = coco.build_index(args.root, args.split, args.classes, args.images, args.annotations)
    write_json(args.out, index)
    print(f"coco_index: {len(index['images'])} annotated images of '{args.split}' "
          f"({index['without_annotations']} without annotations left out) -> {args.out}")


if __name__ == "__main__":
    main()
