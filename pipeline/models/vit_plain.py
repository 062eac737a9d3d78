"""A plain ViT/DeiT from timm (e.g. deit_small_patch16_224) as a multi-label classifier.

For users with its weights (`weights: timm` downloads them, or a checkpoint path); it has no
offline weights here. Images of any size: timm pads them to the patch size and resizes the
position embedding to the grid.
"""
from __future__ import annotations

import timm
import torch

from .vit_base import TwoHeadViT
from .weights import load_backbone_weights


class PlainViTClassifier(TwoHeadViT):
    def __init__(self, backbone: str, num_classes: int, start_block: int = 6, weights: str = "none"):
        super().__init__()
        self.trunk = timm.create_model(backbone, pretrained=weights == "timm", num_classes=0,
                                       dynamic_img_size=True, dynamic_img_pad=True)
        load_backbone_weights(self.trunk, backbone, weights)
        if getattr(self.trunk, "num_prefix_tokens", None) != 1 or not hasattr(self.trunk, "blocks"):
            raise ValueError(f"backbone '{backbone}' is not a ViT with exactly one class token "
                             "(distilled DeiTs carry two prefix tokens)")
        depth = len(self.trunk.blocks)
        if not 0 <= start_block < depth:
            raise ValueError(f"start_block {start_block} must lie in 0..{depth - 1} (depth {depth})")
        self._init_heads(self.trunk.blocks, self.trunk.embed_dim, num_classes)
        self.meta = {"backbone": backbone, "num_classes": num_classes, "kind": "vit", "depth": depth,
                     "start_block": start_block}

    def pretrained(self) -> torch.nn.Module:
        return self.trunk

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        self.attentions = []
        tokens = self.trunk.forward_features(x)
        return tokens, tuple(self.trunk.patch_embed.dynamic_feat_size(x.shape[-2:]))
