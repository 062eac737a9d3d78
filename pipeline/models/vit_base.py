"""What every transformer classifier here shares: two heads and attention capture.

Two heads are trained together: the class-token head (the ViT logit; GETAM differentiates the
score w.r.t. attention) and a bias-free linear head on every patch token, averaged over tokens,
so that CAM_c = relu(W_c . t) is exactly the evidence its pooled logit sums up. `forward`
returns the SUM of both logits, so the multi-label training loop supervises both through one
score; `heads` gives them apart.

Each block's softmaxed attention (B, heads, N, N; token 0 the class token) is captured in
`self.attentions` on every forward, without editing timm: the explicit (non-fused) attention
path is forced and a forward hook on `attn.attn_drop` keeps the probabilities it receives.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class AttentionCapture(nn.Module):
    """Keeps each block's softmaxed attention in `self.attentions` (and, with `outputs`, each
    attention module's output (B, N, D) in `self.attention_outputs`) on every forward."""

    def _capture_attention(self, blocks, outputs: bool = False) -> None:
        self.attentions: list[torch.Tensor] = []
        self.attention_outputs: list[torch.Tensor] = []
        for block in blocks:
            # the fused kernel never materialises the attention matrix; the explicit path passes
            # softmax(q k^T * scale) through attn_drop, where the hook picks it up
            block.attn.fused_attn = False
            block.attn.attn_drop.register_forward_hook(self._keep_attention)
            if outputs:
                block.attn.register_forward_hook(self._keep_attention_output)

    def _keep_attention_output(self, module, inputs, output):
        self.attention_outputs.append(output)

    def _keep_attention(self, module, inputs, output):
        # the output is what `attn @ v` consumes, so gradients w.r.t. it are the attention's
        if output.requires_grad:
            output.retain_grad()   # lets .grad be read after a plain backward()
        self.attentions.append(output)


class TwoHeadViT(AttentionCapture):
    """Subclasses build their trunk, call `_init_heads`, and define `pretrained` and `encode`."""

    def _init_heads(self, blocks, embed_dim: int, num_classes: int) -> None:
        self.head = nn.Linear(embed_dim, num_classes)
        self.patch_head = nn.Linear(embed_dim, num_classes, bias=False)
        self._capture_attention(blocks)

    def pretrained(self) -> nn.Module:
        """The part that starts from pretrained weights (trained at the base lr)."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Normalised output tokens (B, 1 + h*w, D) and the patch grid; refills self.attentions."""
        raise NotImplementedError

    def heads(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class-token logits, patch-token GAP logits), each (B, C)."""
        return self.head(tokens[:, 0]), self.patch_head(tokens[:, 1:].mean(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls_logits, patch_logits = self.heads(self.encode(x)[0])
        return cls_logits + patch_logits

    def param_groups(self):
        """The pretrained trunk at the base lr, every new part at 10x."""
        trunk = {id(p) for p in self.pretrained().parameters()}
        new = [p for p in self.parameters() if id(p) not in trunk]
        return [{"params": list(self.pretrained().parameters()), "lr_mult": 1.0},
                {"params": new, "lr_mult": 10.0}]
