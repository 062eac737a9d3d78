"""Cost of each CAM method per scale, relative to one plain forward + backward of the same network.

For every method: the time of its maps for one scale (image + flipped copy, as extraction runs)
divided by the time of a forward pass and a full backward (parameter gradients included) on
the same input. Target: every gradient method <= 1.5x. Run from the repo root:

    python benchmarks/bench_cam_methods.py [--size 375 500] [--classes 1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._timing import median_seconds  # noqa: E402
from pipeline.cams import METHODS, _activation_maps  # noqa: E402
from pipeline.models.classifier import Classifier  # noqa: E402
from pipeline.models.vit_hybrid import ViTHybridClassifier  # noqa: E402
from pipeline.vit_cams import VIT_METHODS, _vit_maps  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, nargs=2, default=[375, 500])
    p.add_argument("--classes", type=int, default=1, help="classes in the image (maps per pass)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = Classifier("tf_efficientnet_lite0", 20, weights="offline").eval()
    x = torch.randn(2, 3, *args.size)
    class_ids = list(range(1, args.classes + 1))

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(x)[:, 0].sum().backward()

    baseline = median_seconds(forward_backward, args.repeats)
    print(f"tf_efficientnet_lite0, input 2 x 3 x {args.size[0]} x {args.size[1]} (image + flip), "
          f"{args.classes} class(es), median of {args.repeats}")
    print(f"{'forward+backward':<18} {baseline * 1000:8.1f} ms  1.00x")
    for method in METHODS:
        levels = (2, 3) if method == "fullycam" else ()
        t = median_seconds(lambda: _activation_maps(model, x, class_ids, method, levels), args.repeats)
        print(f"{method:<18} {t * 1000:8.1f} ms  {t / baseline:.2f}x")

    # the ViT methods, against forward + backward of their own network (the config's ViT-hybrid)
    vit = ViTHybridClassifier("tf_efficientnet_lite0", 20, weights="offline").eval()

    def vit_forward_backward():
        vit.zero_grad(set_to_none=True)
        vit(x)[:, 0].sum().backward()

    vit_baseline = median_seconds(vit_forward_backward, args.repeats)
    print(f"ViT-hybrid (6 blocks, 192 wide): {'forward+backward':<18} {vit_baseline * 1000:8.1f} ms  1.00x")
    for method in VIT_METHODS:
        t = median_seconds(lambda: _vit_maps(vit, x, class_ids, method, 3), args.repeats)
        print(f"{method:<18} {t * 1000:8.1f} ms  {t / vit_baseline:.2f}x")


if __name__ == "__main__":
    main()
