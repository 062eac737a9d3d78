"""The CNN trunk shared by every classifier: a timm model with its weights, cut at a feature level."""
from __future__ import annotations

import timm
import torch
import torch.nn as nn

from .weights import load_backbone_weights


def normalisation(backbone: str) -> tuple[tuple, tuple]:
    """The input mean and std of a timm backbone, from its registered pretrained config (no model
    is built). EfficientNet-Lite0's are 0.5 / 0.5, the TF-Lite convention the offline weights expect."""
    cfg = timm.models.get_pretrained_cfg(backbone)
    if cfg is None:
        raise ValueError(f"timm has no pretrained config for backbone '{backbone}'")
    return tuple(cfg.mean), tuple(cfg.std)


class Backbone(nn.Module):
    """feature_level 'last' keeps the whole trunk (head conv included); an integer keeps the
    timm feature levels up to it. An earlier level has a smaller receptive field, so maps made
    from it stay near the evidence on images that are small against the network (the demo)."""

    def __init__(self, name: str, weights: str = "none", output_stride: int = 16,
                 feature_level: int | str = "last"):
        super().__init__()
        self.model = timm.create_model(name, pretrained=weights == "timm", num_classes=0, global_pool="",
                                       output_stride=output_stride)
        load_backbone_weights(self.model, name, weights)
        self.feature_level = feature_level
        if feature_level == "last":
            self.channels = self.model.num_features
            return
        levels = len(self.model.feature_info)
        if not 0 <= feature_level < levels:
            raise ValueError(f"feature_level {feature_level} out of range for '{name}' "
                             f"(levels 0..{levels - 1} or 'last')")
        self.channels = self.model.feature_info[feature_level]["num_chs"]
        self.model.prune_intermediate_layers(indices=[feature_level], prune_head=True, prune_norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature_level == "last":
            return self.model.forward_features(x)
        return self.model.forward_intermediates(x, indices=[self.feature_level], intermediates_only=True)[-1]

    def with_levels(self, x: torch.Tensor, levels) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The features and the outputs of earlier feature levels, from one forward pass."""
        levels = list(levels)
        if not levels:
            return self(x), []
        if self.feature_level == "last":
            return self.model.forward_intermediates(x, indices=levels)
        if max(levels) > self.feature_level:
            raise ValueError(f"levels {levels} lie beyond the classifier's feature_level {self.feature_level}")
        wanted = sorted(set(levels) | {self.feature_level})
        outs = dict(zip(wanted, self.model.forward_intermediates(x, indices=wanted, intermediates_only=True)))
        return outs[self.feature_level], [outs[level] for level in levels]
