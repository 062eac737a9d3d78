"""ViT classifiers with one class token per class (MCTformer-V2, WeakTr).

The token sequence is [t_1 .. t_C, patch tokens]: C class tokens, one per foreground class,
then the h*w patch tokens. Three predictions, each trained with the multi-label soft-margin loss:

- class-token scores: output token t_c averaged over its channels;
- the coarse CAM: a 3x3 conv (embed_dim -> C) on the output patch tokens laid out on the grid,
  its global average the second prediction;
- the fine CAM (WeakTr): adaptive attention fusion (AdaptiveAttentionFusion) weights each
  (block, head) attention map per image; the weighted mean W gives the class-to-patch attention
  (rows 0..C-1, patch columns) and the patch-to-patch matrix P_w; fine CAM =
  P_w @ (class attention * relu(coarse CAM)), its global average the third prediction. Its
  inputs (attentions, attention outputs, coarse CAM) are detached, so this loss trains only the
  fusion and the class tokens and trunk train exactly as MCTformer-V2's.

The output tokens are used without the trunk's final LayerNorm, as in both published models.
Two trunks: the ViT-hybrid (blocks on a CNN feature map, trained from scratch on the demo) and
any timm ViT/DeiT with one class token (`kind: vit`), whose patch embedding, blocks and position
embedding are reused; every class token and its position start from the pretrained class token's.
"""
from __future__ import annotations

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import Block

from .backbone import Backbone
from .vit_base import AttentionCapture
from .weights import load_backbone_weights


class AdaptiveAttentionFusion(nn.Module):
    """WeakTr's per-image weight for each of the K*H (block, head) attention maps.

    From each block's attention output (B, N, D), split into H head slices of D/H channels (channel
    d belongs to head d mod H) and averaged over the N tokens, a linear map D/H -> D/H/feat_reduction
    -> 1 gives one scalar per (block, head); an MLP over those K*H scalars (bias-free, bottleneck
    K*H/reduction, ReLU, sigmoid) gives the K*H weights in (0, 1)."""

    def __init__(self, blocks: int, heads: int, embed_dim: int, reduction: float = 4, feat_reduction: float = 8):
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by heads {heads}")
        self.blocks, self.heads = blocks, heads
        head_dim = embed_dim // heads
        channels = blocks * heads
        self.feat_ffn = nn.Sequential(nn.Linear(head_dim, max(1, int(head_dim / feat_reduction))),
                                      nn.Linear(max(1, int(head_dim / feat_reduction)), 1))
        self.head_ffn = nn.Sequential(nn.Linear(channels, max(1, int(channels / reduction)), bias=False),
                                      nn.ReLU(),
                                      nn.Linear(max(1, int(channels / reduction)), channels, bias=False),
                                      nn.Sigmoid())

    def forward(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """Attention outputs of the K blocks, each (B, N, D) -> weights (B, K, H)."""
        feats = torch.stack(outputs, 1)                                   # (B, K, N, D)
        B, K, N, D = feats.shape
        pooled = feats.mean(2).reshape(B, K, D // self.heads, self.heads).transpose(2, 3)   # (B, K, H, D/H)
        scalars = self.feat_ffn(pooled).reshape(B, K * self.heads)
        return self.head_ffn(scalars).reshape(B, K, self.heads)


def fuse_attention(attns: list[torch.Tensor], weights: torch.Tensor | None = None) -> torch.Tensor:
    """Attention maps of K blocks, each (B, H, N, N), and weights (B, K, H) -> their weighted mean
    over blocks and heads (B, N, N); without weights, the plain mean."""
    A = torch.stack(attns, 1)                                             # (B, K, H, N, N)
    if weights is not None:
        A = A * weights[..., None, None]
    return A.mean((1, 2))


def fine_cam(fused: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """WeakTr's fine CAM from the fused attention (B, C + n, C + n) and relu(coarse CAM) (B, C, h, w):
    P_w @ (class-to-patch attention * coarse), P_w the fused patch-to-patch attention."""
    B, C, h, w = coarse.shape
    cls_attn = fused[:, :C, C:].reshape(B, C, h, w)
    cams = (cls_attn * coarse).flatten(2)                                 # (B, C, n)
    return torch.einsum("bij,bcj->bci", fused[:, C:, C:], cams).reshape(B, C, h, w)


class ClassTokenViT(AttentionCapture):
    """Subclasses build their trunk and define `pretrained` and `tokens`; then call `_init_heads`."""

    def _init_heads(self, blocks, embed_dim: int, heads: int, num_classes: int,
                    reduction: float, feat_reduction: float) -> None:
        self.num_classes = num_classes
        self.head = nn.Conv2d(embed_dim, num_classes, 3, padding=1)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.fusion = AdaptiveAttentionFusion(len(blocks), heads, embed_dim, reduction, feat_reduction)
        self._capture_attention(blocks, outputs=True)

    def pretrained(self) -> nn.Module:
        raise NotImplementedError

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Output tokens (B, C + h*w, D) of the last block and the patch grid; refills the captures."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class-token logits (B, C), coarse CAM before relu (B, C, h, w)); refills the captures."""
        self.attentions, self.attention_outputs = [], []
        tokens, (h, w) = self.tokens(x)
        C = self.num_classes
        patches = tokens[:, C:].transpose(1, 2).reshape(len(x), -1, h, w)
        return tokens[:, :C].mean(-1), self.head(patches)

    def fusion_weights(self) -> torch.Tensor:
        """The last forward's per-image weights (B, K, H) from its (detached) attention outputs."""
        return self.fusion([o.detach() for o in self.attention_outputs])

    def predictions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three predictions trained by the multi-label loss: class tokens, coarse-CAM GAP,
        fine-CAM GAP (the last reaches only the fusion)."""
        cls_logits, coarse = self.encode(x)
        fused = fuse_attention([a.detach() for a in self.attentions], self.fusion_weights())
        fine = fine_cam(fused, F.relu(coarse.detach()))
        return cls_logits, coarse.mean((2, 3)), fine.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The class-token scores (the classifier's prediction, e.g. for val mAP)."""
        return self.encode(x)[0]

    def param_groups(self):
        """The pretrained trunk at the base lr, every new part at 10x."""
        trunk = {id(p) for p in self.pretrained().parameters()}
        new = [p for p in self.parameters() if id(p) not in trunk]
        return [{"params": list(self.pretrained().parameters()), "lr_mult": 1.0},
                {"params": new, "lr_mult": 10.0}]


class HybridClassTokenViT(ClassTokenViT):
    """Transformer blocks on a CNN feature map (the ViT-hybrid of vit_hybrid.py), C class tokens."""

    def __init__(self, backbone: str, num_classes: int, embed_dim: int = 192, depth: int = 6,
                 heads: int = 3, output_stride: int = 16, weights: str = "none",
                 feature_level: int | str = "last", pos_grid: int = 14, reduction: float = 4,
                 feat_reduction: float = 8, start_block: int = 3):
        super().__init__()
        self.backbone = Backbone(backbone, weights, output_stride, feature_level)
        self.proj = nn.Conv2d(self.backbone.channels, embed_dim, 1)
        self.cls_tokens = nn.Parameter(torch.zeros(1, num_classes, embed_dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, num_classes, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, pos_grid, pos_grid))
        for p in (self.cls_tokens, self.cls_pos, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        self.blocks = nn.ModuleList(Block(embed_dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))
        self._init_heads(self.blocks, embed_dim, heads, num_classes, reduction, feat_reduction)
        self.meta = {"backbone": backbone, "num_classes": num_classes, "kind": "vit_hybrid",
                     "class_tokens": "per_class", "embed_dim": embed_dim, "depth": depth, "heads": heads,
                     "start_block": start_block, "feature_level": feature_level,
                     "output_stride": output_stride, "pos_grid": pos_grid,
                     "aaf_reduction": reduction, "aaf_feat_reduction": feat_reduction}

    def pretrained(self) -> nn.Module:
        return self.backbone

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        f = self.proj(self.backbone(x))
        h, w = f.shape[-2:]
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bilinear", align_corners=False)
        patches = (f + pos).flatten(2).transpose(1, 2)
        cls = (self.cls_tokens + self.cls_pos).expand(len(x), -1, -1)
        tokens = torch.cat([cls, patches], 1)
        for block in self.blocks:
            tokens = block(tokens)
        return tokens, (h, w)


class PlainClassTokenViT(ClassTokenViT):
    """A timm ViT/DeiT (one class token, absolute position embedding) with C class tokens: its patch
    embedding, blocks and patch positions reused; each class token and class position start from
    the pretrained class token and its position. Images of any size (padded to the patch size; the
    position embedding resized to the grid)."""

    def __init__(self, backbone: str, num_classes: int, weights: str = "none", reduction: float = 4,
                 feat_reduction: float = 8, start_block: int = 6):
        super().__init__()
        self.trunk = timm.create_model(backbone, pretrained=weights == "timm", num_classes=0,
                                       dynamic_img_size=True, dynamic_img_pad=True)
        load_backbone_weights(self.trunk, backbone, weights)
        if getattr(self.trunk, "num_prefix_tokens", None) != 1 or getattr(self.trunk, "cls_token", None) is None \
                or getattr(self.trunk, "pos_embed", None) is None or getattr(self.trunk, "no_embed_class", False):
            raise ValueError(f"backbone '{backbone}' is not a ViT with exactly one class token and a position "
                             "embedding that covers it (distilled DeiTs carry two prefix tokens)")
        embed_dim = self.trunk.embed_dim
        heads = self.trunk.blocks[0].attn.num_heads
        self.cls_tokens = nn.Parameter(self.trunk.cls_token.detach().clone().repeat(1, num_classes, 1))
        self.cls_pos = nn.Parameter(self.trunk.pos_embed.detach()[:, :1].clone().repeat(1, num_classes, 1))
        self._init_heads(self.trunk.blocks, embed_dim, heads, num_classes, reduction, feat_reduction)
        self.meta = {"backbone": backbone, "num_classes": num_classes, "kind": "vit", "class_tokens": "per_class",
                     "depth": len(self.trunk.blocks), "heads": heads, "start_block": start_block,
                     "aaf_reduction": reduction, "aaf_feat_reduction": feat_reduction}

    def pretrained(self) -> nn.Module:
        return self.trunk

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        t = self.trunk
        patches = t.patch_embed(x)                                        # (B, h, w, D): dynamic size
        h, w = patches.shape[1:3]
        pos = resample_abs_pos_embed(t.pos_embed[:, 1:], (h, w), num_prefix_tokens=0)
        patches = patches.reshape(len(x), h * w, -1) + pos
        tokens = torch.cat([(self.cls_tokens + self.cls_pos).expand(len(x), -1, -1), patches], 1)
        tokens = t.norm_pre(t.patch_drop(t.pos_drop(tokens)))
        for block in t.blocks:
            tokens = block(tokens)
        return tokens, (h, w)
