"""The attention blocks of the segmentation network (pipeline/models/segnet.py: head `danet`,
`scale_attention`).

DANet dual attention (Fu et al., 2019):
  position attention  out_i = gamma * sum_j softmax_j(q_i . k_j) v_j + x_i, q/k/v 1x1 convs
                      (q, k with C/8 channels);
  channel attention   out_c = gamma * sum_d softmax_d(max_e E_ce - E_cd) x_d + x_c with
                      E = X X^T over pixels, no 1x1 projections (DANet subtracts the energy from its
                      row max before the softmax);
  gamma is a learned scalar starting at 0, so each block starts as the identity.
Attention to Scale (Chen et al., 2016): per-pixel softmax weights over the scales' score maps.
"""
from __future__ import annotations

import torch
from torch import nn


class PositionAttention(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        reduced = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, reduced, 1)
        self.key = nn.Conv2d(channels, reduced, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)               # (B, N, C')
        k = self.key(x).flatten(2)                                  # (B, C', N)
        attention = torch.softmax(q @ k, dim=-1)                    # (B, N query, N key)
        v = self.value(x).flatten(2)                                # (B, C, N)
        out = (v @ attention.transpose(1, 2)).reshape(b, c, h, w)   # out_i = sum_j a_ij v_j
        return self.gamma * out + x


class ChannelAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.flatten(2)                                         # (B, C, N)
        energy = flat @ flat.transpose(1, 2)                        # (B, C, C)
        energy = energy.amax(-1, keepdim=True) - energy
        out = (torch.softmax(energy, dim=-1) @ flat).reshape(b, c, h, w)
        return self.gamma * out + x


class ScaleAttention(nn.Module):
    """Features of S scales (each (B, C, H, W), resized to one size) -> weights (B, S, H, W)
    summing to 1 per pixel; `fuse` mixes the scales' score maps with them."""

    def __init__(self, channels: int, scales: int, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels * scales, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, scales, 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return torch.softmax(self.net(torch.cat(features, 1)), dim=1)

    @staticmethod
    def fuse(scores: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return sum(weights[:, s:s + 1] * score for s, score in enumerate(scores))
