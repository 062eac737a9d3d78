"""IRN's inter-pixel relations (Ahn, Cho & Kwak, CVPR 2019), the semantic part: IR labels, the
path affinity of a class-boundary map, its loss, and IRN's random walk.

- IR labels (IRN's cam_to_ir_label): the CAMs with a constant background channel, argmax, each
  through the dense CRF in label mode, once with background fg_threshold (0.30: only strong CAM
  stays foreground) and once with bg_threshold (0.05: only pixels far from any CAM turn
  background). The foreground comes from the first, the background is where both say
  background, and the rest (background for the first, foreground for the second) is 255.
- Path affinity: a_ij = 1 - max of B over the straight path from i to j, the path being the grid
  cells of the box spanned by i and j whose distance to the line through them is below one cell
  (IRN's PathIndex), both ends included. Radius 10 in training, 5 in the walk.
- Loss over the labelled pairs within the radius (each pair once): -log(a) over positive pairs,
  the background and the foreground pairs averaged separately and halved, -log(1 - a) over the
  negative pairs; (positive + negative) / 2 = bg / 4 + fg / 4 + neg / 2, AffinityNet's weights.
- Walk (IRN's make_sem_seg_labels): T = D^-1 A^beta over the path affinities (beta 10, radius 5),
  2^logt steps (8) on the seeds CAM x (1 - B) at the boundary grid's stride (4), no background
  channel; upsampled to the image, divided by its global maximum, and a constant background
  channel (0.25) put in front.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.affinity.labels import pair_classes
from pipeline.affinity.propagate import pooled_maps, upsampled
from pipeline.affinity.random_walk import (affinity_transition, fill_affinities, half_offsets, overlap,
                                          random_walk, walk)
from pipeline.affinity.train import fit_on_labels
from pipeline.core.parallel import image_pool
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import ArtifactReader, ArtifactWriter, file_digest
from pipeline.data.transforms import to_tensor
from pipeline.data.voc import VOCDataset
from pipeline.maps.calibration import GridScorer
from pipeline.maps.crf import crf_labels
from pipeline.maps.io import IGNORE, image_and_maps, image_maps_and_mask
from pipeline.models.boundary_net import BoundaryNet, save_boundary_net

EPS = 1e-5


def path_cells(dy: int, dx: int) -> list[tuple[int, int]]:
    """The cells (y, x), relative to the path's start, of the straight path to (dy, dx): those of
    the bounding box whose squared distance to the line through (0, 0) and (dy, dx) is below 1."""
    length_sq = dy * dy + dx * dx
    if length_sq == 0:
        return [(0, 0)]
    return [(y, x) for y in range(min(0, dy), max(0, dy) + 1) for x in range(min(0, dx), max(0, dx) + 1)
            if (dy * x - dx * y) ** 2 < length_sq]


def path_pairs(boundary: torch.Tensor, radius: int):
    """Per offset d of half_offsets(radius): (d, a) with a = 1 - max of B along the path from p to
    p + d, over overlap(h, w, *d)'s first slice. boundary (..., h, w); differentiable."""
    h, w = boundary.shape[-2:]
    for dy, dx in half_offsets(radius):
        (ys, xs), _ = overlap(h, w, dy, dx)
        n_y, n_x = ys.stop - ys.start, xs.stop - xs.start
        along = [boundary[..., ys.start + y:ys.start + y + n_y, xs.start + x:xs.start + x + n_x]
                 for y, x in path_cells(dy, dx)]
        yield (dy, dx), 1.0 - torch.stack(along).amax(0)


def boundary_affinities(boundary: torch.Tensor, radius: int) -> torch.Tensor:
    """IRN's affinity for the walk's seam: boundary (h, w) -> (h, w, K) on disk_offsets(radius),
    1 - max B along the path to each neighbour, 1 on the centre, 0 outside the grid."""
    h, w = boundary.shape
    return fill_affinities(path_pairs(boundary, radius), h, w, radius, boundary)


def ir_label(image: np.ndarray, cams: np.ndarray, class_ids, fg_threshold: float, bg_threshold: float,
             crf: dict) -> np.ndarray:
    """uint8 (H, W) IR label: a class id where the CRF of [fg_threshold, CAMs] says that class,
    0 where the CRFs of both thresholds say background, 255 elsewhere."""
    ids = np.asarray([0, *class_ids], np.uint8)

    def crf_with(threshold: float) -> np.ndarray:
        stack = np.concatenate([np.full((1, *cams.shape[1:]), threshold, np.float32), cams])
        return ids[crf_labels(image, stack.argmax(0), len(ids), crf).argmax(0)]

    fg, bg = crf_with(fg_threshold), crf_with(bg_threshold)
    label = np.where(fg != 0, fg, IGNORE).astype(np.uint8)
    label[(fg == 0) & (bg == 0)] = 0
    return label


def path_affinity_loss(boundary: torch.Tensor, labels: torch.Tensor, radius: int) -> torch.Tensor:
    """IRN's loss: boundary (B, h, w) in [0, 1], labels (B, h, w) uint8 on the same grid (255 = ignore)."""
    h, w = labels.shape[-2:]
    terms = [[], [], [], []]
    for (dy, dx), a in path_pairs(boundary, radius):
        src, dst = overlap(h, w, dy, dx)
        for column, value in zip(terms, (a, *pair_classes(labels[..., src[0], src[1]], labels[..., dst[0], dst[1]]))):
            column.append(value.flatten())
    a, bg_pos, fg_pos, neg = (torch.cat(column) for column in terms)
    pos_loss, neg_loss = -torch.log(a + EPS), -torch.log(1.0 + EPS - a)

    def mean_over(mask, values):
        return (values * mask).sum() / (mask.sum(dtype=values.dtype) + EPS)

    positive = mean_over(bg_pos, pos_loss) / 2 + mean_over(fg_pos, pos_loss) / 2
    return (positive + mean_over(neg, neg_loss)) / 2


@torch.no_grad()
def irn_walk(boundary: torch.Tensor, seeds: torch.Tensor, radius: int, beta: float, steps: int) -> torch.Tensor:
    """seeds (K, h, w) x (1 - B), walked `steps` steps over boundary_affinities(B, radius)^beta."""
    return walk(boundary_affinities(boundary, radius), radius, beta, seeds * (1 - boundary), steps)


def scaled_maps(walked: torch.Tensor, stride: int, h: int, w: int) -> np.ndarray:
    """Walked grid maps upsampled to the image, cropped to (h, w) and divided by their global maximum."""
    up = upsampled(walked, stride, h, w).float().cpu().numpy()
    up /= max(float(up.max(initial=0.0)), EPS)
    return up


def with_background(maps: np.ndarray, walk_bg: float) -> np.ndarray:
    """float32 (1 + K, H, W): the constant background walk_bg in front of maps (K, H, W)."""
    return np.concatenate([np.full((1, *maps.shape[1:]), walk_bg, np.float32), maps])


def irn_maps(boundary: torch.Tensor, cams: np.ndarray, stride: int, cfg: dict) -> np.ndarray:
    """cams (K, H, W) in [0, 1] and B on the grid of the image padded to a multiple of stride ->
    float32 (1 + K, H, W): the constant background cfg['walk_bg'] first, then the walked CAMs
    upsampled, cropped and divided by their global maximum."""
    h, w = cams.shape[1:]
    seeds = pooled_maps(cams, stride).to(boundary.device)
    walked = irn_walk(boundary, seeds, cfg["walk_radius"], cfg["beta"], 2 ** cfg["logt"])
    return with_background(scaled_maps(walked, stride, h, w), cfg["walk_bg"])


IR_LABEL_KEYS = ("fg_threshold", "bg_threshold", "crf")
WALK_KEYS = ("walk_radius", "beta", "logt", "walk_bg")


class _IRLabeller:
    """Picklable per-image job for the worker pool (readers reopen after the fork)."""

    def __init__(self, voc: VOCDataset, cams: ArtifactReader, cfg: dict):
        self.voc, self.cams, self.cfg = voc, cams, cfg

    def __call__(self, image_id: str):
        image, cams, class_ids = image_and_maps(self.voc, self.cams, image_id)
        c = self.cfg
        return image_id, ir_label(image, cams, class_ids, c["fg_threshold"], c["bg_threshold"], c["crf"])


def make_ir_labels(cams: ArtifactReader, voc: VOCDataset, out, cfg: dict, workers: int = 1) -> dict:
    """One uint8 IR label map per image of voc into `out` (resumable); returns the tally with the
    label coverage of the images computed now."""
    params = {k: cfg[k] for k in IR_LABEL_KEYS}
    counts = np.zeros(3, np.int64)  # foreground, background, ignored pixels (of this run's images)
    provenance = {"data": dataset_identity(voc), "cams": cams.digest}
    with ArtifactWriter(out, meta={**params, "classes": voc.classes}, provenance=provenance) as writer:
        todo = [i for i in voc.ids if i not in writer.done_keys()]
        with image_pool(workers) as pool:
            for image_id, label in tqdm(pool.imap(_IRLabeller(voc, cams, params), todo, chunksize=4),
                                        total=len(todo), desc="IR labels"):
                writer.write(image_id, label)
                counts += [np.sum((label != 0) & (label != IGNORE)), np.sum(label == 0), np.sum(label == IGNORE)]
    return {"images": len(voc), "computed_now": len(todo),
            "pixels": {"fg": int(counts[0]), "bg": int(counts[1]), "ignored": int(counts[2])}}


def train_irn(voc: VOCDataset, labels: ArtifactReader, cfg: dict, out: str | Path, device, seed: int = 0) -> dict:
    """Train the boundary network's new layers on the IR labels (IRN's train_irn, semantic part)."""
    torch.manual_seed(seed)
    model = BoundaryNet(cfg["backbone"], cfg["levels"], cfg["dim"], cfg["stride"], cfg["output_stride"],
                        cfg["weights"])
    return fit_on_labels(model, path_affinity_loss, save_boundary_net, "irn", voc, labels, cfg, out, device, seed)


@torch.no_grad()
def boundary_of(model: BoundaryNet, image: np.ndarray, mean, std, device) -> torch.Tensor:
    """B (h, w) of the image padded to a multiple of the model's stride (zero = the mean colour)."""
    s = model.stride
    h, w = image.shape[:2]
    x = F.pad(to_tensor(image, mean, std), (0, -w % s, 0, -h % s))
    return model.boundary(x[None].to(device))


def propagate_irn(model: BoundaryNet, meta: dict, cams: ArtifactReader, voc: VOCDataset, out, cfg: dict,
                  device, *, boundary_net: str) -> dict:
    """IRN's walk of every image of voc: one float16 (1 + K, H, W) map per image, attribute `classes` =
    [0, class ids...]; resumable from a partial of the same images, CAMs and checkpoint."""
    model.eval().to(device)
    params = {k: cfg[k] for k in WALK_KEYS}
    seconds = 0.0
    provenance = {"data": dataset_identity(voc), "cams": cams.digest, "affinity": file_digest(boundary_net)}
    with ArtifactWriter(out, meta={**params, "affinity": "irn", "classes": voc.classes},
                        provenance=provenance) as writer:
        todo = [i for i in voc.ids if i not in writer.done_keys()]
        for image_id in tqdm(todo, desc="IRN random walk"):
            image, maps, class_ids = image_and_maps(voc, cams, image_id)
            start = time.perf_counter()
            boundary = boundary_of(model, image, meta["mean"], meta["std"], device)
            walked = irn_maps(boundary, maps, model.stride, params)
            seconds += time.perf_counter() - start
            writer.write(image_id, walked, classes=np.asarray([0, *class_ids], np.int64))
    return {"images": len(voc), "computed_now": len(todo), "seconds": seconds}


# --- the walk's logt and background chosen on a calibration split (docs/calibration.md) -----------

WALK_SETTING = "irn.logt, irn.walk_bg"


def walk_grid(cfg: dict) -> list[dict]:
    """The (logt, walk_bg) pairs `auto` chooses from, logt-major: each key's grid where it is auto,
    its fixed value otherwise."""
    logts = sorted({int(v) for v in cfg["logt_grid"]}) if cfg["logt"] == "auto" else [int(cfg["logt"])]
    bgs = [float(v) for v in cfg["walk_bg_grid"]] if cfg["walk_bg"] == "auto" else [float(cfg["walk_bg"])]
    return [{"logt": logt, "walk_bg": bg} for logt in logts for bg in bgs]


@torch.no_grad()
def walk_curve(model: BoundaryNet, meta: dict, cams: ArtifactReader, voc: VOCDataset, grid: list[dict],
               cfg: dict, device) -> GridScorer:
    """IRN's walk label map for every (logt, walk_bg) of grid on the images of voc, scored against
    their masks. One walk per image: the steps accumulate, so the maps after 2^logt steps are read
    on the way to the largest logt; each is scaled as irn_maps scales it and put behind every
    background of the grid, in float16 as the rw_irn artifact stores them, and argmaxed."""
    model.eval().to(device)
    scorer = GridScorer(grid, voc.classes)
    logts = sorted({g["logt"] for g in grid})
    for image_id in tqdm(voc.ids, desc="IRN walk calibration"):
        image, cams_of, class_ids, gt = image_maps_and_mask(voc, cams, image_id)
        h, w = gt.shape
        boundary = boundary_of(model, image, meta["mean"], meta["std"], device)
        T = affinity_transition(boundary_affinities(boundary, cfg["walk_radius"]), cfg["walk_radius"], cfg["beta"])
        walked, steps = pooled_maps(cams_of, model.stride).to(boundary.device) * (1 - boundary), 0
        ids = np.asarray([0, *class_ids], np.uint8)
        for logt in logts:
            walked, steps = random_walk(walked, T, 2 ** logt - steps), 2 ** logt
            maps = scaled_maps(walked, model.stride, h, w)
            for k, point in enumerate(grid):
                if point["logt"] == logt:
                    stack = with_background(maps, point["walk_bg"]).astype(np.float16)
                    scorer.add(k, gt, ids[stack.argmax(0)])
        scorer.images += 1
    return scorer
