"""The refinement chain that turns class maps into the final pseudo-labels (`refine` stage).

The chain starts from the CAMs (background = a constant, seeds.bg_threshold) or from the
random-walk maps (background first), applies the configured steps in order and ends in a uint8
label map (255 = ignore):

pamr:     PAMR on the maps (pipeline.refine.pamr)
crf:      dense CRF, softmax-unary on the maps or label-unary on their argmax (pipeline.maps.crf)
saliency: saliency-guided completion (GETAM); needs a saliency map per image, so it is the last
          step and is skipped, and reported as skipped, when refine.saliency.dir is not set.

After every step the argmax is scored, which gives the ladder of refinements.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from pipeline.core.parallel import image_pool
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import ArtifactReader, ArtifactWriter
from pipeline.data.voc import VOCDataset
from pipeline.maps.crf import crf_labels, crf_softmax
from pipeline.maps.io import IGNORE, add_scored, image_and_maps
from pipeline.maps.metrics import ConfusionAccumulator
from pipeline.refine.pamr import pamr

STEPS = ("pamr", "crf", "saliency")


def saliency_complete(maps: np.ndarray, ids: np.ndarray, saliency: np.ndarray, percentile: float) -> np.ndarray:
    """maps (1 + K, H, W) with ids [0, classes...], saliency (H, W) in [0, 1] -> uint8 labels.

    Each class claims the pixels above the `percentile`-th percentile of its own map; a pixel
    claimed by one class takes it, one claimed by several is ignored (255), and wherever the
    saliency is 0 the label is background, whatever the maps say."""
    label = ids[maps.argmax(0)].astype(np.uint8)
    claims = np.zeros(label.shape, np.int32)
    claimed = np.zeros(label.shape, np.uint8)
    for k in range(1, len(ids)):
        mask = maps[k] > np.percentile(maps[k], percentile)
        claims += mask
        claimed[mask] = ids[k]
    label[claims == 1] = claimed[claims == 1]
    label[claims >= 2] = IGNORE
    label[saliency == 0] = 0
    return label


def load_saliency(directory: str | Path, image_id: str, shape) -> np.ndarray:
    path = Path(directory) / f"{image_id}.png"
    sal = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if sal is None:
        raise FileNotFoundError(f"saliency map {path} is missing or unreadable (refine.saliency.dir expects "
                                f"one grey PNG per image, 0 = background)")
    if sal.shape != tuple(shape):
        raise ValueError(f"saliency map {path} is {sal.shape}, its image {tuple(shape)}")
    return sal.astype(np.float32) / 255.0


def with_background(maps: np.ndarray, classes, bg_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """CAMs (no background channel) get a constant background plane; random-walk maps have one."""
    classes = np.asarray(classes, np.int64)
    if len(classes) and classes[0] == 0:
        return maps, classes.astype(np.uint8)
    bg = np.full((1, *maps.shape[1:]), bg_threshold, np.float32)
    return np.concatenate([bg, maps]), np.asarray([0, *classes], np.uint8)


def refine_image(image: np.ndarray, maps: np.ndarray, ids: np.ndarray, steps, cfg: dict,
                 saliency: np.ndarray | None = None) -> list[np.ndarray]:
    """The label map after each step: [source argmax, after steps[0], ...]; the last is the result."""
    labels = [ids[maps.argmax(0)]]
    for step in steps:
        if step == "pamr":
            p = cfg["pamr"]
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
            maps = pamr(x, torch.from_numpy(maps)[None], p["iterations"], p["dilations"], p["temperature"])[0].numpy()
        elif step == "crf" and cfg["crf_mode"] == "softmax":
            maps = crf_softmax(image, maps, cfg["crf_softmax"])
        elif step == "crf":
            maps = crf_labels(image, maps.argmax(0), len(ids), cfg["crf_label"])
        elif step == "saliency":
            labels.append(saliency_complete(maps, ids, saliency, cfg["saliency"]["percentile"]))
            continue
        else:
            raise ValueError(f"refine step '{step}' is unknown; expected one of {STEPS}")
        labels.append(ids[maps.argmax(0)])
    return labels


def active_steps(cfg: dict) -> tuple[list[str], list[str]]:
    """(steps that run, steps skipped): saliency runs only with a saliency directory."""
    run = [s for s in cfg["steps"] if s != "saliency" or cfg["saliency"]["dir"]]
    return run, [s for s in cfg["steps"] if s not in run]


class _Refiner:
    """Picklable per-image job for the worker pool."""

    def __init__(self, voc: VOCDataset, maps: ArtifactReader, cfg: dict, steps, bg_threshold: float):
        self.voc, self.maps, self.cfg, self.steps, self.bg = voc, maps, cfg, steps, bg_threshold

    def __call__(self, image_id: str):
        image, maps, classes = image_and_maps(self.voc, self.maps, image_id)
        maps, ids = with_background(maps, classes, self.bg)
        saliency = load_saliency(self.cfg["saliency"]["dir"], image_id, image.shape[:2]) \
            if "saliency" in self.steps else None
        return image_id, refine_image(image, maps, ids, self.steps, self.cfg, saliency)


def refine(maps: ArtifactReader, voc: VOCDataset, eval_voc: VOCDataset, out, cfg: dict, bg_threshold: float,
           source: str, workers: int = 1) -> dict:
    """Write the final uint8 labels of every image of voc (resumable) and score each step of the
    chain on the images of eval_voc; returns the tally (pipeline.core.shards) with one confusion
    matrix per step."""
    steps, skipped = active_steps(cfg)
    if "saliency" in steps and steps[-1] != "saliency":
        raise ValueError(f"refine.steps {cfg['steps']}: saliency gives labels, not maps, so it must be last")
    for name in skipped:
        print(f"refine: step '{name}' skipped: refine.saliency.dir is not set")
    names = [source, *(f"{source}+" + "+".join(steps[:i + 1]) for i in range(len(steps)))]
    evaluated = set(eval_voc.ids)
    eval_voc.require_within(voc)
    acc = [ConfusionAccumulator(len(voc.classes)) for _ in names]
    params = {"steps": steps, "source": source, "bg_threshold": bg_threshold,
              **{k: cfg[k] for k in ("crf_mode", "crf_softmax", "crf_label", "pamr", "saliency")}}
    provenance = {"data": dataset_identity(voc), "maps": maps.digest}
    with ArtifactWriter(out, meta={**params, "classes": voc.classes}, provenance=provenance) as writer:
        # scoring needs every evaluated image's intermediate labels: those are always recomputed
        todo = [i for i in voc.ids if i not in writer.done_keys() or i in evaluated]
        with image_pool(workers) as pool:
            for image_id, labels in tqdm(pool.imap(_Refiner(voc, maps, cfg, steps, bg_threshold), todo, chunksize=2),
                                         total=len(todo), desc="refine"):
                writer.write(image_id, labels[-1])
                if image_id in evaluated:
                    gt = voc.load_mask(image_id)
                    if gt.shape != labels[-1].shape:
                        raise ValueError(f"mask {voc.mask_path(image_id)} is {gt.shape}, the maps of '{image_id}' "
                                         f"in {maps.path} (and its image) are {labels[-1].shape}")
                    for a, label in zip(acc, labels):
                        add_scored(a, gt, label)   # saliency's 255 conflicts are not scored
    return {"split": voc.split, "eval_split": eval_voc.split, "images": len(voc), "eval_images": len(eval_voc),
            "steps": steps, "skipped": skipped, "confusion": [[n, a.matrix.tolist()] for n, a in zip(names, acc)]}
