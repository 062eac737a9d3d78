"""The run's report: one self-contained HTML file (images embedded as PNG data URIs, charts as
inline SVG), openable from disk.

Sections: the ladder (with published VOC anchors beside it), per-class IoU of every stage, the
seed mIoU-vs-threshold curve of every CAM method, the per-class pixel shares of the pseudo-labels
and predictions, the training curves, and sample overlays in the VOC palette: for train images the
CAM heat map of each class, the random-walk argmax and the pseudo-label; for val images the
predictions of the weak and the fully-supervised networks. A dataset without masks (or with masks
for some images: pipeline/data/tags.py) gets the sections that need none, and a ground-truth panel
only where the image has a mask.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image

from pipeline.data.palette import colour_labels, heat_map
from pipeline.maps.calibration import value_text
from pipeline.maps.io import argmax_label

# Published VOC 2012 figures (mIoU %, ResNet-based, no extra saliency), for scale only, shown for
# VOC and for the demo that stands in for it: PSA = AffinityNet (Ahn & Kwak, CVPR 2018), IRN (Ahn,
# Cho & Kwak, CVPR 2019); full supervision: DeepLab-v2 (ResNet-101), which both retrain.
VOC_ANCHORS = {
    "seeds": "CAM seeds, train: 48.0 (PSA), 48.3 (IRN)",
    "pseudo-labels: rw": "after the random walk, train: 59.7 (PSA), 66.5 (IRN)",
    "pseudo-labels: rw:affinitynet": "after AffinityNet's random walk, train: 59.7 (PSA)",
    "pseudo-labels: rw:irn": "after IRN's random walk, train: 66.5 (IRN)",
    "segmentation (weak)": "DeepLab on the pseudo-labels, val: 61.7 (PSA), 63.5 (IRN)",
    "segmentation (full supervision)": "DeepLab on the ground truth, val: about 77 (weak / full 0.80 PSA, 0.82 IRN)",
}

# Published MS COCO 2014 figures (val mIoU %, image-level labels only), for scale only; no CAM-seed
# or random-walk figures on COCO in these papers: MCTformer-V2 (Xu et al., CVPR 2022), MECPformer
# (Liu et al., 2023, its README), WeakTr with DeiT-S (Zhu et al., 2023, its README).
COCO_ANCHORS = {
    "segmentation (weak)": "val: 42.0 (MCTformer-V2), 42.4 (MECPformer), 46.9 (WeakTr)",
}

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]

# Marks the page once every image has loaded: the browser test reads it back.
IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !img.complete || img.naturalWidth === 0; });
  document.body.setAttribute("data-images", images.length + " loaded, " + broken.length + " broken");
});
</script>"""

STYLE = """<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { display: inline-block; margin: 2px; text-align: center; font-size: 11px; }
figure img { display: block; image-rendering: pixelated; }
.row { margin-bottom: 10px; white-space: nowrap; }
.note { color: #666; font-size: 90%; }
</style>"""


def png_data_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def line_chart(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str,
               width: int = 460, height: int = 260) -> str:
    """Inline SVG with one polyline per series, axes with min/max ticks and a legend."""
    points = [p for line in series.values() for p in line]
    if not points:
        return "<p class='note'>no data</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(0.0, min(ys)), max(ys) if max(ys) > 0 else 1.0
    left, right, top, bottom = 50, 130, 10, 35
    pw, ph = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + ph - (y - y0) / (y1 - y0) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for value, anchor in ((y0, "end"), (y1, "end")):
        parts.append(f'<text x="{left - 4}" y="{sy(value) + 4:.1f}" font-size="10" text-anchor="{anchor}">'
                     f'{value:.3g}</text>')
    for value in (x0, x1):
        parts.append(f'<text x="{sx(value):.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle">{value:.3g}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 4}" font-size="11" text-anchor="middle">'
                 f'{html.escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{top + ph / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top + ph / 2})">{html.escape(y_label)}</text>')
    for i, (name, line) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        parts.append(f'<text x="{left + pw + 8}" y="{top + 12 + 14 * i}" font-size="11" fill="{colour}">'
                     f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def ladder_section(miou: dict, anchors: dict | None, benchmark: str = "VOC") -> str:
    header = ["stage", "metric", "split", "value (%)"] + ([f"published ({benchmark})"] if anchors else [])
    rows = []
    for row in miou["ladder"]:
        cells = [row["stage"], row["metric"], row["split"], _pct(row["value"])]
        if anchors:
            key = "seeds" if row["stage"].startswith("seeds") else row["stage"]
            cells.append(anchors.get(key, ""))
        rows.append(cells)
    ratio = miou.get("weak_over_full")
    summary = (f"<p>val mIoU {_pct(miou['miou'])}, fully supervised {_pct(miou.get('miou_full'))}, "
               f"weak / full {ratio:.3f}</p>") if ratio is not None else f"<p>val mIoU {_pct(miou['miou'])}</p>"
    return "<h2>Ladder</h2>" + summary + _table(header, rows) + calibration_table(miou)


def calibration_table(miou: dict) -> str:
    """The background settings that `auto` chose (docs/calibration.md), one row per ladder stage."""
    rows = []
    for row in miou["ladder"]:
        record = row.get("calibration")
        if record is None:
            continue
        heuristic = record.get("heuristic", {})
        how = (f"calibrated on {record['images']} images of {record['split']} (mIoU {_pct(record['miou'])})"
               if record["mode"] == "calibrated" else f"label-free heuristic: {record.get('reason', '')}")
        rows.append([row["stage"], record["setting"], value_text(record["chosen"]), how,
                     f"{heuristic['value']:.3g}" if "value" in heuristic else ""])
    if not rows:
        return ""
    return ("<h3>Background settings chosen by auto</h3>"
            + _table(["stage", "setting", "value", "how", "label-free heuristic"], rows))


def per_class_section(miou: dict, classes: list[str]) -> str:
    rows = [[row["stage"], *(_pct(row["iou"].get(c)) for c in classes)] for row in miou["ladder"] if "iou" in row]
    return "<h2>Per-class IoU (%)</h2>" + _table(["stage", *classes], rows)


def seed_curves_section(seeds: dict[str, dict]) -> str:
    series = {m: [(p["threshold"], p["miou"]) for p in report["curve"]] for m, report in seeds.items()}
    rows = [[m, r["threshold"], _pct(r["miou"]), _pct(max(p["miou"] for p in r["curve"]))] for m, r in seeds.items()]
    return ("<h2>Seeds: mIoU against the background threshold</h2>"
            + line_chart(series, "background threshold", "seed mIoU (train)")
            + _table(["method", "threshold", "mIoU at it (%)", "best on the curve (%)"], rows))


def training_section(histories: dict[str, list[dict]]) -> str:
    charts = [f"<figure>{line_chart({name: [(h['epoch'], h['loss']) for h in history]}, 'epoch', 'loss')}"
              f"<figcaption>{html.escape(name)}</figcaption></figure>" for name, history in histories.items()]
    return "<h2>Training curves</h2>" + "".join(charts)


def overlay_row(image_id: str, panels: list[tuple[str, np.ndarray]]) -> str:
    figures = "".join(f'<figure><img src="{png_data_uri(rgb)}" alt="{html.escape(caption)}" '
                      f'width="{rgb.shape[1]}" height="{rgb.shape[0]}"><figcaption>{html.escape(caption)}'
                      f"</figcaption></figure>" for caption, rgb in panels)
    return f'<div class="row"><b>{html.escape(image_id)}</b><br>{figures}</div>'


def render(title: str, sections: list[str]) -> str:
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>{STYLE}</head><body><h1>{html.escape(title)}</h1>"
            + "".join(sections) + IMAGE_CHECK + "</body></html>")


def ground_truth(voc, image_id: str) -> list[tuple[str, np.ndarray]]:
    """The ground-truth panel, where the image has a mask (a tags dataset's may not)."""
    has_mask = getattr(voc, "has_mask", None)
    if has_mask is not None and not has_mask(image_id):
        return []
    return [("ground truth", colour_labels(voc.load_mask(image_id)))]


def no_scores_note(voc) -> str:
    return (f"<h2>Scores</h2><p class='note'>No image of split '{html.escape(voc.split)}' has a mask, so nothing "
            "is scored: the pseudo-labels, the network and its predictions need none. Add masks/&lt;id&gt;.png "
            "for some images to score them (docs/your-data.md).</p>")


def pixel_shares(maps, classes: list[str]) -> dict[str, float]:
    """The share of each class among the labelled pixels of every map (255 not counted)."""
    counts = np.zeros(256, np.int64)
    for key in maps.keys():
        counts += np.bincount(np.asarray(maps[key]).ravel(), minlength=256)[:256]
    total = max(int(counts[:len(classes)].sum()), 1)
    return {name: counts[k] / total for k, name in enumerate(classes)}


def pixel_shares_section(artifacts: dict, classes: list[str]) -> str:
    """Per-class pixel shares (%) of the pseudo-labels and the predictions: what the run labels,
    readable without any mask."""
    rows = []
    for name, maps in artifacts.items():
        shares = pixel_shares(maps, classes)
        rows.append([f"{name} ({len(maps)} images)", *(_pct(shares[c]) for c in classes)])
    return "<h2>Per-class pixel shares (%)</h2>" + _table(["labels", *classes], rows)


def train_overlays(voc, cams, rw, pseudo, image_ids: list[str]) -> str:
    """image, ground truth, the CAM of each of the image's classes, RW argmax (if any), pseudo-label."""
    rows = []
    for image_id in image_ids:
        image = voc.load_image(image_id)
        panels = [("image", image), *ground_truth(voc, image_id)]
        maps = cams[image_id].astype(np.float32)
        for class_id, cam in zip(cams.attrs(image_id)["classes"], maps):
            panels.append((f"CAM {voc.classes[class_id]}", heat_map(image, cam)))
        if rw is not None:
            panels.append(("random walk", colour_labels(argmax_label(rw, image_id))))
        panels.append(("pseudo-label", colour_labels(pseudo[image_id])))
        rows.append(overlay_row(image_id, panels))
    return f"<h2>Pseudo-labels ({html.escape(voc.split)})</h2>" + "".join(rows)


def val_overlays(voc, predictions: dict, image_ids: list[str]) -> str:
    """image, ground truth and each network's prediction."""
    rows = []
    for image_id in image_ids:
        panels = [("image", voc.load_image(image_id)), *ground_truth(voc, image_id)]
        panels += [(f"prediction ({name})", colour_labels(preds[image_id])) for name, preds in predictions.items()]
        rows.append(overlay_row(image_id, panels))
    return f"<h2>Predictions ({html.escape(voc.split)})</h2>" + "".join(rows)
