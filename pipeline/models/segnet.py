"""The segmentation network retrained on the pseudo-labels (rule train_segmentation).

A timm backbone (offline weights by default) and one of two heads:
  aspp:  DeepLab-v3 ASPP: a 1x1 branch, three 3x3 atrous branches (rates 6, 12, 18 at output
         stride 16, doubled at 8) and an image-pooling branch, concatenated and projected;
  danet: a 3x3 reduction, then position attention and channel attention in parallel, summed.
GroupNorm instead of BatchNorm: the batches of a CPU run are small and the pooling branch is 1x1.
Optionally Attention to Scale: the input also runs at the smaller `attention_scales`, and a
per-pixel softmax over the scales mixes their score maps (each scale's map is also supervised
during training, as in the paper). Logits are upsampled to the input size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone
from .checkpoint import CheckpointError, read_checkpoint
from .seg_heads import ChannelAttention, PositionAttention, ScaleAttention


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
                 weights: str = "none", channels: int = 256, attention_scales=(), feature_level: int | str = "last"):
        super().__init__()
        if head not in ("aspp", "danet"):
            raise ValueError(f"segmentation head '{head}' is unknown; expected 'aspp' or 'danet'")
        if output_stride not in (8, 16):
            raise ValueError(f"segmentation output_stride {output_stride}: expected 8 or 16")
        self.backbone = Backbone(backbone, weights, output_stride, feature_level)
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        self.head = ASPP(self.backbone.channels, channels, rates) if head == "aspp" \
            else DualAttentionHead(self.backbone.channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.scales = [float(s) for s in attention_scales]
        if self.scales and self.scales[0] != 1.0:
            raise ValueError(f"segmentation.attention_scales {self.scales} must start with 1.0 (the input scale)")
        self.scale_attention = ScaleAttention(channels, len(self.scales)) if self.scales else None
        self.meta = {"kind": "segmentation", "backbone": backbone, "num_classes": num_classes, "head": head,
                     "output_stride": output_stride, "channels": channels, "attention_scales": self.scales,
                     "feature_level": feature_level}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scored(x)[0]

    def scored(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits, per-scale logits) at the input size; without scale attention the list is empty."""
        size = x.shape[2:]
        if self.scale_attention is None:
            return _upsample(self.classifier(self.features(x)), size), []
        features = [self.features(x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear",
                                                                     align_corners=False)) for s in self.scales]
        grid = features[0].shape[2:]
        features = [f if f.shape[2:] == grid else _upsample(f, grid) for f in features]
        scores = [self.classifier(f) for f in features]
        fused = ScaleAttention.fuse(scores, self.scale_attention(features))
        return _upsample(fused, size), [_upsample(s, size) for s in scores]

    def param_groups(self):
        """Pretrained backbone at the base lr, the new head and classifier at 10x."""
        new = [*self.head.parameters(), *self.classifier.parameters()]
        if self.scale_attention is not None:
            new += list(self.scale_attention.parameters())
        return [{"params": list(self.backbone.parameters()), "lr_mult": 1.0}, {"params": new, "lr_mult": 10.0}]


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def build_segnet(cfg: dict, num_classes: int, weights: str | None = None) -> SegmentationNet:
    """From the `segmentation` config section; weights=None takes cfg['weights']."""
    return SegmentationNet(cfg["backbone"], num_classes, cfg["head"], cfg["output_stride"],
                           cfg["weights"] if weights is None else weights, cfg["channels"],
                           cfg["attention_scales"] if cfg["scale_attention"] else (), cfg["feature_level"])


def save_segnet(model: SegmentationNet, path, **extra_meta) -> None:
    torch.save({"state_dict": model.state_dict(), "meta": {**model.meta, **extra_meta}}, path)


def load_segnet(path, expected_backbone: str | None = None) -> tuple[SegmentationNet, dict]:
    """The network and its metadata (classes, normalisation, ...); a checkpoint of another backbone
    than config's, or one that is not a segmentation checkpoint, is an error naming the file."""
    ckpt = read_checkpoint(path, "segmentation")
    meta = ckpt["meta"]
    if meta.get("kind") != "segmentation":
        raise CheckpointError(f"{path} is not a segmentation checkpoint of this project (its metadata has no "
                         "kind 'segmentation': a classifier or AffinityNet checkpoint?)")
    if expected_backbone is not None and meta["backbone"] != expected_backbone:
        raise CheckpointError(f"{path} was trained with backbone '{meta['backbone']}', but config asks for "
                         f"segmentation.backbone '{expected_backbone}'; retrain it or fix the config")
    model = SegmentationNet(meta["backbone"], meta["num_classes"], meta["head"], meta["output_stride"],
                            "none", meta["channels"], meta["attention_scales"], meta["feature_level"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the segmentation network its metadata describes: {exc}") from exc
    return model, meta
