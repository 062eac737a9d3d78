"""Train AffinityNet on the confident affinity labels (pipeline.affinity.labels).

Loss (AffinityNet): over the labelled pixel pairs within `radius` on the feature grid,
    L = L_bg_pos / 4 + L_fg_pos / 4 + L_neg / 2,
L_pos = mean of -log(a_ij) over the positive pairs of that kind, L_neg = mean of -log(1 - a_ij);
a kind without pairs in the batch contributes 0.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipeline.affinity.labels import label_grid, pair_classes
from pipeline.affinity.random_walk import half_offsets, overlap, pair_affinity
from pipeline.core.precision import pin_memory, to_device
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import ArtifactReader, drop_when_done
from pipeline.core.training import fit
from pipeline.data.labelled_crops import LabelledCrops
from pipeline.data.voc import VOCDataset
from pipeline.models.affinity_net import AffinityNet, save_affinity_net
from pipeline.models.backbone import normalisation

EPS = 1e-5


class AffinityData(LabelledCrops):
    """Augmented crops and their affinity labels pooled onto the feature grid (uint8, 255 = ignore)."""

    def __init__(self, voc: VOCDataset, labels: ArtifactReader, mean, std, crop: int, scale_range,
                 stride: int, seed: int):
        missing = [i for i in voc.ids if i not in labels]
        if missing:
            raise KeyError(f"{labels.path} has no affinity label for {len(missing)} images of split "
                           f"'{voc.split}', e.g. '{missing[0]}'")
        super().__init__(voc, labels.__getitem__, mean, std, crop, scale_range, seed)
        self.stride = stride

    def __getitem__(self, idx):
        x, label = super().__getitem__(idx)
        return x, torch.from_numpy(np.ascontiguousarray(label_grid(label.numpy(), self.stride)))


def pair_terms(features: torch.Tensor, labels: torch.Tensor, radius: int):
    """Affinities and pair classes of every labelled pair within radius, each pair once:
    (a, bg_pos, fg_pos, neg), flat tensors over batch, offsets and positions."""
    h, w = labels.shape[-2:]
    parts = []
    for dy, dx in half_offsets(radius):
        src, dst = overlap(h, w, dy, dx)
        a = pair_affinity(features[..., src[0], src[1]], features[..., dst[0], dst[1]])
        parts.append((a.flatten(), *(m.flatten() for m in pair_classes(labels[..., src[0], src[1]],
                                                                         labels[..., dst[0], dst[1]]))))
    return [torch.cat(column) for column in zip(*parts)]


def affinity_loss(features: torch.Tensor, labels: torch.Tensor, radius: int) -> torch.Tensor:
    a, bg_pos, fg_pos, neg = pair_terms(features, labels, radius)

    def mean_over(mask, values):
        return values[mask].sum() / mask.sum() if mask.any() else values.sum() * 0.0

    pos_loss = -torch.log(a + EPS)
    neg_loss = -torch.log(1.0 + EPS - a)
    return mean_over(bg_pos, pos_loss) / 4 + mean_over(fg_pos, pos_loss) / 4 + mean_over(neg, neg_loss) / 2


def train(voc: VOCDataset, labels: ArtifactReader, cfg: dict, out: str | Path, device, seed: int = 0) -> dict:
    """Train AffinityNet on the affinity labels (psa's train_aff)."""
    torch.manual_seed(seed)
    model = AffinityNet(cfg["backbone"], cfg["levels"], cfg["dims"], cfg["stride"], cfg["output_stride"],
                        cfg["weights"])
    return fit_on_labels(model, affinity_loss, save_affinity_net, "affinity", voc, labels, cfg, out, device, seed)


def fit_on_labels(model, loss, save, name: str, voc: VOCDataset, labels: ArtifactReader, cfg: dict,
                  out: str | Path, device, seed: int) -> dict:
    """Train a pair-affinity network (AffinityNet, IRN's boundary network) on a split's label
    artifact: AffinityData's crops, loss(network output, label grid, radius), the shared loop
    (resumable from out's `.partial`), the checkpoint written by save and renamed into place."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    mean, std = normalisation(cfg["backbone"])
    data = AffinityData(voc, labels, mean, std, cfg["crop_size"], cfg["scale_range"], cfg["stride"], seed)
    loader = DataLoader(data, batch_size=cfg["batch_size"], shuffle=True, drop_last=True,
                        num_workers=cfg["workers"], pin_memory=pin_memory(device), generator=torch.Generator().manual_seed(seed))

    def batch_loss(model, batch, device):
        x, grid = batch
        # float32 output: in bf16, 1 + EPS - a rounds to 1 - a and log(0) is -inf
        return loss(model(to_device(x, device)).float(), to_device(grid, device), cfg["radius"])

    settings = {"cfg": json.dumps(cfg, sort_keys=True), "n_train": len(data), "seed": seed,
                "data": dataset_identity(voc), "labels": labels.digest}
    history = fit(model, loader, batch_loss, cfg, partial, settings, device, name,
                  on_epoch=lambda epoch: setattr(data, "epoch", epoch), seed=seed)
    model.cpu()
    tmp = out.with_name(out.name + ".tmp")
    save(model, tmp, mean=list(mean), std=list(std), radius=cfg["radius"])
    os.replace(tmp, out)
    drop_when_done(partial)   # kept until the stage ends well: a kill before then resumes from it
    return {"split": voc.split, "images": len(data), "history": history}
