"""Export a label artifact (pseudo-labels or predictions) as a folder of VOC-palette PNGs named by
image id: python -m stages.export_png --maps results/demo/pseudo/cam.h5 --out results/demo/pseudo/cam"""
from __future__ import annotations

import argparse

from pipeline.data.folders import export_label_pngs
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--maps", required=True, help="HDF5 label artifact (uint8 maps keyed by image id)")
    p.add_argument("--out", required=True, help="folder to write <image id>.png into (replaced when complete)")
    args = p.parse_args(argv)
    count = export_label_pngs(args.maps, args.out)
    print(f"export_png: {count} label maps of {args.maps} -> {args.out}/")


if __name__ == "__main__":
    main()
