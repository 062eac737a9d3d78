"""Generate the demo dataset in VOC layout (or, with generator format 'coco', in COCO layout; with
format 'tags', as images with a tags file and the masks generator.masks says):
python -m stages.make_demo --out DIR ..."""
import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from pipeline.data import coco_export, demo, tags
from stages._args import add_demo_generator, parser
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--out", required=True, help="dataset root to write")
    add_demo_generator(p)
    args = p.parse_args(argv)
    layout = args.generator.pop("format", "voc")
    masks = args.generator.pop("masks", "all")
    progress = lambda jobs: tqdm(jobs, desc="demo images")  # noqa: E731
    if layout in ("coco", "tags"):
        # the same images and masks as the VOC-layout demo, converted (pipeline/data/coco_export.py, tags.py)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=Path(args.out).parent) as tmp:
            demo.generate(tmp, args.classes, progress=progress, **args.generator)
            shutil.rmtree(args.out + ".partial", ignore_errors=True)   # a leftover of an interrupted run
            splits = ("train", "val", demo.CALIBRATION) if args.generator.get("n_calibration") else ("train", "val")
            if layout == "coco":
                coco_export.export(tmp, Path(args.out + ".partial"), args.classes, splits)
            else:
                tags.export(tmp, Path(args.out + ".partial"), args.classes, masks, splits)
        shutil.rmtree(args.out, ignore_errors=True)
        Path(args.out + ".partial").rename(args.out)
    else:
        demo.generate(args.out, args.classes, progress=progress, **args.generator)
    calibration = f" + {n} calibration" if (n := args.generator.get("n_calibration")) else ""
    print(f"make_demo: {args.generator['n_train']} train + {args.generator['n_val']} val{calibration} images in {args.out} "
          f"({layout} layout)")


if __name__ == "__main__":
    main()
