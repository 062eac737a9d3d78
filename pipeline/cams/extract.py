"""Class activation maps, multi-scale + flip, per-class max-normalised.

CAM = relu(W_c . F); CAM-NWC clamps negative classifier weights; ReCAM's map is
relu((W_new * W_c) . F) with W_new from ReCAM's training step; Grad-CAM, Grad-CAM++ and
LayerCAM weight the activations by gradients of the class score; Fully-CAM fuses LayerCAMs of
several layers. Every class of the image gets its map from the same forward pass per scale.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipeline.cams.multiscale import scale_sum
from pipeline.cams.vit import vit_multiscale_cam, vit_protocol
from pipeline.core.cam_methods import CNN_METHODS, VIT_METHODS
from pipeline.core.precision import full_precision, prepare_model
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import ArtifactWriter, file_digest
from pipeline.data.check import check_size
from pipeline.data.voc import VOCDataset
from pipeline.models.classifier import Classifier


def class_activation(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """features (B, C, h, w), weight (K, C) -> relu(W . F) of shape (B, K, h, w)."""
    return F.relu(torch.einsum("bchw,kc->bkhw", features, weight))


# Gradient maps: A = activations (B, C, h, w), G = d score / d A of the same shape -> (B, h, w).
def gradcam_map(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    weights = G.mean((2, 3), keepdim=True)
    return F.relu((weights * A).sum(1))


def gradcampp_map(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    g2, g3 = G.pow(2), G.pow(3)
    denom = 2 * g2 + A.sum((2, 3), keepdim=True) * g3
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)),
                        torch.zeros_like(denom))
    weights = (F.relu(G) * alpha).sum((2, 3), keepdim=True)
    return F.relu((weights * A).sum(1))


def layercam_map(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    return F.relu((F.relu(G) * A).sum(1))


def recam_weight(model) -> torch.Tensor:
    """ReCAM's map weights W_new * W_cls (K, C, 1, 1): the classifier's weights scaled elementwise
    by those of the bias-free classifier that ReCAM's step trained (pipeline/classifier/recam.py)."""
    recam = getattr(model, "recam", None)
    if recam is None:
        raise ValueError("CAM method 'recam' needs the classifier that rule train_recam writes "
                         "(results/{dataset}/classifier_recam.pt); this checkpoint has no ReCAM classifier")
    return recam.weight * model.classifier.weight


# The CNN methods of the registry (pipeline/core/cam_methods.py), each by how it makes its maps:
# from weights of the model (the weights used, (K, C, 1, 1)), or from gradients (the map of A and G).
WEIGHT_MAPS = {"cam": lambda model: model.classifier.weight,
               "cam_nwc": lambda model: model.classifier.weight.clamp(min=0),  # NWC: negative evidence no longer cancels the object
               "recam": recam_weight}
GRADIENT_MAPS = {"gradcam": gradcam_map, "gradcampp": gradcampp_map, "layercam": layercam_map,
                 "fullycam": layercam_map}


def _activation_maps(model: Classifier, x: torch.Tensor, class_ids, method: str, levels) -> list[torch.Tensor]:
    """Per layer, maps of shape (B, K, h, w) for the K classes, from one forward pass."""
    rows = torch.as_tensor(class_ids) - 1
    if method in WEIGHT_MAPS:
        with torch.no_grad():
            weight = WEIGHT_MAPS[method](model)[rows].flatten(1)
            features = model.features(x)
            with full_precision(x.device):
                return [class_activation(features.float(), weight.float())]
    with torch.enable_grad():
        features, earlier = model.features_and_levels(x, levels if method == "fullycam" else ())
        layers = [features, *earlier]
        logits = model.classify(features)
        per_layer = [[] for _ in layers]
        for k, row in enumerate(rows.tolist()):
            # summing over the batch (the flipped copy) keeps each image's own gradient
            grads = torch.autograd.grad(logits[:, row].sum(), layers, retain_graph=k < len(rows) - 1)
            for store, A, G in zip(per_layer, layers, grads):
                store.append(GRADIENT_MAPS[method](A.detach().float(), G.float()))
    return [torch.stack(maps, 1) for maps in per_layer]


def multiscale_cam(model: Classifier, image: np.ndarray, class_ids: np.ndarray, scales, flip: bool,
                   mean, std, device, method: str = "cam", levels=()) -> np.ndarray:
    """Sum of the maps over scales (and flips), upsampled to the image, each class / its max.

    class_ids are dataset ids (1..C); the classifier's row for id c is c - 1. For fullycam the
    LayerCAMs of the feature layer and of `levels` are each scaled to max 1 and added, so a
    shallow layer's small activations still count.
    Returns float32 (K, H, W) with values in [0, 1].
    """
    if method not in CNN_METHODS:
        raise ValueError(f"CAM method '{method}' is unknown; expected one of {CNN_METHODS}")
    layer_maps = lambda x: _activation_maps(model, x, class_ids, method, levels)  # noqa: E731
    return scale_sum(image, len(class_ids), scales, flip, mean, std, device, layer_maps,
                     unit_layers=method == "fullycam")


def class_maps(model, meta: dict, image: np.ndarray, class_ids: np.ndarray, method: str, scales, flip: bool,
               device, levels=(), protocol: str = "project") -> np.ndarray:
    """The maps of any method (CNN or ViT) for the image's classes: float32 (K, H, W) in [0, 1].
    A ViT method runs with its published protocol when `protocol` is "published" (scales and flip
    then ignored; pipeline.cams.vit.VIT_PROTOCOLS)."""
    if method in VIT_METHODS:
        run = vit_protocol(method, protocol, scales, flip)
        return vit_multiscale_cam(model, image, class_ids, run["scales"], run["flip"], meta["mean"], meta["std"],
                                  device, method, align_corners=run["align_corners"])
    return multiscale_cam(model, image, class_ids, scales, flip, meta["mean"], meta["std"], device, method, levels)


def _as_is(sample):
    return sample  # keep numpy arrays (the default collate would turn them into tensors)


class _Images(Dataset):
    def __init__(self, voc: VOCDataset, ids):
        self.voc, self.ids = voc, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        image_id = self.ids[i]
        return image_id, self.voc.load_image(image_id), self.voc.image_labels(image_id)


def extract(model: Classifier, meta: dict, voc: VOCDataset, out: str | Path, scales, flip: bool,
            device, method: str = "cam", levels=(), workers: int = 1, *, classifier: str,
            max_side: int | None = None, protocol: str = "project") -> dict:
    """Write one float16 (K, H, W) map per image with attribute `classes` (a ViT method with the
    given `protocol`, pipeline.cams.vit.vit_protocol); resumes from NAME.partial
    if it was computed from the same images and the same `classifier` checkpoint (its hash).
    An image whose longer side exceeds `max_side` stops it before any work (its header is read,
    not the image). Returns the tally (pipeline.core.shards): images, those computed now and their seconds."""
    if max_side is not None:
        for image_id in voc.ids:
            check_size(voc.image_path(image_id), max_side)
    prepare_model(model.eval(), device)
    params = {"method": method, "levels": list(levels), "scales": list(scales), "flip": flip,
              "classes": voc.classes}
    if method in VIT_METHODS:   # the protocol the maps were made with
        params.update(vit_protocol(method, protocol, scales, flip), protocol=protocol, levels=[])
    seconds = 0.0
    provenance = {"data": dataset_identity(voc), "classifier": file_digest(classifier)}
    with ArtifactWriter(out, meta=params, provenance=provenance) as writer:
        done = writer.done_keys()
        todo = [i for i in voc.ids if i not in done]
        loader = DataLoader(_Images(voc, todo), batch_size=None, num_workers=workers,
                            collate_fn=_as_is)
        for image_id, image, class_ids in tqdm(loader, desc=f"{method} maps", total=len(todo)):
            start = time.perf_counter()
            maps = class_maps(model, meta, image, class_ids, method, scales, flip, device, levels, protocol)
            seconds += time.perf_counter() - start
            writer.write(image_id, maps, classes=np.asarray(class_ids, np.int64))
    return {"images": len(voc), "computed_now": len(todo), "seconds": seconds}
