"""ViT-hybrid multi-label classifier: CNN feature map -> patch tokens -> transformer -> two heads.

The CNN (EfficientNet-Lite0 with offline ImageNet weights) does the patch embedding, so a small
transformer on top trains on a CPU. Two heads are trained together:
  * the class-token head (the ViT logit; GETAM takes gradients of the score w.r.t. attention);
  * a bias-free linear head on every patch token, averaged over tokens, so that
    CAM_c = relu(W_c . t) is exactly the evidence its pooled logit sums up (as in Classifier).
`forward` returns the SUM of both logits, so the existing training loop (model(x) -> (B, C),
multi-label soft-margin loss) supervises both heads through one score; `heads` gives them apart.

Every block's softmaxed attention (B, heads, N, N) is captured in `self.attentions` on each
forward (token 0 is the class token), without editing timm: the explicit (non-fused) attention
path is forced and a forward hook on `attn.attn_drop` keeps the probabilities it receives.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block

from .backbone import Backbone


class ViTHybridClassifier(nn.Module):
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
        self.head = nn.Linear(embed_dim, num_classes)
        self.patch_head = nn.Linear(embed_dim, num_classes, bias=False)

        self.attentions: list[torch.Tensor] = []
        for block in self.blocks:
            # the fused kernel never materialises the attention matrix; the explicit path passes
            # softmax(q k^T * scale) through attn_drop, where the hook picks it up
            block.attn.fused_attn = False
            block.attn.attn_drop.register_forward_hook(self._keep_attention)

        self.meta = {"backbone": backbone, "num_classes": num_classes, "kind": "vit_hybrid",
                     "embed_dim": embed_dim, "depth": depth, "heads": heads, "start_block": start_block,
                     "feature_level": feature_level, "output_stride": output_stride, "pos_grid": pos_grid}

    def _keep_attention(self, module, inputs, output):
        # the output is what `attn @ v` consumes, so gradients w.r.t. it are the attention's
        if output.requires_grad:
            output.retain_grad()   # lets .grad be read after a plain backward()
        self.attentions.append(output)

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

    def heads(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class-token logits, patch-token GAP logits), each (B, C)."""
        return self.head(tokens[:, 0]), self.patch_head(tokens[:, 1:].mean(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls_logits, patch_logits = self.heads(self.encode(x)[0])
        return cls_logits + patch_logits

    def param_groups(self):
        """Pretrained backbone at the base lr, every new part at 10x."""
        backbone = {id(p) for p in self.backbone.parameters()}
        new = [p for p in self.parameters() if id(p) not in backbone]
        return [{"params": list(self.backbone.parameters()), "lr_mult": 1.0},
                {"params": new, "lr_mult": 10.0}]
