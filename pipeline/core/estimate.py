"""The expected time of each heavy stage for a dataset on a device, before a long run.

Each stage's work is counted in megapixels (MP) of what its networks or filters see: training,
crops (epochs x full batches x batch x crop^2); CAM extraction and prediction, the image at every
test scale and flip (sum of scale^2, x2 with flip); the per-image filters (dense CRF, PAMR, the
random walk with its AffinityNet), the image itself. A rate in seconds per MP, measured per device
by benchmarks/bench_throughput.py and stored as data in pipeline/core/rates/<device>.json (with the
command that measured it), times the work, plus the job's start-up (interpreter, imports, model),
gives the seconds. CPU rates are CPU seconds, measured with one thread (on a shared machine two
OpenMP threads wait on each other and inflate even the CPU time); a job's wall time on the CPU
is then its CPU time over its `threads`, as on an idle machine (docs/gpu.md, "Estimate").
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RATES = Path(__file__).with_name("rates")
VIT_METHODS = {"getam", "attnfusion"}


def rates_file(device_kind: str) -> Path:
    return RATES / f"{device_kind}.json"


def load_rates(device_kind: str) -> dict | None:
    """The measured rates of a device kind ('cpu', 'cuda'), or None when none were measured."""
    path = rates_file(device_kind)
    if not path.exists():
        return None
    rates = json.loads(path.read_text())
    if "stages" not in rates:
        raise ValueError(f"{path}: not a rates file (no 'stages'); write it with benchmarks/bench_throughput.py")
    return rates


def split_sizes(dataset: dict, root: str | Path | None, coco_cache=None, sample: int = 64) -> dict:
    """{split: (images, mean megapixels per image)} of the dataset's splits. A demo that is not
    generated yet is described by its generator settings (sides uniform in [min_size, max_size]);
    otherwise up to `sample` images spread over the split are decoded for their size."""
    splits = sorted(set(dataset["splits"].values()))
    gen = dataset.get("generator")
    if dataset["kind"] == "demo" and (root is None or not Path(root, "ImageSets").exists()):
        side = (gen["min_size"] + gen["max_size"]) / 2
        counts = {"train": gen["n_train"], "val": gen["n_val"]}
        return {s: (counts[s], side * side / 1e6) for s in splits}
    from pipeline.data.datasets import open_split   # core may read the data package (tests/test_layout.py)
    sizes = {}
    for split in splits:
        voc = open_split(root, dataset["classes"], split, coco_cache)
        ids = list(voc.ids)
        picked = [ids[i] for i in np.linspace(0, len(ids) - 1, min(sample, len(ids))).round().astype(int)] if ids else []
        mp = [np.prod(voc.load_image(i).shape[:2]) / 1e6 for i in picked]
        sizes[split] = (len(ids), float(np.mean(mp)) if mp else 0.0)
    return sizes


def _training_mp(cfg: dict, images: int) -> float:
    batches = images // cfg["batch_size"]
    return cfg["epochs"] * batches * cfg["batch_size"] * cfg["crop_size"] ** 2 / 1e6


def _views(scales, flip: bool) -> float:
    """Megapixels seen per megapixel of image: the sum of scale^2, twice with the flip."""
    return sum(s * s for s in scales) * (2 if flip else 1)


def stage_work(sections: dict, dataset: dict, sizes: dict) -> list[dict]:
    """The heavy jobs of a run (as the rules name their benchmark files) and each one's work:
    [{"job", "rate" (the rates key), "megapixels"}]. `sections`: the dataset's merged config
    sections (classifier, vit_classifier, cams, affinity, random_walk, refine, segmentation)."""
    splits = dataset["splits"]
    n_cls, mp_cls = sizes[splits["classifier"]]
    n_cv, mp_cv = sizes[splits["classifier_val"]]
    n_cams, mp_cams = sizes[splits["cams"]]
    n_val, mp_val = sizes[splits["val"]]
    cams, seg = sections["cams"], sections["segmentation"]
    methods = list(cams["methods"])
    jobs = [{"job": "train_classifier", "rate": "train_classifier", "megapixels": _training_mp(sections["classifier"], n_cls),
             "eval": ("forward", n_cv * mp_cv)}]
    if VIT_METHODS & set(methods):
        jobs.append({"job": "train_classifier_vit", "rate": "train_classifier_vit",
                     "megapixels": _training_mp({**sections["classifier"], **sections["vit_classifier"]}, n_cls),
                     "eval": ("forward_vit", n_cv * mp_cv)})
    views = _views(cams["scales"], cams["flip"])
    for method in methods:
        jobs.append({"job": f"extract_cams_{method}", "rate": f"extract_cams/{method}",
                     "megapixels": n_cams * mp_cams * views})
    walked = [seg["labels_from"]]
    for method in walked:
        jobs += [{"job": f"affinity_labels_{method}", "rate": "affinity_labels", "megapixels": n_cams * mp_cams},
                 {"job": f"train_affinity_{method}", "rate": "train_affinity",
                  "megapixels": _training_mp(sections["affinity"], n_cams)},
                 {"job": f"propagate_{method}", "rate": "propagate", "megapixels": n_cams * mp_cams},
                 {"job": f"refine_{method}", "rate": "refine", "megapixels": n_cams * mp_cams}]
    test_views = _views(seg["test_scales"], seg["test_flip"])
    for labels in (seg["labels_from"], "full"):
        jobs.append({"job": f"train_segmentation_{labels}", "rate": "train_segmentation",
                     "megapixels": _training_mp(seg, n_cams)})
        job = {"job": f"predict_{labels}", "rate": "predict", "megapixels": n_val * mp_val * test_views}
        if seg["test_crf"]:
            job["crf"] = n_val * mp_val
        jobs.append(job)
    return jobs


def _seconds(job: dict, stages: dict, key: str, startup: float) -> float | None:
    """A job's seconds from the rates' `key` (seconds_per_megapixel: wall; cpu_seconds_per_megapixel)."""
    rate = stages.get(job["rate"])
    if rate is None or key not in rate:
        return None
    seconds = startup + job["megapixels"] * rate[key]
    for kind, mp in (job.get("eval", (None, 0.0)), ("crf_softmax", job.get("crf", 0.0))):
        if mp:
            seconds += mp * stages.get(kind, {}).get(key, 0.0)
    return seconds


def estimate(sections: dict, dataset: dict, sizes: dict, rates: dict, threads: int | None = None) -> list[dict]:
    """Each heavy job with its expected CPU seconds (`cpu_seconds`, all threads) and wall seconds
    (`seconds`); None where the rate was not measured. On a GPU the wall time is the measured
    one's; on the CPU it is the CPU time spread over the job's `threads` (an idle machine's: a
    busy one stretches it, and its rates are measured in CPU time for that reason)."""
    stages = rates["stages"]
    rows = []
    for job in stage_work(sections, dataset, sizes):
        cpu = _seconds(job, stages, "cpu_seconds_per_megapixel", rates.get("startup_cpu_seconds", 0.0))
        if rates.get("device") == "cpu":
            wall = None if cpu is None else cpu / max(1, threads or rates.get("threads", 1))
        else:
            wall = _seconds(job, stages, "seconds_per_megapixel", rates.get("startup_seconds", 0.0))
        rows.append({"job": job["job"], "megapixels": round(job["megapixels"], 3), "seconds": wall, "cpu_seconds": cpu})
    return rows


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table(rows: list[dict]) -> str:
    lines = [f"{'job':<32} {'work MP':>10} {'expected wall':>14} {'CPU time':>14}"]
    for r in rows:
        lines.append(f"{r['job']:<32} {r['megapixels']:>10.1f} {format_seconds(r['seconds']):>14} "
                     f"{format_seconds(r.get('cpu_seconds')):>14}")
    total = lambda key: sum(r[key] for r in rows if r.get(key) is not None) or None  # noqa: E731
    lines.append(f"{'total (one job at a time)':<32} {'':>10} {format_seconds(total('seconds')):>14} "
                 f"{format_seconds(total('cpu_seconds')):>14}")
    return "\n".join(lines)
