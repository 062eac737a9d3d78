"""Seconds per megapixel of every heavy stage's inner work, on the CPU or on CUDA: the rates the
stage-time estimate reads (pipeline/core/estimate.py, stored in pipeline/core/rates/<device>.json)
and, on a GPU, the images per second and peak GPU memory of each stage at VOC sizes.

Each stage's step runs as its stage runs it, in the precision `--amp` gives on the device
(pipeline/core/precision.py), timed as the median of --repeats runs after a warm-up:
- training (classifier, ViT classifier, AffinityNet, segmentation): one iteration, forward,
  backward and optimizer step, of a batch of crops (demo: the dataset's batch and crop; voc: batch
  16, 512 crops);
- extract_cams/<method>: one image at every CAM scale and flip (config cams.scales, cams.flip),
  two classes; forward / forward_vit: one plain classifier pass (the classifier's val mAP);
- propagate: AffinityNet on the image and the random walk of two maps; predict: the segmentation
  net at every test scale and flip; crf_softmax, affinity_labels (two CRFs) and refine (PAMR + CRF)
  on the CPU, whatever the device.
A rate is seconds per megapixel of what the step sees, in wall time and in CPU time (the
process's, all threads: what a shared machine's other jobs cannot stretch) (crops of a batch; the image at every scale
and flip; the image). Images: the demo generator's at its sizes (--sizes demo), or one 500 x 375
image as VOC's typical (--sizes voc). `startup_seconds` is a stage process's start-up
(`python -m stages.extract_cams --help`: the interpreter and the imports).

    python benchmarks/bench_throughput.py --device cpu --sizes demo --threads 1 --out pipeline/core/rates/cpu.json
    python benchmarks/bench_throughput.py --device cuda --sizes voc --out gpu-rates.json   # benchmarks/gpu_check.sh
    python benchmarks/bench_throughput.py --quick

The ratio line is the spread of the repeats, slowest over fastest, of the least steady stage: a
rate is only worth storing when it repeats (target <= 1.5).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.core import config as cfgmod  # noqa: E402
from pipeline.core.device import resolve_device, set_threads  # noqa: E402
from pipeline.core.precision import (amp_name, autocast, grad_scaler, mixed_precision, prepare_model,  # noqa: E402
                                     resolve_amp, to_device)
from pipeline.core.training import make_optimizer  # noqa: E402

DATASET = "demo"
VOC_IMAGE = (375, 500)     # VOC 2012's most common size (height, width)
VOC_TRAINING = {"crop_size": 512, "batch_size": 16}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (this process, all its threads) of each repeat."""
    fn()   # warm-up: lazy initialisation, cuDNN's algorithm search, the allocator's first blocks
    sync(device)
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def training_step(model, loss_of, cfg: dict, device, make_batch):
    """One iteration as pipeline/core/training.fit runs it."""
    prepare_model(model.train(), device)
    optimizer = make_optimizer(model, cfg)
    scaler = grad_scaler(device)
    batch = make_batch()

    def step():
        with autocast(device):
            loss = loss_of(model, [to_device(t, device) for t in batch])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return step


def images_for(sizes: str, config: dict, count: int, work: Path):
    """(image uint8 (H, W, 3), two class ids) per image: the demo generator's, or VOC-sized ones."""
    ds = config["datasets"][DATASET]
    if sizes == "voc":
        rng = np.random.default_rng(0)
        return [(rng.integers(0, 256, (*VOC_IMAGE, 3), dtype=np.uint8), np.array([1, 2])) for _ in range(count)]
    from pipeline.data import demo
    from pipeline.data.voc import VOCDataset
    gen = ds["generator"]
    demo.generate(work / "data", ds["classes"], seed=gen["seed"], n_train=count, n_val=1,
                  min_size=gen["min_size"], max_size=gen["max_size"])
    voc = VOCDataset(work / "data", ds["classes"], "train")
    return [(voc.load_image(i), voc.image_labels(i)) for i in voc.ids]


def startup_seconds() -> tuple[float, float]:
    """Wall and CPU seconds of a stage process that only starts (its imports)."""
    start, before = time.perf_counter(), os.times()
    subprocess.run([sys.executable, "-m", "stages.extract_cams", "--help"], cwd=REPO, check=True,
                   capture_output=True)
    after = os.times()
    return time.perf_counter() - start, (after.children_user - before.children_user
                                         + after.children_system - before.children_system)


def measure(args, config: dict, device, work: Path) -> dict:
    from pipeline.affinity.labels import confident_label
    from pipeline.affinity.propagate import propagate_image
    from pipeline.affinity.train import affinity_loss
    from pipeline.cams.extract import class_maps
    from pipeline.classifier.train import classification_loss
    from pipeline.maps.crf import crf_softmax
    from pipeline.models.affinity_net import AffinityNet
    from pipeline.models.backbone import normalisation
    from pipeline.models.classifier import build_classifier
    from pipeline.models.segnet import build_segnet
    from pipeline.refine.pseudo_labels import active_steps, refine_image
    from pipeline.segmentation.train import segmentation_loss

    section = lambda name: cfgmod.stage_config(config, DATASET, name)  # noqa: E731
    classes = config["datasets"][DATASET]["classes"]
    cams_cfg, seg = section("cams"), section("segmentation")
    pictures = images_for(args.sizes, config, args.images, work)
    mp_image = float(np.mean([np.prod(im.shape[:2]) for im, _ in pictures])) / 1e6
    results = {}

    def record(name, fn, megapixels, images, on_gpu=True):
        dev = device if on_gpu else torch.device("cpu")
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times, cpus = timed(fn, dev, args.repeats)
        median = statistics.median(times)
        row = {"seconds_per_megapixel": median / megapixels, "seconds": median, "megapixels": megapixels,
               "cpu_seconds_per_megapixel": statistics.median(cpus) / megapixels,
               "images_per_second": images / median, "spread": max(times) / min(times),
               "device": dev.type}
        if dev.type == "cuda":
            row["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
        results[name] = row
        extra = f"  peak {row['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in row else ""
        print(f"{name:<26} {row['images_per_second']:9.2f} img/s  {row['seconds_per_megapixel']:8.3f} s/MP  "
              f"{row['cpu_seconds_per_megapixel']:8.3f} CPU s/MP  "
              f"spread {row['spread']:.2f}{extra}", flush=True)

    def train_rate(name, model, cfg, loss_of, label_shape, label_values):
        cfg = {**cfg, **VOC_TRAINING} if args.sizes == "voc" else cfg
        if args.quick:
            cfg = {**cfg, "crop_size": 64, "batch_size": 2}
        b, c = cfg["batch_size"], cfg["crop_size"]

        def make_batch():
            x = torch.randn(b, 3, c, c)
            y = torch.randint(0, label_values, (b, *label_shape(c)), dtype=torch.uint8) if label_shape \
                else (torch.rand(b, len(classes) - 1) > 0.7).float()
            return x, y
        record(name, training_step(model, loss_of, cfg, device, make_batch), b * c * c / 1e6, b)

    # training stages
    cls = section("classifier")
    mean, std = normalisation(cls["backbone"])
    model = build_classifier(cls, len(classes) - 1, cls["weights"])
    train_rate("train_classifier", model, cls, lambda m, b: classification_loss(m(b[0]).float(), b[1]), None, 0)
    image, ids = pictures[0]
    x = torch.from_numpy(((image / 255.0 - mean) / std).transpose(2, 0, 1).astype(np.float32))[None]

    def forward(net):
        def run():
            with torch.no_grad(), autocast(device):
                net(to_device(x, device))
        return run
    prepare_model(model.eval(), device)
    record("forward", forward(model), mp_image, 1)
    meta = {**model.meta, "mean": list(mean), "std": list(std)}
    methods = [m for m in cams_cfg["methods"] if args.methods is None or m in args.methods]
    for method in [m for m in methods if m not in ("getam", "attnfusion")]:
        views = sum(s * s for s in cams_cfg["scales"]) * (2 if cams_cfg["flip"] else 1)
        record(f"extract_cams/{method}",
               lambda m=method: [class_maps(model, meta, im, i[:2], m, cams_cfg["scales"], cams_cfg["flip"], device,
                                            cams_cfg["fullycam_levels"]) for im, i in pictures],
               mp_image * views * len(pictures), len(pictures))
    if {"getam", "attnfusion"} & set(methods):
        vit = section("vit_classifier")
        vmodel = build_classifier(vit, len(classes) - 1, vit["weights"])
        train_rate("train_classifier_vit", vmodel, vit, lambda m, b: classification_loss(m(b[0]).float(), b[1]), None, 0)
        prepare_model(vmodel.eval(), device)
        record("forward_vit", forward(vmodel), mp_image, 1)
        vmeta = {**vmodel.meta, "mean": list(mean), "std": list(std)}
        for method in [m for m in methods if m in ("getam", "attnfusion")]:
            views = sum(s * s for s in cams_cfg["scales"]) * (2 if cams_cfg["flip"] else 1)
            record(f"extract_cams/{method}",
                   lambda m=method: [class_maps(vmodel, vmeta, im, i[:2], m, cams_cfg["scales"], cams_cfg["flip"],
                                                device) for im, i in pictures],
                   mp_image * views * len(pictures), len(pictures))
        del vmodel
    del model

    # affinity: labels (CPU), training, the walk
    aff, rw = section("affinity"), section("random_walk")
    rng = np.random.default_rng(0)
    cams = [rng.random((len(i[:2]), *im.shape[:2])).astype(np.float32) for im, i in pictures]
    record("affinity_labels", lambda: [confident_label(im, c, i[:2], aff["alpha_low"], aff["alpha_high"], aff["crf"])
                                       for (im, i), c in zip(pictures, cams)],
           mp_image * len(pictures), len(pictures), on_gpu=False)
    net = AffinityNet(aff["backbone"], aff["levels"], aff["dims"], aff["stride"], aff["output_stride"], aff["weights"])
    stride = aff["stride"]
    train_rate("train_affinity", net, aff, lambda m, b: affinity_loss(m(b[0]).float(), b[1], aff["radius"]),
               lambda c: (-(-c // stride), -(-c // stride)), 3)
    prepare_model(net.eval(), device)
    record("propagate", lambda: [propagate_image(net, im, c, mean, std, device, rw) for (im, _), c in zip(pictures, cams)],
           mp_image * len(pictures), len(pictures))
    del net

    # refine (CPU): the random walk's maps through the configured steps
    ref = section("refine")
    steps, _ = active_steps(ref)
    walked = [np.concatenate([1 - c.max(0, keepdims=True), c]) for c in cams]
    record("refine", lambda: [refine_image(im, w, np.array([0, *i[:2]], np.uint8), steps, ref)
                              for (im, i), w in zip(pictures, walked)],
           mp_image * len(pictures), len(pictures), on_gpu=False)

    # segmentation: training, prediction, its CRF (CPU)
    from pipeline.segmentation.predict import predict_probs
    segnet = build_segnet(seg, len(classes))
    train_rate("train_segmentation", segnet, seg, lambda m, b: segmentation_loss(m, b[0], b[1], seg),
               lambda c: (c, c), len(classes))
    prepare_model(segnet.eval(), device)
    views = sum(s * s for s in seg["test_scales"]) * (2 if seg["test_flip"] else 1)
    record("predict", lambda: [predict_probs(segnet, im, mean, std, seg["test_scales"], seg["test_flip"], device)
                               for im, _ in pictures], mp_image * views * len(pictures), len(pictures))
    probs = [np.full((len(classes), *im.shape[:2]), 1.0 / len(classes), np.float32) for im, _ in pictures]
    record("crf_softmax", lambda: [crf_softmax(im, p, seg["crf"]) for (im, _), p in zip(pictures, probs)],
           mp_image * len(pictures), len(pictures), on_gpu=False)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    p.add_argument("--sizes", default="demo", choices=["demo", "voc"],
                   help="demo: the demo's images, crops and batches | voc: 500 x 375 images, batch 16 of 512 crops")
    p.add_argument("--images", type=int, default=4, help="images per per-image step")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: config.yaml's). The CPU rates are measured with 1: on a shared "
                        "machine two OpenMP threads wait on each other and inflate even the CPU time")
    p.add_argument("--methods", nargs="*", default=None, help="CAM methods (default: config cams.methods)")
    p.add_argument("--out", type=Path, default=None, help="JSON of the rates (pipeline/core/rates/<device>.json)")
    p.add_argument("--quick", action="store_true", help="one small image, crops of 64, one repeat, cam only: a smoke test")
    args = p.parse_args()
    if args.quick:
        args.images, args.repeats, args.methods, args.threads = 1, 1, ["cam"], 1
    config = cfgmod.load(REPO / "config.yaml")
    if args.quick:
        gen = config["datasets"][DATASET]["generator"]
        gen.update(min_size=64, max_size=80)
    threads = args.threads or config["threads"]
    set_threads(threads)
    device = resolve_device(args.device)
    dtype = resolve_amp(args.amp, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device {device} ({name}), mixed precision {amp_name(dtype)}, sizes {args.sizes}, threads {threads}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; median of {args.repeats} after a warm-up")
    with tempfile.TemporaryDirectory() as tmp, mixed_precision(dtype):
        startup, startup_cpu = startup_seconds()
        print(f"{'startup (imports)':<26} {startup:9.2f} s  {startup_cpu:.2f} CPU s")
        stages = measure(args, config, device, Path(tmp))
    command = "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])
    report = {"device": device.type, "device_name": name, "amp": amp_name(dtype), "sizes": args.sizes,
              "threads": threads, "cpus": os.cpu_count(), "load_at_start": os.getloadavg()[0],
              "torch": torch.__version__, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": command, "startup_seconds": startup, "startup_cpu_seconds": startup_cpu,
              "stages": stages}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"rates -> {args.out}")
    worst = max(stages.items(), key=lambda kv: kv[1]["spread"])
    print(f"ratio slowest / fastest repeat, least steady stage ({worst[0]}): {worst[1]['spread']:.2f}x "
          f"(target <= 1.5: {'OK' if worst[1]['spread'] <= 1.5 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
