"""Cost of each CAM method per scale, relative to one plain forward + backward of the same network.

For every method (config cams.methods): the time of the maps of all the image's classes at one
scale, image + flipped copy, through the stage's own entry point (pipeline.cams.extract.multiscale_cam,
pipeline.cams.vit.vit_multiscale_cam with scales [1.0]), divided by the time of one forward pass
and a full backward (parameter gradients included) of the same network on the same 2-image
batch. Target: every method <= 1.5x. The networks are the config's classifier and ViT-hybrid,
freshly initialised (cost does not depend on the weights). Run from the repo root:

    python benchmarks/bench_cam_methods.py [--size 375 500] [--classes 2] [--quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._timing import median_seconds  # noqa: E402
from pipeline.cams.extract import multiscale_cam  # noqa: E402
from pipeline.cams.vit import vit_multiscale_cam  # noqa: E402
from pipeline.core import config as cfgmod  # noqa: E402
from pipeline.core.cam_methods import CAM_METHODS, CNN, MCT, VIT, VIT_METHODS  # noqa: E402
from pipeline.core.device import set_threads  # noqa: E402
from pipeline.data.transforms import to_tensor  # noqa: E402
from pipeline.models.backbone import normalisation  # noqa: E402
from pipeline.models.classifier import build_classifier  # noqa: E402

import torch  # noqa: E402  (after pipeline, which sets OpenMP's policy before torch loads)

TARGET = 1.5


def forward_backward_seconds(model, x: torch.Tensor, repeats: int) -> float:
    def step():
        model.zero_grad(set_to_none=True)
        model(x)[:, 0].sum().backward()
    return median_seconds(step, repeats)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=[375, 500], help="image height width")
    p.add_argument("--classes", type=int, default=2, help="classes in the image (maps of one pass)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="a 64 x 80 image, one repeat: a smoke test")
    args = p.parse_args()
    if args.quick:
        args.size, args.repeats = [64, 80], 1
    config = cfgmod.load(REPO / "config.yaml")
    set_threads(config["threads"])
    cams = config["cams"]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*args.size, 3), dtype=np.uint8)
    class_ids = np.arange(1, args.classes + 1)
    print(f"input 2 x 3 x {args.size[0]} x {args.size[1]} (image + flip), {args.classes} class(es) in one pass, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} after a warm-up; per scale, "
          f"method / (forward + backward)")
    worst = 0.0
    for section, net in (("classifier", CNN), ("vit_classifier", VIT), ("mct_classifier", MCT)):
        methods = [m for m, of in CAM_METHODS.items() if of == net]
        cfg = cfgmod.stage_config(config, "voc", section)
        # the CNN with ReCAM's W_new too, so that method recam runs on it as well
        model = build_classifier({**cfg, "recam": section == "classifier"}, 20, cfg["weights"]).eval()
        mean, std = normalisation(cfg["backbone"])
        x = to_tensor(image, mean, std)[None]
        baseline = forward_backward_seconds(model, torch.cat([x, x.flip(-1)]), args.repeats)
        print(f"{section} ({cfg.get('kind', 'cnn')}, {cfg['backbone']}): forward+backward {baseline * 1000:8.1f} ms")
        for method in methods:
            if method in VIT_METHODS:
                run = lambda: vit_multiscale_cam(model, image, class_ids, [1.0], True, mean, std, "cpu", method)  # noqa: E731
            else:
                run = lambda: multiscale_cam(model, image, class_ids, [1.0], True, mean, std, "cpu", method,  # noqa: E731
                                             cams["fullycam_levels"])
            t = median_seconds(run, args.repeats)
            worst = max(worst, t / baseline)
            print(f"  {method:<12} {t * 1000:8.1f} ms  {t / baseline:5.2f}x")
    print(f"ratio to forward+backward, worst method: {worst:.2f}x "
          f"(target <= {TARGET}: {'OK' if worst <= TARGET else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
