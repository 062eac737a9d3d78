"""The trained classifier's class activation maps on a folder of untagged images: the classes it
scores above --threshold and a heat map of each. Console script: wsss-cams."""
from __future__ import annotations

import argparse

from pipeline.cams.folder import cams_folder
from pipeline.core.cam_methods import ALL_METHODS
from pipeline.core.device import resolve_device, set_threads
from pipeline.models.classifier import load_classifier
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--classifier", required=True, help="checkpoint written by stages.train_classifier")
    p.add_argument("--images", required=True, help="folder of images (jpg, png, ...; any size, grey or RGB(A))")
    p.add_argument("--out", required=True, help="output folder: <name>_<class>.png heat maps, <name>.json scores")
    p.add_argument("--method", default="cam", choices=ALL_METHODS,
                   help="getam / attnfusion need the ViT classifier (classifier_vit.pt)")
    p.add_argument("--threshold", type=float, default=0.5, help="sigmoid score a class needs to be mapped")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 1.5, 2.0])
    p.add_argument("--no-flip", dest="flip", action="store_false", help="skip the mirrored pass")
    p.add_argument("--levels", type=int, nargs="*", default=[2, 3], help="feature levels fullycam fuses")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0:
        p.error(f"--threshold {args.threshold}: expected a score in [0, 1]")
    set_threads(args.threads)
    model, meta = load_classifier(args.classifier)
    count = cams_folder(model, meta, args.images, args.out, args.method, args.scales, args.flip, args.threshold,
                        resolve_device(args.device), args.levels)
    print(f"cams: {args.method} maps of {count} images of {args.images} -> {args.out}/")


if __name__ == "__main__":
    main()
