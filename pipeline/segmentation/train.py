"""Train the segmentation network on pseudo-labels, or on the ground truth for the fully-supervised
reference (the same network and schedule, so that the weak / full ratio compares labels only).

Loss: cross-entropy with 255 ignored, or WeakTr's clipped loss (`loss: clipped`); with scale
attention, the fused map's loss plus one per scale (Attention to Scale's extra supervision).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pipeline.core.precision import pin_memory, to_device
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import ArtifactReader, drop_when_done
from pipeline.core.training import fit
from pipeline.data.labelled_crops import LabelledCrops
from pipeline.data.voc import VOCDataset
from pipeline.models.backbone import normalisation
from pipeline.models.segnet import build_segnet, save_segnet
from pipeline.segmentation.loss import IGNORE, clipped_cross_entropy


def pixel_loss(logits: torch.Tensor, target: torch.Tensor, cfg: dict) -> torch.Tensor:
    if cfg["loss"] == "clipped":
        return clipped_cross_entropy(logits, target, cfg["clip_start"], cfg["clip_window"])
    if not (target != IGNORE).any():   # a crop with no labelled pixel: mean over none would be NaN
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target.long(), ignore_index=IGNORE)


def segmentation_loss(model, x: torch.Tensor, target: torch.Tensor, cfg: dict) -> torch.Tensor:
    fused, per_scale = model.scored(x)   # float32 logits into the loss, whatever the forward's precision
    return pixel_loss(fused.float(), target, cfg) + sum(pixel_loss(s.float(), target, cfg) for s in per_scale)


def require_labelled_pixels(voc: VOCDataset, label_of: Callable[[str], np.ndarray], source: str) -> None:
    """Stop before training when every pixel of every label map is 255 (ignored): the loss would
    have nothing to learn from (cross-entropy turns NaN, the clipped loss trains on nothing)."""
    for image_id in voc.ids:
        if np.any(label_of(image_id) != IGNORE):
            return
    raise ValueError(f"the labels of split '{voc.split}' from {source} have no labelled pixel (all "
                     f"{len(voc)} maps are 255 = ignore): nothing to train the segmentation network on; "
                     "check the refine settings that produced them")


def train(voc: VOCDataset, label_of: Callable[[str], np.ndarray], labels_file: str | None, cfg: dict,
          out: str | Path, device, seed: int = 0) -> dict:
    """`labels_file`: the pseudo-label file behind label_of, or None for the ground truth. Its
    digest (or the masks' files) is part of the resume key, so a partial run on other labels is
    not resumed. Labels without a single labelled pixel are an error: nothing could be learnt."""
    labels_name = labels_file or "ground truth"
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    torch.manual_seed(seed)
    mean, std = normalisation(cfg["backbone"])
    model = build_segnet(cfg, len(voc.classes))
    data = LabelledCrops(voc, label_of, mean, std, cfg["crop_size"], cfg["scale_range"], seed)
    loader = DataLoader(data, batch_size=cfg["batch_size"], shuffle=True, drop_last=True,
                        num_workers=cfg["workers"], pin_memory=pin_memory(device), generator=torch.Generator().manual_seed(seed))

    def batch_loss(model, batch, device):
        x, target = batch
        return segmentation_loss(model, to_device(x, device), to_device(target, device), cfg)

    require_labelled_pixels(voc, label_of, labels_name)
    settings = {"cfg": json.dumps(cfg, sort_keys=True), "n_train": len(data), "seed": seed,
                "data": dataset_identity(voc, masks=labels_file is None),
                "labels": ArtifactReader(labels_file).digest if labels_file else labels_name}
    history = fit(model, loader, batch_loss, cfg, partial, settings, device, "segmentation",
                  on_epoch=lambda epoch: setattr(data, "epoch", epoch), seed=seed)
    model.cpu()
    tmp = out.with_name(out.name + ".tmp")
    save_segnet(model, tmp, classes=voc.classes, mean=list(mean), std=list(std), labels=labels_name)
    os.replace(tmp, out)
    drop_when_done(partial)   # kept until the stage ends well: a kill before then resumes from it
    return {"split": voc.split, "images": len(data), "labels": labels_name, "history": history}
