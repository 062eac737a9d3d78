"""One image's walks side by side (image, ground truth, each walk's argmax, IRN's boundary map) as a
PNG, and what each labels over a band of rows: python -m stages.diagnostics.compare_walks --root ... --classes ...
--image-id train_0001 --maps affinitynet=rw/cam.h5 irn=rw_irn/cam.h5 --boundary irn/cam.pt --rows 117 120 --out X.png"""
import json

from PIL import Image

from pipeline.diagnostics.compare_walks import compare
from stages._args import add_dataset, dataset, parser
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p)
    p.add_argument("--image-id", required=True)
    p.add_argument("--maps", nargs="+", required=True, metavar="NAME=H5", help="class maps, background first")
    p.add_argument("--boundary", default=None, help="IRN checkpoint (train_irn): adds its boundary map")
    p.add_argument("--rows", type=int, nargs=2, default=None, metavar=("FIRST", "LAST"),
                   help="print each walk's labels over these image rows (inclusive)")
    p.add_argument("--out", required=True, help="PNG output")
    args = p.parse_args(argv)

    maps = dict(item.split("=", 1) for item in args.maps)
    voc = dataset(args, args.split)
    strip, counts = compare(voc, args.image_id, maps, args.boundary, tuple(args.rows) if args.rows else None)
    Image.fromarray(strip).save(args.out)
    for name, band in counts.items():
        print(f"rows {args.rows[0]}-{args.rows[1]}, {name}: " + json.dumps(
            {k: {"pixels": n, "on ground-truth background": bg} for k, (n, bg) in band.items()}))
    print(f"compare_walks: {args.image_id}, panels: image, ground truth, {', '.join(maps)}"
          + (", boundary map" if args.boundary else "") + f" -> {args.out}")


if __name__ == "__main__":
    main()
