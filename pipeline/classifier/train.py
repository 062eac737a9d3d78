"""Train the multi-label classifier whose activations become the CAMs.

Crash safety: after every epoch the full training state goes to `<out>.partial`; a rerun
with the same settings resumes from it. A NaN/inf loss stops training with an error and
leaves that last good checkpoint in place.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipeline.core.precision import autocast, pin_memory, to_device
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import drop_when_done
from pipeline.core.training import TrainingDiverged, fit  # noqa: F401  (TrainingDiverged: part of this module's API)
from pipeline.data.transforms import random_scale_flip_crop, to_tensor
from pipeline.data.voc import VOCDataset
from pipeline.maps.metrics import mean_average_precision
from pipeline.models.backbone import normalisation
from pipeline.models.classifier import build_classifier, save_checkpoint


class ClassificationData(Dataset):
    def __init__(self, voc: VOCDataset, mean, std, crop: int | None, scale_range, seed: int):
        self.voc, self.mean, self.std = voc, mean, std
        self.crop, self.scale_range, self.seed = crop, scale_range, seed
        self.labels = np.stack([voc.label_vector(i) for i in voc.ids])
        self.fill = tuple(int(round(255 * m)) for m in mean)  # pads normalise to zero
        self.epoch = 0

    def __len__(self):
        return len(self.voc)

    def __getitem__(self, idx):
        image = self.voc.load_image(self.voc.ids[idx])
        if self.crop:
            rng = np.random.default_rng([self.seed, self.epoch, idx])
            image = random_scale_flip_crop(image, rng, self.scale_range, self.crop, self.fill)
        return to_tensor(image, self.mean, self.std), torch.from_numpy(self.labels[idx])


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.multilabel_soft_margin_loss(logits, targets)


@torch.no_grad()
def evaluate_map(model: torch.nn.Module, data: ClassificationData, device, desc="val mAP") -> dict:
    """Scores on whole images (one at a time: sizes differ) -> mAP over classes with positives."""
    model.eval()
    scores = []
    for idx in tqdm(range(len(data)), desc=desc, leave=False):
        x, _ = data[idx]
        with autocast(device):
            logits = model(to_device(x[None], device))
        scores.append(torch.sigmoid(logits.float()).cpu().numpy()[0])
    mAP, per_class = mean_average_precision(np.stack(scores), data.labels)
    return {"map": mAP, "ap_per_class": per_class}


def _batch_loss(model, batch, device) -> torch.Tensor:
    """The multi-label loss of the model's score; for a model with several predictions
    (`predictions`: the class-token ViT's class tokens, coarse CAM, fine CAM), their sum."""
    x, y = batch
    x, y = to_device(x, device), to_device(y, device)
    if hasattr(model, "predictions"):
        return sum(classification_loss(p.float(), y) for p in model.predictions(x))
    return classification_loss(model(x).float(), y)


def train(train_voc: VOCDataset, val_voc: VOCDataset, cfg: dict, out: str | Path, device,
          seed: int = 0) -> dict:
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    torch.manual_seed(seed)
    mean, std = normalisation(cfg["backbone"])
    classes = train_voc.classes
    model = build_classifier(cfg, len(classes) - 1, cfg["weights"])
    train_data = ClassificationData(train_voc, mean, std, cfg["crop_size"], cfg["scale_range"], seed)
    loader = DataLoader(train_data, batch_size=cfg["batch_size"], shuffle=True, drop_last=True,
                        num_workers=cfg["workers"], persistent_workers=False, pin_memory=pin_memory(device),
                        generator=torch.Generator().manual_seed(seed))
    settings = {"cfg": json.dumps(cfg, sort_keys=True), "classes": classes, "n_train": len(train_data),
                "seed": seed, "data": dataset_identity(train_voc)}
    section = "classifier" if cfg.get("kind", "cnn") == "cnn" else \
        "mct_classifier" if cfg.get("class_tokens") == "per_class" else "vit_classifier"
    history = fit(model, loader, _batch_loss, cfg, partial, settings, device, section,
                  on_epoch=lambda epoch: setattr(train_data, "epoch", epoch), seed=seed)

    val_data = ClassificationData(val_voc, mean, std, None, None, seed)
    result = evaluate_map(model.to(device), val_data, device)
    model.cpu()
    tmp = out.with_name(out.name + ".tmp")
    save_checkpoint(model, tmp, classes=classes, mean=list(mean), std=list(std), val_map=result["map"])
    os.replace(tmp, out)
    drop_when_done(partial)   # kept until the stage ends well: a kill before then resumes from it
    return {"val_map": result["map"], "val_split": val_voc.split,
            "ap_per_class": dict(zip(classes[1:], result["ap_per_class"])), "history": history}
