"""ReCAM's extra training step (Chen et al., CVPR 2022): the trained classifier goes on for a few
epochs beside a new bias-free classifier W_new, trained with softmax cross-entropy on class-wise
pooled features.

For each image and each class k of its label, the pooled feature is the mean over pixels of the
CAM of k (relu(W_cls,k . F), divided by its maximum) times the feature map F; W_new maps it to
class scores, and the cross-entropy asks it to name k. The classifier's own multi-label soft-margin
loss continues; the two are added, the cross-entropy weighted by `loss_weight`. W_new trains at
`lr`, the backbone and W_cls at `lr_ratio` x `lr` (ReCAM: 0.0005 and 0.1). The ReCAM map is
relu((W_new * W_cls) . F) (pipeline/cams/extract.py, method `recam`).

The result is one checkpoint, the classifier with W_new as its `recam` layer, loadable with
torch.load(weights_only=True) like every classifier of the project. Crash safety is the shared
training loop's: the state after every epoch goes to `<out>.partial` and a rerun with the same
settings and the same input classifier resumes from it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pipeline.classifier.train import ClassificationData, classification_loss, evaluate_map
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import file_digest
from pipeline.core.training import fit
from pipeline.data.voc import VOCDataset
from pipeline.models.classifier import Classifier, load_classifier, save_checkpoint


def normalised_cams(features: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """relu(W . F) of every class, each divided by its own max (+ eps, as ReCAM): (B, K, h, w)."""
    cams = F.relu(torch.einsum("bchw,kc->bkhw", features, weight.flatten(1)))
    return cams / (cams.amax((2, 3), keepdim=True) + eps)


def class_pooled_features(features: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
    """features (B, C, h, w), cams (B, K, h, w) -> (B, K, C): per class k, the mean over pixels of
    cams[:, k] times the features."""
    h, w = features.shape[-2:]
    return torch.einsum("bkhw,bchw->bkc", cams, features) / (h * w)


def recam_loss(pooled: torch.Tensor, labels: torch.Tensor, weight_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ReCAM's softmax cross-entropy: for each image and each class k in its label, the scores
    W_new . pooled[k] over all classes, cross-entropy with target k, averaged over the image's
    classes; the images' losses summed and divided by the batch size (an image without classes
    adds nothing). Returns (loss, accuracy of W_new's argmax over the classes scored)."""
    scores = torch.einsum("bkc,jc->bkj", pooled, weight_new.flatten(1))   # (B, K, K): class k's feature -> scores
    present = labels > 0
    loss = scores.new_zeros(())
    correct, scored = 0, 0
    for b in range(pooled.shape[0]):
        classes = present[b].nonzero().flatten()
        if classes.numel() == 0:
            continue
        logits = scores[b, classes]
        loss = loss + F.cross_entropy(logits, classes)
        correct += int((logits.argmax(1) == classes).sum())
        scored += classes.numel()
    return loss / pooled.shape[0], torch.tensor(correct / max(scored, 1))


class ReCAMStep(nn.Module):
    """The classifier during ReCAM's step: W_new at the base lr, everything else at lr_ratio x."""

    def __init__(self, model: Classifier, lr_ratio: float):
        super().__init__()
        self.model, self.lr_ratio = model, lr_ratio

    def param_groups(self):
        rest = [p for name, p in self.model.named_parameters() if not name.startswith("recam.")]
        return [{"params": rest, "lr_mult": self.lr_ratio},
                {"params": list(self.model.recam.parameters()), "lr_mult": 1.0}]

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        features = self.model.features(x)
        loss_cls = classification_loss(self.model.classify(features), y)
        pooled = class_pooled_features(features, normalised_cams(features, self.model.classifier.weight))
        loss_ce, accuracy = recam_loss(pooled, y, self.model.recam.weight)
        return {"cls": loss_cls, "ce": loss_ce, "accuracy": accuracy}


def load_cnn_classifier(path) -> tuple[Classifier, dict]:
    model, meta = load_classifier(path)
    if not isinstance(model, Classifier):
        raise ValueError(f"{path} is a ViT classifier; ReCAM's step continues the CNN classifier "
                         "(results/{dataset}/classifier.pt)")
    if model.recam is not None:
        raise ValueError(f"{path} already holds a ReCAM classifier; give the classifier that train_classifier wrote")
    return model, meta


def train_recam(train_voc: VOCDataset, val_voc: VOCDataset, cfg: dict, classifier: str | Path, out: str | Path,
                device, seed: int = 0) -> dict:
    """ReCAM's step on the classifier checkpoint `classifier`; writes the classifier with W_new to `out`.
    cfg: config section `recam`."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    torch.manual_seed(seed)
    model, meta = load_cnn_classifier(classifier)
    classes = meta["classes"]
    if classes != train_voc.classes:
        raise ValueError(f"{classifier} was trained on classes {classes}, the dataset has {train_voc.classes}")
    model.add_recam()
    step = ReCAMStep(model, cfg["lr_ratio"])
    mean, std = meta["mean"], meta["std"]
    train_data = ClassificationData(train_voc, mean, std, cfg["crop_size"], cfg["scale_range"], seed)
    loader = DataLoader(train_data, batch_size=cfg["batch_size"], shuffle=True, drop_last=True,
                        num_workers=cfg["workers"], persistent_workers=False,
                        generator=torch.Generator().manual_seed(seed))
    settings = {"cfg": json.dumps(cfg, sort_keys=True), "classes": classes, "n_train": len(train_data),
                "seed": seed, "data": dataset_identity(train_voc), "classifier": file_digest(classifier)}
    tally: dict[str, list] = {"cls": [], "ce": [], "accuracy": []}

    def batch_loss(step_model: ReCAMStep, batch, dev) -> torch.Tensor:
        x, y = batch
        losses = step_model.losses(x.to(dev), y.to(dev))
        for key in tally:
            tally[key].append(float(losses[key].detach()))
        return losses["cls"] + cfg["loss_weight"] * losses["ce"]

    parts: list[dict] = []   # per epoch run in this process: the mean of each loss and W_new's accuracy
    current = {"epoch": 0}

    def close_epoch() -> None:
        if tally["cls"]:
            parts.append({"epoch": current["epoch"] + 1, **{key: float(np.mean(v)) for key, v in tally.items()}})
            print("recam epoch {epoch}: soft-margin {cls:.4f}, cross-entropy {ce:.4f}, "
                  "W_new accuracy {accuracy:.3f}".format(**parts[-1]))
        for values in tally.values():
            values.clear()

    def new_epoch(epoch: int) -> None:
        close_epoch()
        current["epoch"] = train_data.epoch = epoch

    fit_cfg = {**cfg, "optimizer": "sgd"}   # ReCAM's optimizer: SGD with a poly schedule
    history = fit(step, loader, batch_loss, fit_cfg, partial, settings, device, "recam", on_epoch=new_epoch, seed=seed)
    close_epoch()

    val_data = ClassificationData(val_voc, mean, std, None, None, seed)
    result = evaluate_map(model.to(device), val_data, device)
    model.cpu()
    tmp = out.with_name(out.name + ".tmp")
    save_checkpoint(model, tmp, classes=classes, mean=list(mean), std=list(std), val_map=result["map"],
                    recam_settings=cfg)
    os.replace(tmp, out)
    partial.unlink(missing_ok=True)
    return {"val_map": result["map"], "val_split": val_voc.split, "classifier_val_map": meta.get("val_map"),
            "ap_per_class": dict(zip(classes[1:], result["ap_per_class"])), "history": history, "parts": parts}
