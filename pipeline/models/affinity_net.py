"""AffinityNet: a feature embedding in which pixels of one object lie close together.

Several backbone levels are each projected by a 1x1 conv (+ GroupNorm + ReLU), resized to the
affinity grid (stride `stride` of the input) and concatenated; a last 1x1 conv mixes them. The
affinity of two grid pixels is then exp(-mean |f_i - f_j|) (pipeline.affinity.random_walk.pair_affinity).
The backbone is the classifier's family, started from the offline weights; its BatchNorm
statistics stay frozen (the batches here are a few crops, too few to re-estimate them).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone
from .checkpoint import load_network


class AffinityNet(nn.Module):
    def __init__(self, backbone: str, levels, dims, stride: int = 8, output_stride: int = 16,
                 weights: str = "none"):
        super().__init__()
        levels, dims = list(levels), list(dims)
        if len(levels) != len(dims) or sorted(levels) != levels or len(set(levels)) != len(levels):
            raise ValueError(f"affinity.levels {levels} must be increasing and match affinity.dims {dims} one to one")
        self.backbone = Backbone(backbone, weights, output_stride, feature_level=levels[-1])
        channels = [self.backbone.model.feature_info[level]["num_chs"] for level in levels]
        self.levels, self.stride = levels, stride
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d, 1, bias=False), nn.GroupNorm(_groups(d), d), nn.ReLU(inplace=True))
            for c, d in zip(channels, dims))
        self.mix = nn.Sequential(nn.Conv2d(sum(dims), sum(dims), 1, bias=False), nn.ReLU(inplace=True))
        self.meta = {"backbone": backbone, "levels": levels, "dims": dims, "stride": stride,
                     "output_stride": output_stride}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> features (B, D, ceil(H / stride), ceil(W / stride))."""
        grid = (math.ceil(x.shape[2] / self.stride), math.ceil(x.shape[3] / self.stride))
        last, earlier = self.backbone.with_levels(x, self.levels[:-1])
        projected = [F.interpolate(proj(f), size=grid, mode="bilinear", align_corners=False)
                     for proj, f in zip(self.project, [*earlier, last])]
        return self.mix(torch.cat(projected, 1))

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def param_groups(self):
        """Backbone at the base lr, the new projections at 10x."""
        trunk = list(self.backbone.parameters())
        return [{"params": trunk, "lr_mult": 1.0},
                {"params": [*self.project.parameters(), *self.mix.parameters()], "lr_mult": 10.0}]


def _groups(channels: int) -> int:
    return math.gcd(channels, 16)


def save_affinity_net(model: AffinityNet, path, **extra_meta) -> None:
    torch.save({"state_dict": model.state_dict(), "meta": {**model.meta, **extra_meta}}, path)


def load_affinity_net(path, expected_backbone: str | None = None) -> tuple[AffinityNet, dict]:
    return load_network(path, "AffinityNet", "levels", lambda meta: AffinityNet(
        meta["backbone"], meta["levels"], meta["dims"], meta["stride"], meta["output_stride"]), expected_backbone, "affinity")
