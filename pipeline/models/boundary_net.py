"""IRN's class-boundary network (Ahn, Cho & Kwak 2019): a boundary map B in [0, 1] at stride 4.

The backbone is frozen (ImageNet weights, eval mode, no gradient): IRN trains only its new
layers. Each of the backbone's feature levels goes through a 1x1 conv to `dim` channels,
GroupNorm and ReLU, is resized to the boundary grid (stride `stride` of the input) and
concatenated; a last 1x1 conv (with bias) and a sigmoid give B. IRN's ResNet-50 takes its five
stages (strides 4, 4, 8, 16, 16); a timm backbone's five feature levels (strides 2 to 32, or 16
with output_stride 16) play their part. IRN's displacement branch (instance masks) is not built:
semantic pseudo-labels do not need it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone
from .checkpoint import load_network

GROUPS = 4   # IRN: GroupNorm(4, 32)


class BoundaryNet(nn.Module):
    def __init__(self, backbone: str, levels, dim: int = 32, stride: int = 4, output_stride: int = 16,
                 weights: str = "none"):
        super().__init__()
        levels = list(levels)
        if sorted(set(levels)) != levels:
            raise ValueError(f"irn.levels {levels} must be increasing, without repeats")
        self.backbone = Backbone(backbone, weights, output_stride, feature_level=levels[-1])
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        channels = [self.backbone.model.feature_info[level]["num_chs"] for level in levels]
        self.levels, self.stride = levels, stride
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, 1, bias=False), nn.GroupNorm(math.gcd(GROUPS, dim), dim), nn.ReLU(inplace=True))
            for c in channels)
        self.fuse = nn.Conv2d(dim * len(levels), 1, 1, bias=True)
        self.meta = {"backbone": backbone, "levels": levels, "dim": dim, "stride": stride,
                     "output_stride": output_stride}
        self.train()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> boundary logits (B, 1, ceil(H / stride), ceil(W / stride))."""
        grid = (math.ceil(x.shape[2] / self.stride), math.ceil(x.shape[3] / self.stride))
        self.backbone.eval()     # frozen, BatchNorm statistics included, whatever mode the caller set
        with torch.no_grad():
            last, earlier = self.backbone.with_levels(x, self.levels[:-1])
        projected = [F.interpolate(proj(f.detach()), size=grid, mode="bilinear", align_corners=False)
                     for proj, f in zip(self.project, [*earlier, last])]
        return self.fuse(torch.cat(projected, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> B in [0, 1], (B, ceil(H / stride), ceil(W / stride))."""
        return torch.sigmoid(self.logits(x))[:, 0]

    @torch.no_grad()
    def boundary(self, x: torch.Tensor) -> torch.Tensor:
        """IRN's inference: the logits of the image and of its mirror image averaged, then the sigmoid:
        (1, 3, H, W) -> (h, w)."""
        both = self.logits(torch.cat([x, x.flip(-1)]))
        return torch.sigmoid((both[0] + both[1].flip(-1)) / 2)[0]

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()   # frozen: its BatchNorm statistics too
        return self

    def param_groups(self):
        """Only the new layers train (IRN: the edge layers at the base lr)."""
        return [{"params": [*self.project.parameters(), *self.fuse.parameters()], "lr_mult": 1.0}]


def save_boundary_net(model: BoundaryNet, path, **extra_meta) -> None:
    torch.save({"state_dict": model.state_dict(), "meta": {**model.meta, **extra_meta}}, path)


def load_boundary_net(path, expected_backbone: str | None = None) -> tuple[BoundaryNet, dict]:
    return load_network(path, "IRN boundary-network", "dim", lambda meta: BoundaryNet(
        meta["backbone"], meta["levels"], meta["dim"], meta["stride"], meta["output_stride"]), expected_backbone, "irn")
