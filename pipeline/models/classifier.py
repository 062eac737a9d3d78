"""Multi-label classifier: timm backbone -> feature map -> global pooling -> 1x1 conv.

The 1x1 classifier has no bias, so CAM_c = relu(W_c . F) is exactly the evidence the
pooled logit sums up.
"""
from __future__ import annotations

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from .weights import load_backbone_weights

BACKBONE_NORM = {"tf_efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


def normalisation(backbone: str) -> tuple[tuple, tuple]:
    if backbone in BACKBONE_NORM:
        return BACKBONE_NORM[backbone]
    cfg = timm.create_model(backbone, pretrained=False).pretrained_cfg
    return tuple(cfg["mean"]), tuple(cfg["std"])


class Classifier(nn.Module):
    def __init__(self, backbone: str, num_classes: int, pooling: str = "gap", output_stride: int = 16,
                 weights: str = "none"):
        super().__init__()
        if pooling != "gap":
            raise ValueError(f"pooling '{pooling}' is not built; expected 'gap'")
        self.backbone = timm.create_model(backbone, pretrained=weights == "timm", num_classes=0,
                                          global_pool="", output_stride=output_stride)
        load_backbone_weights(self.backbone, backbone, weights)
        self.classifier = nn.Conv2d(self.backbone.num_features, num_classes, 1, bias=False)
        nn.init.kaiming_normal_(self.classifier.weight)
        self.meta = {"backbone": backbone, "num_classes": num_classes, "pooling": pooling,
                     "output_stride": output_stride}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(pooled).flatten(1)

    def param_groups(self):
        """Backbone at the base lr, the new classifier at 10x (as in the AffinityNet/IRN recipes)."""
        return [{"params": list(self.backbone.parameters()), "lr_mult": 1.0},
                {"params": list(self.classifier.parameters()), "lr_mult": 10.0}]


def save_checkpoint(model: Classifier, path, **extra_meta) -> None:
    torch.save({"state_dict": model.state_dict(), "meta": {**model.meta, **extra_meta}}, path)


def load_classifier(path, expected_backbone: str | None = None) -> tuple[Classifier, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "meta" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a classifier checkpoint of this project (no 'meta'/'state_dict')")
    meta = ckpt["meta"]
    if expected_backbone and meta["backbone"] != expected_backbone:
        raise ValueError(f"{path} was trained with backbone '{meta['backbone']}', but config asks for "
                         f"'{expected_backbone}'; retrain the classifier or fix classifier.backbone")
    model = Classifier(meta["backbone"], meta["num_classes"], meta["pooling"], meta["output_stride"])
    model.load_state_dict(ckpt["state_dict"])
    return model, meta
