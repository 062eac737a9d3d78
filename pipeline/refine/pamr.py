"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, 2020), in torch (runs on any device).

Each pixel i looks at 8 neighbours (the 3x3 ring) at every dilation d, 8 x len(dilations)
neighbours N(i) in all (edge pixels repeat the border). Its affinity to neighbour j is

    k_ij = -mean_c |I_ic - I_jc| / (temperature * sigma_ic + 1e-8),
    alpha_ij = softmax_j over N(i) of k_ij,

sigma_ic being the standard deviation of colour c over the 3x3 window at every dilation, the
centre pixel included once per dilation (9 x len(dilations) values, as 1-stage-wseg's
LocalStDev): a colour step counts relative to the local contrast, so weak edges in flat areas
still stop the masks. The masks are then averaged `iterations` times: m_i <- sum_j alpha_ij m_j.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

RING = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def shifted(x: torch.Tensor, dilations):
    """The ring neighbours of (B, C, H, W) at each dilation, as views, in a fixed order."""
    h, w = x.shape[-2:]
    for d in dilations:
        padded = F.pad(x, (d, d, d, d), mode="replicate")
        for dy, dx in RING:
            yield padded[..., d + dy * d:d + dy * d + h, d + dx * d:d + dx * d + w]


def neighbours(x: torch.Tensor, dilations) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 8 * len(dilations), H, W): the ring values at each dilation."""
    return torch.stack(list(shifted(x, dilations)), 2)


def pamr_weights(image: torch.Tensor, dilations, temperature: float) -> torch.Tensor:
    """image (B, 3, H, W) float -> alpha (B, 1, N, H, W), summing to 1 over the N neighbours."""
    ring = neighbours(image, dilations)
    # the 3x3 window of each dilation holds the centre too: the reference's sigma counts it once per dilation
    centre = image[:, :, None].expand(-1, -1, len(dilations), -1, -1)
    sigma = torch.cat([ring, centre], 2).std(2, keepdim=True)
    logits = -((ring - image[:, :, None]).abs() / (temperature * sigma + 1e-8)).mean(1, keepdim=True)
    return logits.softmax(2)


@torch.no_grad()
def pamr(image: torch.Tensor, masks: torch.Tensor, iterations: int = 10, dilations=(1, 2, 4, 8, 12, 24),
         temperature: float = 0.1) -> torch.Tensor:
    """image (B, 3, H, W), masks (B, K, H, W) -> refined masks (B, K, H, W)."""
    if image.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"PAMR masks {tuple(masks.shape[-2:])} do not match the image {tuple(image.shape[-2:])}")
    alpha = pamr_weights(image.float(), list(dilations), temperature)
    for _ in range(iterations):
        # a weighted sum of shifted views: no (B, K, N, H, W) stack per iteration
        out = torch.zeros_like(masks)
        for j, near in enumerate(shifted(masks, list(dilations))):
            out.addcmul_(alpha[:, :, j], near)
        masks = out
    return masks
