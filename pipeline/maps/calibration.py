"""Calibrating a background setting on a few labelled images: a grid, a scorer, a choice, a record.

A background setting (the seeds' constant threshold, the walk's background power, IRN's constant
backgrounds, ...) decides how much of an image becomes foreground, and the published values are
tuned on PASCAL VOC's CAMs. `auto` chooses one on the dataset's `calibration` split (a few images
with masks, never the split a result is reported on) by the published criterion: the value of a
documented grid whose stage output has the best mIoU on that split, one confusion matrix over the
split per grid value. Without any mask a label-free heuristic stands in, and the record says so.

Every stage that calibrates a setting uses the same pieces:

- `GridScorer`: one confusion matrix per grid value, fed the stage's label map for each value;
- `choose`: the grid value of best mIoU (the first one on a tie, grid order);
- `calibrated_record` / `heuristic_record`: what is written beside the artifact (the stage's
  JSON) and shown in the report and in miou.json's ladder.

The label-free heuristic (`otsu_threshold`) is Otsu's threshold of the histogram of the CAMs'
per-pixel peak: the valley between the mass of background pixels near 0 and the activated ones.
`crossing_alpha` turns a threshold into the background power (1 - m)^alpha that crosses the
class score m at that threshold, so one threshold also gives the walk's power.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tqdm import tqdm

from pipeline.maps.metrics import ConfusionAccumulator, scores

IGNORE = 255
CRITERION = ("best mIoU of the stage's output on the calibration split (one confusion matrix over the split "
             "per grid value); the first grid value on a tie")
OTSU_NAME = "Otsu's threshold of the histogram of the CAMs' per-pixel peak (label-free heuristic, not calibrated)"


def curve_row(value: float | dict, matrix: np.ndarray, classes: Sequence[str]) -> dict:
    s = scores(matrix, classes)
    return {"value": value, "miou": s["miou"], "fg_precision": s["fg_precision"], "fg_recall": s["fg_recall"]}


class GridScorer:
    """One confusion matrix per grid value over a split. `add(index, gt, label)` scores the label
    map the stage gives at grid[index]; label pixels at 255 (ignored by design) are not scored. A
    grid value is a number, or a mapping of several settings chosen together."""

    def __init__(self, grid: Sequence[float | dict], classes: Sequence[str]):
        if len(grid) == 0:
            raise ValueError("calibration grid is empty: expected at least one value")
        self.grid = [dict(v) if isinstance(v, dict) else float(v) for v in grid]
        self.classes = list(classes)
        self.acc = [ConfusionAccumulator(len(self.classes)) for _ in self.grid]
        self.images = 0

    def add(self, index: int, gt: np.ndarray, label: np.ndarray) -> None:
        self.acc[index].add(np.where(label == IGNORE, IGNORE, gt), label)

    def curve(self) -> list[dict]:
        return [curve_row(v, a.matrix, self.classes) for v, a in zip(self.grid, self.acc)]


def value_text(value: float | dict) -> str:
    """A chosen value as the report and the logs print it: 16, or `logt 3, walk_bg 0.35`."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {v:g}" for key, v in value.items())
    return f"{value:g}"


def choose(curve: list[dict]) -> dict:
    """The row of best mIoU; the first in grid order on a tie (rows with undefined mIoU never win)."""
    rows = [r for r in curve if r["miou"] is not None]
    if not rows:
        raise ValueError("no grid value has a defined mIoU: the calibration split has no scored pixels")
    return max(rows, key=lambda r: r["miou"])   # max keeps the first of equal keys


def calibrated_record(setting: str, split: str, images: int, curve: list[dict], **extra) -> dict:
    """What a stage writes beside its artifact when `auto` chose on a calibration split."""
    best = choose(curve)
    return {"setting": setting, "mode": "calibrated", "criterion": CRITERION, "split": split, "images": images,
            "grid": [r["value"] for r in curve], "curve": curve, "chosen": best["value"],
            "miou": best["miou"], **extra}


def heuristic_record(setting: str, value: float, heuristic: dict, reason: str, **extra) -> dict:
    """What a stage writes when `auto` had no calibration split: the label-free value, labelled."""
    return {"setting": setting, "mode": "heuristic", "reason": reason, "chosen": value,
            "heuristic": heuristic, **extra}


def auto_record(setting: str, calibrated: dict | None, heuristic: dict, reason: str) -> dict:
    """The calibrated record when there was a calibration split, the heuristic's otherwise; both
    carry the heuristic (its value, and its score where a split was scored), so its distance from
    the calibrated choice is on record."""
    if calibrated is not None:
        return {**calibrated, "heuristic": heuristic}
    return heuristic_record(setting, heuristic["value"], heuristic, reason)


def grid_values(start: float, stop: float, step: float) -> list[float]:
    """start, start + step, ..., stop (inclusive)."""
    if step <= 0 or start > stop:
        raise ValueError(f"grid [{start}, {stop}, {step}]: expected [start, stop, step] with start <= stop "
                         "and step > 0")
    return [round(start + i * step, 6) for i in range(int(round((stop - start) / step)) + 1)]


# --- the label-free heuristic --------------------------------------------------------------------

class PeakHistogram:
    """Histogram of the CAMs' per-pixel peak (max over the image's classes) in [0, 1]."""

    def __init__(self, bins: int = 256):
        self.counts = np.zeros(bins, np.int64)
        self.images = 0

    def add(self, peak: np.ndarray) -> None:
        bins = len(self.counts)
        idx = np.clip((np.asarray(peak, np.float64) * bins).astype(np.int64), 0, bins - 1)
        self.counts += np.bincount(idx.ravel(), minlength=bins)
        self.images += 1


def label_free_threshold(cams, voc) -> dict:
    """Otsu's threshold of the peak histogram of the CAMs (an ArtifactReader) of voc's images; no
    mask is read. The heuristic's entry of a calibration record."""
    hist = PeakHistogram()
    for image_id in tqdm(voc.ids, desc="peak histogram"):
        maps = cams[image_id]
        if len(maps):
            hist.add(maps.max(0).astype(np.float32))
    return {"name": OTSU_NAME, "value": otsu_threshold(hist.counts), "split": voc.split, "images": hist.images}


def otsu_threshold(counts: np.ndarray) -> float:
    """Otsu's threshold of a histogram of [0, 1] split into len(counts) equal bins: the bin edge
    that maximises the between-class variance w0 w1 (mu0 - mu1)^2. A value t means peak > t is
    foreground (the upper edge of the last background bin)."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total == 0:
        raise ValueError("the peak histogram is empty: no CAM pixels to take a threshold from")
    bins = len(counts)
    centres = (np.arange(bins) + 0.5) / bins
    w0 = np.cumsum(counts)[:-1]
    w1 = total - w0
    m0 = np.cumsum(counts * centres)[:-1]
    m1 = (counts * centres).sum() - m0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.where((w0 > 0) & (w1 > 0), w0 * w1 * (m0 / w0 - m1 / w1) ** 2, -1.0)
    k = int(np.argmax(between))   # background = bins 0..k
    return round((k + 1) / bins, 6)


def crossing_alpha(threshold: float) -> float:
    """The background power alpha with (1 - t)^alpha = t: over [(1 - m)^alpha, m] a pixel of peak
    m is foreground exactly when m > t."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold {threshold}: expected a value in (0, 1)")
    return math.log(threshold) / math.log1p(-threshold)


def crossing_threshold(alpha: float) -> float:
    """The peak m at which (1 - m)^alpha = m (the inverse of crossing_alpha), by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 - mid) ** alpha > mid:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# --- the affinity labels' two powers, derived from the seeds' threshold --------------------------

PSA_LABEL_ALPHAS = {"alpha_low": 4.0, "alpha_high": 32.0}   # psa's confident foreground / background powers
PSA_SEED_THRESHOLD = 0.15                                    # the seeds' threshold they go with (VOC)


def derived_label_alphas(seed_record: dict, cfg: dict) -> tuple[dict, dict]:
    """alpha_low / alpha_high set to auto: psa's 4 and 32 scaled by the ratio of the crossing power
    of the seeds' chosen threshold to that of VOC's 0.15, so they keep the relation to the seed
    threshold they have on VOC (a threshold of 0.15 gives exactly 4 and 32). Derived, not
    calibrated: their output is a partial label map, whose mIoU over the labelled pixels only
    grows as it labels less, and the criterion that counts (the walk's mIoU after AffinityNet is
    trained on them) costs one training per grid point. Returns (the two values, the record)."""
    scale = crossing_alpha(seed_record["chosen"]) / crossing_alpha(PSA_SEED_THRESHOLD)
    values = {k: (PSA_LABEL_ALPHAS[k] * scale if cfg[k] == "auto" else cfg[k]) for k in PSA_LABEL_ALPHAS}
    record = {"setting": "affinity.alpha_low, affinity.alpha_high", "mode": f"derived ({seed_record['mode']})",
              "chosen": values, "rule": "psa's 4 / 32 x crossing_alpha(seeds threshold) / crossing_alpha(0.15)",
              "seeds_threshold": seed_record["chosen"], "seeds_mode": seed_record["mode"],
              "auto": sorted(k for k in PSA_LABEL_ALPHAS if cfg[k] == "auto")}
    return values, record


# --- the seeds' threshold, one for all classes or one per class ----------------------------------

class ThresholdGrid:
    """Seed confusion matrices over a threshold grid, split by each pixel's strongest class: the
    matrix of any choice of one threshold per class is a sum of these, so one pass over the split
    scores a global threshold and per-class thresholds alike. A pixel of strongest class c is c
    where its peak > t_c and background otherwise; pixels of images without classes are background."""

    def __init__(self, grid: Sequence[float], classes: Sequence[str]):
        self.grid, self.classes = [float(v) for v in grid], list(classes)
        n = len(self.classes)
        self.parts = np.zeros((n, len(self.grid), n, n), np.int64)   # [strongest class, grid index]
        self.images = 0

    def add(self, gt: np.ndarray, peak: np.ndarray, label: np.ndarray) -> None:
        n = len(self.classes)
        valid = gt != IGNORE
        gt, peak, label = gt[valid].astype(np.int64), peak[valid], label[valid]
        for c in np.unique(label):
            on = label == c
            g, p = gt[on], peak[on]
            if c == 0:
                self.parts[0, :] += np.bincount(g * n, minlength=n * n).reshape(n, n)
                continue
            for k, t in enumerate(self.grid):
                pred = np.where(p > t, c, 0)
                self.parts[c, k] += np.bincount(g * n + pred, minlength=n * n).reshape(n, n)
        self.images += 1

    def matrix(self, indices: Sequence[int]) -> np.ndarray:
        """The confusion matrix with class c at threshold grid[indices[c]] (indices[0] unused)."""
        return self.parts[0, 0] + sum(self.parts[c, indices[c]] for c in range(1, len(self.classes)))

    def curve(self) -> list[dict]:
        n = len(self.classes)
        return [curve_row(t, self.matrix([k] * n), self.classes) for k, t in enumerate(self.grid)]

    def per_class(self, sweeps: int = 3) -> dict:
        """Per-class thresholds by coordinate ascent on the split's mIoU from the best global one:
        each class in turn takes the grid value that maximises the mIoU with the others fixed
        (its current value kept on a tie), until a sweep changes nothing. A class without pixels
        on the split keeps the global value."""
        n = len(self.classes)
        best = choose(self.curve())
        indices = [self.grid.index(best["value"])] * n

        def miou(idx):
            m = scores(self.matrix(idx), self.classes)["miou"]
            return -1.0 if m is None else m

        current = miou(indices)
        for _ in range(sweeps):
            changed = False
            for c in range(1, n):
                for k in range(len(self.grid)):
                    trial = indices[:c] + [k] + indices[c + 1:]
                    value = miou(trial)
                    if value > current:
                        indices, current, changed = trial, value, True
            if not changed:
                break
        row = curve_row(None, self.matrix(indices), self.classes)
        return {"thresholds": {self.classes[c]: self.grid[indices[c]] for c in range(1, n)},
                "miou": row["miou"], "fg_precision": row["fg_precision"], "fg_recall": row["fg_recall"]}


def per_class_seed(peak: np.ndarray, label: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Seeds with one threshold per class id: thresholds[c] for pixels of strongest class c."""
    return np.where(peak > thresholds[label], label, 0).astype(np.uint8)


# --- the calibration split ----------------------------------------------------------------------

REPORTED_ROLES = ("seeds", "val")   # the splits whose scores are the results


def check_calibration_split(dataset: str, splits: dict, ids: dict | None = None) -> None:
    """The calibration split must not be a split a result is reported on (seeds: seeds, walk and
    pseudo-labels; val: the network): the same name is an error, and so is any shared image id when
    `ids` (role -> list of ids) is given. Raises ValueError naming the dataset, splits and ids."""
    calibration = splits.get("calibration")
    if calibration is None:
        return
    for role in REPORTED_ROLES:
        if splits[role] == calibration:
            raise ValueError(f"config key 'datasets.{dataset}.splits.calibration' is '{calibration}', the split "
                             f"whose scores are reported ('splits.{role}'): calibrate on other images")
    if ids is None:
        return
    calib = set(ids["calibration"])
    for role in REPORTED_ROLES:
        shared = sorted(calib & set(ids[role]))
        if shared:
            raise ValueError(f"config key 'datasets.{dataset}.splits.calibration' ('{calibration}') shares "
                             f"{len(shared)} images with 'splits.{role}' ('{splits[role]}'), e.g. "
                             f"{', '.join(shared[:3])}: the calibration images must not be scored as the result")
