"""Segment a folder of images with a trained segmentation network (segnet/*.pt): a VOC-palette
label PNG and a colour overlay per image. Console script: wsss-segment."""
from __future__ import annotations

import argparse

from pipeline.core.device import resolve_device, set_threads
from pipeline.models.segnet import load_segnet
from pipeline.segmentation.folder import segment_folder
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="checkpoint written by stages.train_segmentation")
    p.add_argument("--images", required=True, help="folder of images (jpg, png, ...; any size, grey or RGB(A))")
    p.add_argument("--out", required=True, help="output folder: <name>.png label maps, <name>_overlay.png")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0], help="test scales, softmax averaged")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="skip the mirrored pass")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    set_threads(args.threads)
    model, meta = load_segnet(args.model)
    count = segment_folder(model, meta, args.images, args.out, args.scales, args.flip, resolve_device(args.device))
    print(f"segment: {count} images of {args.images} -> {args.out}/ (classes {meta['classes']})")


if __name__ == "__main__":
    main()
