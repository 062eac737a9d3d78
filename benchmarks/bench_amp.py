"""bf16 against float32 on the same trained weights: how far the mixed-precision maps are from the
float32 ones, and how many pixels change label (the tolerance docs/gpu.md states).

On the first --images images of a built demo (--results: classifier.pt, affinity/cam.pt,
segnet/cam.pt or segnet/full.pt, data/), each computed twice on the CPU, in float32 and under bf16
autocast (pipeline/core/precision.py), as the stages compute them:
- CAMs of `cam` and `gradcam` (config cams.scales, flip): max and mean |difference|, and the seed
  labels (background 0.15) that agree;
- the random walk (random_walk settings of the demo) of the float32 CAMs: max |difference| of the
  walked maps and their argmax labels that agree;
- the segmentation network's probabilities (test scales and flip, no CRF) and their labels.
--quick: the ImageNet backbone with untrained heads on one generated image (a smoke test).

    python benchmarks/bench_amp.py --results results/demo --images 16

The ratio line is the lowest label agreement of the three (target >= 0.98).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.core import config as cfgmod  # noqa: E402
from pipeline.core.device import set_threads  # noqa: E402
from pipeline.core.precision import mixed_precision  # noqa: E402

DATASET = "demo"


def networks(results: Path | None, config: dict, work: Path):
    """(classifier, its meta, AffinityNet, its meta, segmentation net, its meta, the train split)."""
    from pipeline.data.voc import VOCDataset
    from pipeline.models.affinity_net import AffinityNet, load_affinity_net
    from pipeline.models.backbone import normalisation
    from pipeline.models.classifier import build_classifier, load_classifier
    from pipeline.models.segnet import build_segnet, load_segnet
    classes = config["datasets"][DATASET]["classes"]
    section = lambda name: cfgmod.stage_config(config, DATASET, name)  # noqa: E731
    if results is not None:
        seg = results / "segnet" / "cam.pt"
        seg = seg if seg.exists() else results / "segnet" / "full.pt"
        needed = [results / "classifier.pt", results / "affinity" / "cam.pt", seg, results / "data"]
        missing = [str(p) for p in needed if not p.exists()]
        if missing:
            raise SystemExit(f"--results {results}: missing {', '.join(missing)}; build them with "
                             f"snakemake --cores 2 {results / 'miou.json'}")
        cls, cls_meta = load_classifier(results / "classifier.pt")
        aff, aff_meta = load_affinity_net(results / "affinity" / "cam.pt")
        segnet, seg_meta = load_segnet(seg)
        return cls, cls_meta, aff, aff_meta, segnet, seg_meta, VOCDataset(results / "data", classes, "train")
    from pipeline.data import demo
    demo.generate(work / "data", classes, seed=1, n_train=1, n_val=1, min_size=64, max_size=80)
    c, a, s = section("classifier"), section("affinity"), section("segmentation")
    mean, std = normalisation(c["backbone"])
    meta = {"mean": list(mean), "std": list(std)}
    return (build_classifier(c, len(classes) - 1, "offline"), meta,
            AffinityNet(a["backbone"], a["levels"], a["dims"], a["stride"], a["output_stride"], "offline"), meta,
            build_segnet(s, len(classes), "offline"), meta, VOCDataset(work / "data", classes, "train"))


def labels(maps: np.ndarray, background: float | None = None) -> np.ndarray:
    if background is not None:
        maps = np.concatenate([np.full((1, *maps.shape[1:]), background, np.float32), maps])
    return maps.argmax(0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=None, help="a built demo's results directory")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared machine two OpenMP threads mostly wait on each other)")
    p.add_argument("--quick", action="store_true", help="untrained heads, one generated image")
    args = p.parse_args()
    if args.quick:
        args.results, args.images = None, 1
    elif args.results is None:
        p.error("--results is needed (or --quick)")
    config = cfgmod.load(REPO / "config.yaml")
    set_threads(args.threads)
    from pipeline.affinity.propagate import propagate_image
    from pipeline.cams.extract import multiscale_cam
    from pipeline.segmentation.predict import predict_probs
    cams_cfg = cfgmod.stage_config(config, DATASET, "cams")
    rw = cfgmod.stage_config(config, DATASET, "random_walk")
    seg = cfgmod.stage_config(config, DATASET, "segmentation")
    rows = {name: {"max": 0.0, "mean": [], "agree": []} for name in ("cam", "gradcam", "rw", "pred")}

    def add(name, ref, amp, background=None):
        row = rows[name]
        row["max"] = max(row["max"], float(np.abs(amp - ref).max()))
        row["mean"].append(float(np.abs(amp - ref).mean()))
        row["agree"].append(float((labels(amp, background) == labels(ref, background)).mean()))

    with tempfile.TemporaryDirectory() as tmp:
        cls, cls_meta, aff, aff_meta, segnet, seg_meta, voc = networks(args.results, config, Path(tmp))
        for net in (cls, aff, segnet):
            net.eval()
        ids = voc.ids[:args.images]
        print(f"{len(ids)} images of {voc.root}, CPU, threads {args.threads}: float32 against bf16 autocast")
        for image_id in ids:
            image, class_ids = voc.load_image(image_id), voc.image_labels(image_id)
            both = {}
            for method in ("cam", "gradcam"):
                run = lambda: multiscale_cam(cls, image, class_ids, cams_cfg["scales"], cams_cfg["flip"],  # noqa: E731
                                             cls_meta["mean"], cls_meta["std"], "cpu", method)
                ref = run()
                with mixed_precision(torch.bfloat16):
                    add(method, ref, run(), background=0.15)
                both[method] = ref
            run = lambda: propagate_image(aff, image, both["cam"], aff_meta["mean"], aff_meta["std"], "cpu", rw)  # noqa: E731
            ref = run()
            with mixed_precision(torch.bfloat16):
                add("rw", ref, run())
            run = lambda: predict_probs(segnet, image, seg_meta["mean"], seg_meta["std"], seg["test_scales"],  # noqa: E731
                                        seg["test_flip"], "cpu")
            ref = run()
            with mixed_precision(torch.bfloat16):
                add("pred", ref, run())
    print(f"{'maps':<10} {'max |diff|':>10} {'mean |diff|':>11} {'labels same':>11}")
    for name, row in rows.items():
        print(f"{name:<10} {row['max']:10.4f} {np.mean(row['mean']):11.5f} {np.mean(row['agree']):11.4f}")
    worst = min(rows, key=lambda n: np.mean(rows[n]["agree"]))
    agree = float(np.mean(rows[worst]["agree"]))
    print(f"ratio bf16 / float32 label agreement, lowest ({worst}): {agree:.4f} "
          f"(target >= 0.98: {'OK' if agree >= 0.98 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
