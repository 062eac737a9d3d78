"""Seeds: CAMs + a constant background score -> argmax label map, scored against ground truth."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from pipeline.core.store import ArtifactReader
from pipeline.data.voc import VOCDataset
from pipeline.maps.calibration import ThresholdGrid, calibrated_record, per_class_seed
from pipeline.maps.metrics import ConfusionAccumulator, scores

SETTING = "seeds.bg_threshold"


def sweep_values(start: float, stop: float, step: float) -> list[float]:
    """start, start + step, ..., stop (inclusive); config.validate checks start <= stop, step > 0."""
    if step <= 0 or start > stop:
        raise ValueError(f"sweep [{start}, {stop}, {step}]: expected [start, stop, step] with start <= stop "
                         "and step > 0")
    count = int(round((stop - start) / step)) + 1
    return [round(start + i * step, 6) for i in range(count)]


def peak_labels(maps: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the highest class score and that class's id: all a threshold needs, so a
    sweep computes the argmax once per image, not once per threshold."""
    if len(class_ids) == 0:
        return np.zeros(maps.shape[1:], np.float32), np.zeros(maps.shape[1:], np.uint8)
    return maps.max(0), np.asarray(class_ids, np.uint8)[maps.argmax(0)]


def threshold_peaks(peak: np.ndarray, label: np.ndarray, threshold: float) -> np.ndarray:
    """argmax over [threshold, maps]; background wins ties, as the first entry of the argmax."""
    return np.where(peak > threshold, label, 0).astype(np.uint8)


def seed_label(maps: np.ndarray, class_ids: np.ndarray, threshold: float) -> np.ndarray:
    return threshold_peaks(*peak_labels(maps, class_ids), threshold)


def _peaks_and_mask(cams: ArtifactReader, voc: VOCDataset, image_id: str):
    maps = cams[image_id].astype(np.float32)
    gt = voc.load_mask(image_id)
    if gt.shape != maps.shape[1:]:
        raise ValueError(f"CAM of '{image_id}' in {cams.path} is {maps.shape[1:]}, its mask "
                         f"{voc.mask_path(image_id)} is {gt.shape}")
    return (*peak_labels(maps, cams.attrs(image_id)["classes"]), gt)


def evaluate(cams: ArtifactReader, voc: VOCDataset, threshold: float, sweep: list[float],
             class_thresholds: dict | None = None) -> dict:
    """One confusion matrix over the split per threshold; the configured threshold is the result,
    the sweep is reported beside it (choosing from it would tune on the evaluation labels). With
    class_thresholds (class name -> threshold, chosen on a calibration split) the result is the
    seeds with one threshold per class, the sweep still one threshold for all."""
    thresholds = sorted(set(sweep) | {threshold})
    acc = {t: ConfusionAccumulator(len(voc.classes)) for t in thresholds}
    per_class = ConfusionAccumulator(len(voc.classes))
    if class_thresholds is not None:
        table = np.full(len(voc.classes), threshold, np.float64)
        for name, t in class_thresholds.items():
            table[voc.classes.index(name)] = t
    for image_id in tqdm(voc.ids, desc="seed mIoU"):
        peak, label, gt = _peaks_and_mask(cams, voc, image_id)
        for t in thresholds:
            acc[t].add(gt, threshold_peaks(peak, label, t))
        if class_thresholds is not None:
            per_class.add(gt, per_class_seed(peak, label, table))
    result = scores((per_class if class_thresholds is not None else acc[threshold]).matrix, voc.classes)
    curve = []
    for t in thresholds:
        s = scores(acc[t].matrix, voc.classes)
        curve.append({"threshold": t, "miou": s["miou"], "fg_precision": s["fg_precision"],
                      "fg_recall": s["fg_recall"]})
    best = max(curve, key=lambda row: row["miou"])
    per_class_info = {"class_thresholds": class_thresholds} if class_thresholds is not None else {}
    return {"split": voc.split, "images": len(voc), "threshold": threshold, **per_class_info, **result,
            "curve": curve, "best_on_curve": {"threshold": best["threshold"], "miou": best["miou"]}}


def calibrate_threshold(cams: ArtifactReader, voc: VOCDataset, grid: list[float], per_class: bool) -> dict:
    """The threshold of best seed mIoU over grid on the calibration split voc (and, with per_class,
    one threshold per class by coordinate ascent from it): the calibration record."""
    table = ThresholdGrid(grid, voc.classes)
    for image_id in tqdm(voc.ids, desc="seed calibration"):
        peak, label, gt = _peaks_and_mask(cams, voc, image_id)
        table.add(gt, peak, label)
    extra = {"per_class": table.per_class()} if per_class else {}
    return calibrated_record(SETTING, voc.split, len(voc), table.curve(), **extra)
