"""The final evaluation: val mIoU of the predictions, and the ladder of every stage of the run.

The ladder reads the stages' own JSON reports, so each number is the one that stage measured:
classifier mAP -> seed mIoU -> each refinement step (the pseudo-labels; the first step is the
random walk when refine.source is rw) -> segmentation val mIoU -> the fully-supervised reference.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.store import ArtifactReader
from pipeline.data.voc import VOCDataset
from pipeline.maps.io import score_split


def evaluate_predictions(preds: ArtifactReader, voc: VOCDataset, desc: str = "val mIoU") -> dict:
    """mIoU etc. of the stored label maps over the split (ground truth 255 is not scored)."""
    return score_split(voc, preds.__getitem__, desc, "prediction", preds.path)


def _read(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def _miou_row(stage: str, report: dict, split: str) -> dict:
    return {"stage": stage, "metric": "mIoU", "split": split, "value": report["miou"], "iou": report["iou"]}


def calibration_summary(record: dict) -> dict:
    """What the ladder shows of a calibration record (docs/calibration.md): the setting, how it was
    chosen (calibrated on a split, or the label-free heuristic), the value, the curve."""
    keys = ("setting", "mode", "chosen", "split", "images", "miou", "grid", "curve", "reason")
    summary = {k: record[k] for k in keys if k in record}
    if "heuristic" in record:
        summary["heuristic"] = record["heuristic"]
    if "per_class" in record:
        summary["per_class"] = record["per_class"]
    return summary


def is_walk(step: str) -> bool:
    """The walk's own row of the refinement ladder ("rw", or "rw:<affinity>"), not a refined step."""
    return step.split(":")[0] == "rw" and "+" not in step


def ladder(classifier: str, seeds: str | None, pseudo: str, segmentation: dict, full: dict | None,
           calibrations: list[str] = ()) -> list[dict]:
    """Rows {stage, metric, split, value[, iou][, calibration]} in pipeline order from the stages'
    JSON reports. A stage scored on no image (a dataset whose train images have no mask) has no row;
    a stage whose background setting was chosen by `auto` carries its calibration (the seeds' from
    their report, the walk's from `calibrations`, the calibrate_walk records)."""
    clf, refined = _read(classifier), _read(pseudo)
    rows = [{"stage": "classifier", "metric": "mAP", "split": clf["val_split"], "value": clf["val_map"]}]
    if seeds is not None:
        seed = _read(seeds)
        seed_row = _miou_row(f"seeds ({seed['method']} @ {seed['threshold']})", seed, seed["split"])
        if "calibration" in seed:
            seed_row["calibration"] = calibration_summary(seed["calibration"])
        rows.append(seed_row)
    walk = [_read(path) for path in calibrations]
    for step in refined.get("ladder", []):
        if step.get("miou") is None:
            continue
        row = _miou_row(f"pseudo-labels: {step['step']}", step, refined["eval_split"])
        if walk and is_walk(step["step"]):
            row["calibration"] = calibration_summary(walk[0])
        rows.append(row)
    rows.append(_miou_row("segmentation (weak)", segmentation, segmentation["split"]))
    if full is not None:
        rows.append(_miou_row("segmentation (full supervision)", full, full["split"]))
    return rows


def final_report(scores: dict, rows: list[dict], full: dict | None, method: str) -> dict:
    """The val scores with the weak / full ratio (the figure WSSS papers quote) and the ladder."""
    ratio = scores["miou"] / full["miou"] if full and full["miou"] else None
    return {"method": method, **scores, "miou_full": full["miou"] if full else None, "weak_over_full": ratio,
            "ladder": rows}
