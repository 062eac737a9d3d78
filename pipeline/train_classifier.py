"""Train the multi-label classifier whose activations become the CAMs.

Crash safety: after every epoch the full training state goes to `<out>.partial`; a rerun
with the same settings resumes from it. A NaN/inf loss stops training with an error and
leaves that last good checkpoint in place.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data.transforms import random_scale_flip_crop, to_tensor
from .data.voc import VOCDataset
from .metrics import mean_average_precision
from .models.classifier import build_classifier, normalisation, save_checkpoint


class TrainingDiverged(RuntimeError):
    pass


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


def poly_lr(base: float, it: int, max_it: int, power: float) -> float:
    return base * (1 - it / max_it) ** power


def make_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    groups = [{**g, "lr": cfg["lr"] * g["lr_mult"]} for g in model.param_groups()]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    return torch.optim.AdamW(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])


@torch.no_grad()
def evaluate_map(model: torch.nn.Module, data: ClassificationData, device, desc="val mAP") -> dict:
    """Scores on whole images (one at a time: sizes differ) -> mAP over classes with positives."""
    model.eval()
    scores = []
    for idx in tqdm(range(len(data)), desc=desc, leave=False):
        x, _ = data[idx]
        scores.append(torch.sigmoid(model(x[None].to(device))).cpu().numpy()[0])
    mAP, per_class = mean_average_precision(np.stack(scores), data.labels)
    return {"map": mAP, "ap_per_class": per_class}


def _resume_state(partial: Path, settings: dict):
    if not partial.exists():
        return None
    state = torch.load(partial, map_location="cpu", weights_only=True)
    if state.get("settings") != settings:
        warnings.warn(f"{partial} was written with other settings; training starts over")
        return None
    return state


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
                        num_workers=cfg["workers"], persistent_workers=False,
                        generator=torch.Generator().manual_seed(seed))
    if len(loader) == 0:
        raise ValueError(f"split '{train_voc.split}' has {len(train_data)} images, fewer than "
                         f"classifier.batch_size = {cfg['batch_size']}")
    optimizer = make_optimizer(model, cfg)
    settings = {"cfg": json.dumps(cfg, sort_keys=True), "classes": classes, "n_train": len(train_data)}
    history, start_epoch = [], 0
    state = _resume_state(partial, settings)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, start_epoch = json.loads(state["history"]), state["epoch"]
        print(f"resuming classifier training from {partial} after epoch {start_epoch}")
    model.to(device)

    max_it = cfg["epochs"] * len(loader)
    for epoch in range(start_epoch, cfg["epochs"]):
        model.train()
        train_data.epoch = epoch
        losses = []
        bar = tqdm(loader, desc=f"classifier epoch {epoch + 1}/{cfg['epochs']}")
        for step, (x, y) in enumerate(bar):
            it = epoch * len(loader) + step
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(cfg["lr"], it, max_it, cfg["poly_power"]) * group["lr_mult"]
            loss = classification_loss(model(x.to(device)), y.to(device))
            if not math.isfinite(loss.item()):
                kept = f"the last good checkpoint (after epoch {epoch}) is kept at {partial}" if partial.exists() \
                    else "no epoch had completed, so no checkpoint was kept"
                raise TrainingDiverged(f"classifier loss became {loss.item()} at epoch {epoch + 1}, iteration "
                                       f"{step + 1}; lower classifier.lr (now {cfg['lr']}). {kept}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses))})
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                    "history": json.dumps(history), "settings": settings}, partial)

    val_data = ClassificationData(val_voc, mean, std, None, None, seed)
    result = evaluate_map(model.to(device), val_data, device)
    model.cpu()
    tmp = out.with_name(out.name + ".tmp")
    save_checkpoint(model, tmp, classes=classes, mean=list(mean), std=list(std), val_map=result["map"])
    os.replace(tmp, out)
    partial.unlink(missing_ok=True)
    return {"val_map": result["map"], "val_split": val_voc.split,
            "ap_per_class": dict(zip(classes[1:], result["ap_per_class"])), "history": history}
