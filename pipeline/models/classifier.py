"""Multi-label classifier: timm backbone -> feature map -> global pooling -> 1x1 conv.

The 1x1 classifier has no bias, so CAM_c = relu(W_c . F) is exactly the evidence the
pooled logit sums up.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .backbone import Backbone
from .checkpoint import CheckpointError, read_checkpoint

def thresholded_average_pool(features: torch.Tensor, ratio: float = 0.1) -> torch.Tensor:
    """TAP: per channel, the mean over the pixels above ratio x the channel's max.

    Background pixels with weak activation no longer dilute the pooled score, which lets the
    CAM grow beyond the single most discriminative spot.
    """
    tau = ratio * features.amax((2, 3), keepdim=True)
    above = (features > tau).to(features.dtype)
    return (features * above).sum((2, 3)) / above.sum((2, 3)).clamp(min=1.0)


class Classifier(nn.Module):
    def __init__(self, backbone: str, num_classes: int, pooling: str = "gap", output_stride: int = 16,
                 weights: str = "none", feature_level: int | str = "last", recam: bool = False):
        super().__init__()
        if pooling not in ("gap", "tap"):
            raise ValueError(f"pooling '{pooling}' is unknown; expected 'gap' or 'tap'")
        self.pooling = pooling
        self.backbone = Backbone(backbone, weights, output_stride, feature_level)
        self.classifier = nn.Conv2d(self.backbone.channels, num_classes, 1, bias=False)
        nn.init.kaiming_normal_(self.classifier.weight)
        self.meta = {"backbone": backbone, "num_classes": num_classes, "pooling": pooling,
                     "output_stride": output_stride, "feature_level": feature_level}
        # ReCAM's bias-free classifier W_new on class-wise pooled features (pipeline/classifier/recam.py)
        self.recam = None
        if recam:
            self.add_recam()

    def add_recam(self) -> None:
        """Give the classifier ReCAM's W_new (one row per class, as W_cls), initialised as
        torch's default 1x1 convolution."""
        self.recam = nn.Conv2d(self.backbone.channels, self.meta["num_classes"], 1, bias=False)
        self.meta["recam"] = True

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def features_and_levels(self, x: torch.Tensor, levels) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.backbone.with_levels(x, levels)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        if self.pooling == "tap":
            return thresholded_average_pool(features)
        return features.mean((2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(features)[:, :, None, None]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))

    def param_groups(self):
        """Backbone at the base lr, the new classifier at 10x (as in the AffinityNet/IRN recipes)."""
        return [{"params": list(self.backbone.parameters()), "lr_mult": 1.0},
                {"params": list(self.classifier.parameters()), "lr_mult": 10.0}]


def save_checkpoint(model: Classifier, path, **extra_meta) -> None:
    torch.save({"state_dict": model.state_dict(), "meta": {**model.meta, **extra_meta}}, path)


def build_classifier(cfg: dict, num_classes: int, weights: str = "none") -> nn.Module:
    """The CNN classifier, or for the ViT methods the ViT-hybrid or a plain timm ViT (cfg['kind'])."""
    kind = cfg.get("kind", "cnn")
    if cfg.get("class_tokens", "one") == "per_class":
        return build_class_token_vit(cfg, num_classes, weights)
    if kind == "vit_hybrid":
        from .vit_hybrid import ViTHybridClassifier
        return ViTHybridClassifier(cfg["backbone"], num_classes, cfg["embed_dim"], cfg["depth"], cfg["heads"],
                                   cfg["start_block"], cfg["output_stride"], weights, cfg["feature_level"])
    if kind == "vit":
        from .vit_plain import PlainViTClassifier
        return PlainViTClassifier(cfg["backbone"], num_classes, cfg["start_block"], weights)
    return Classifier(cfg["backbone"], num_classes, cfg["pooling"], cfg["output_stride"], weights,
                      cfg["feature_level"], cfg.get("recam", False))


def build_class_token_vit(cfg: dict, num_classes: int, weights: str = "none") -> nn.Module:
    """The ViT with one class token per class (MCTformer, WeakTr) on the hybrid or a timm ViT."""
    from .vit_mct import HybridClassTokenViT, PlainClassTokenViT
    kind = cfg.get("kind")
    if kind == "vit_hybrid":
        return HybridClassTokenViT(cfg["backbone"], num_classes, cfg["embed_dim"], cfg["depth"], cfg["heads"],
                                   cfg["output_stride"], weights, cfg["feature_level"],
                                   reduction=cfg["aaf_reduction"], feat_reduction=cfg["aaf_feat_reduction"],
                                   start_block=cfg["start_block"])
    if kind == "vit":
        return PlainClassTokenViT(cfg["backbone"], num_classes, weights, cfg["aaf_reduction"],
                                  cfg["aaf_feat_reduction"], cfg["start_block"])
    raise ValueError(f"class_tokens 'per_class' needs kind 'vit_hybrid' or 'vit', not '{kind}'")


def load_classifier(path, expected_backbone: str | None = None) -> tuple[nn.Module, dict]:
    ckpt = read_checkpoint(path, "classifier")
    meta = ckpt["meta"]
    # the other networks' checkpoints share the layout: tell them apart by their metadata
    if meta.get("kind") == "segmentation" or "levels" in meta or "num_classes" not in meta:
        found = "a segmentation network" if meta.get("kind") == "segmentation" else \
            "an AffinityNet" if "levels" in meta else "no classes"
        raise CheckpointError(f"{path} is not a classifier checkpoint of this project (its metadata describes "
                         f"{found}); give the .pt that train_classifier wrote")
    if expected_backbone and meta["backbone"] != expected_backbone:
        raise CheckpointError(f"{path} was trained with backbone '{meta['backbone']}', but config asks for "
                         f"'{expected_backbone}'; retrain the classifier or fix classifier.backbone")
    model = build_classifier(meta, meta["num_classes"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the model its metadata describes ({str(exc).splitlines()[0]}); "
                         "it was written by another version of this project: retrain the classifier") from exc
    return model, meta
