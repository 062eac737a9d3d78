"""The loss of the segmentation network on noisy pseudo-labels (`segmentation.loss: clipped`).

Gradient clipping (WeakTr): while the mean pixel loss is above `start`, plain cross-entropy;
afterwards each pixel's loss is clamped to max(local mean, global mean), the local mean taken
over a `window` x `window` neighbourhood of labelled pixels, so that a few pixels with very high
loss (likely wrong pseudo-labels) stop dominating the gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = 255


def clipped_cross_entropy(logits: torch.Tensor, target: torch.Tensor, start: float, window: int) -> torch.Tensor:
    """logits (B, K, H, W), target (B, H, W) with 255 = ignore -> scalar loss."""
    pixel = F.cross_entropy(logits, target.long(), ignore_index=IGNORE, reduction="none")   # 0 where ignored
    valid = (target != IGNORE).to(pixel.dtype)
    count = valid.sum().clamp(min=1)
    global_mean = pixel.sum() / count
    if global_mean.item() > start:
        return global_mean
    pad = window // 2
    local_sum = F.avg_pool2d(pixel[:, None], window, 1, pad, count_include_pad=False)
    local_count = F.avg_pool2d(valid[:, None], window, 1, pad, count_include_pad=False)
    local_mean = (local_sum / local_count.clamp(min=1e-12))[:, 0, :pixel.shape[1], :pixel.shape[2]]
    bound = torch.maximum(local_mean, global_mean).detach()
    return (torch.minimum(pixel, bound) * valid).sum() / count
