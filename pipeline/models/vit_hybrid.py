"""ViT-hybrid multi-label classifier (GETAM's best model): CNN feature map -> patch tokens ->
transformer -> two heads (see vit_base).

The CNN (EfficientNet-Lite0 with offline ImageNet weights) does the patch embedding, so a small
transformer on top trains on a CPU.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block

from .backbone import Backbone
from .vit_base import TwoHeadViT


class ViTHybridClassifier(TwoHeadViT):
    def __init__(self, backbone: str, num_classes: int, embed_dim: int = 192, depth: int = 6,
                 heads: int = 3, start_block: int = 3, output_stride: int = 16,
                 weights: str = "none", feature_level: int | str = "last", pos_grid: int = 14):
        super().__init__()
        if not 0 <= start_block < depth:
            raise ValueError(f"start_block {start_block} must lie in 0..{depth - 1} (depth {depth})")
        self.backbone = Backbone(backbone, weights, output_stride, feature_level)
        self.proj = nn.Conv2d(self.backbone.channels, embed_dim, 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # positions for a base grid, resized to each image's grid (image sizes vary)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, pos_grid, pos_grid))
        for p in (self.cls_token, self.cls_pos, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        self.blocks = nn.ModuleList(Block(embed_dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self._init_heads(self.blocks, embed_dim, num_classes)

        self.meta = {"backbone": backbone, "num_classes": num_classes, "kind": "vit_hybrid",
                     "embed_dim": embed_dim, "depth": depth, "heads": heads, "start_block": start_block,
                     "feature_level": feature_level, "output_stride": output_stride, "pos_grid": pos_grid}

    def pretrained(self) -> nn.Module:
        return self.backbone

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image -> tokens (B, 1 + h*w, D) entering the first block, and the patch grid (h, w)."""
        f = self.proj(self.features(x))
        h, w = f.shape[-2:]
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bilinear", align_corners=False)
        patches = (f + pos).flatten(2).transpose(1, 2)
        cls = (self.cls_token + self.cls_pos).expand(len(x), -1, -1)
        return torch.cat([cls, patches], 1), (h, w)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Normalised output tokens (B, 1 + h*w, D) and the grid; refills self.attentions."""
        self.attentions = []
        tokens, grid = self.embed(x)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens), grid
