"""The segmentation network retrained on the pseudo-labels (issue 6; its stages come later).

A timm backbone (offline weights by default) and one of two heads:
  aspp:  DeepLab-v3 ASPP: a 1x1 branch, three 3x3 atrous branches (rates 6, 12, 18 at output
         stride 16, doubled at 8) and an image-pooling branch, concatenated and projected;
  danet: a 3x3 reduction, then position attention and channel attention in parallel, summed.
GroupNorm instead of BatchNorm: the batches of a CPU run are small and the pooling branch is 1x1.
Logits are upsampled to the input size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone
from .seg_heads import ChannelAttention, PositionAttention


def _conv(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                                   bias=False), nn.GroupNorm(16, cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    def __init__(self, cin: int, cout: int = 256, rates=(6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList([_conv(cin, cout), *(_conv(cin, cout, 3, r) for r in rates)])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv(cin, cout))
        self.project = nn.Sequential(_conv(cout * (len(rates) + 2), cout), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, *x.shape[2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], 1))


class DualAttentionHead(nn.Module):
    def __init__(self, cin: int, cout: int = 256):
        super().__init__()
        self.reduce_p, self.reduce_c = _conv(cin, cout, 3), _conv(cin, cout, 3)
        self.position, self.channel = PositionAttention(cout), ChannelAttention()
        self.out_p, self.out_c = _conv(cout, cout, 3), _conv(cout, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_p(self.position(self.reduce_p(x))) + self.out_c(self.channel(self.reduce_c(x)))


class SegmentationNet(nn.Module):
    def __init__(self, backbone: str, num_classes: int, head: str = "aspp", output_stride: int = 16,
                 weights: str = "none", channels: int = 256):
        super().__init__()
        if head not in ("aspp", "danet"):
            raise ValueError(f"segmentation head '{head}' is unknown; expected 'aspp' or 'danet'")
        if output_stride not in (8, 16):
            raise ValueError(f"segmentation output_stride {output_stride}: expected 8 or 16")
        self.backbone = Backbone(backbone, weights, output_stride)
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        self.head = ASPP(self.backbone.channels, channels, rates) if head == "aspp" \
            else DualAttentionHead(self.backbone.channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.meta = {"backbone": backbone, "num_classes": num_classes, "head": head,
                     "output_stride": output_stride, "channels": channels}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.features(x))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)

    def param_groups(self):
        """Pretrained backbone at the base lr, the new head and classifier at 10x."""
        return [{"params": list(self.backbone.parameters()), "lr_mult": 1.0},
                {"params": [*self.head.parameters(), *self.classifier.parameters()], "lr_mult": 10.0}]
