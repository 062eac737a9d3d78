"""Localisation maps from a ViT-hybrid classifier's attention, multi-scale + flip.

getam:      GETAM (gradient-weighted element-wise transformer attention): per block from
            `start_block` on, mean_heads relu(dS/dA * A) times mean_heads relu(dS/dA), summed;
            the class token's row gives the map.
attnfusion: MCTformer/WeakTr-style fusion: class-to-patch attention times the patch-token CAM,
            then propagated by patch-to-patch attention; the scales' sum is min-max normalised
            per class, as MCTformer and WeakTr do.
Attention matrices are (B, heads, N, N) with token 0 the class token, rows = queries (rows sum to 1).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.cams.multiscale import scale_sum
from pipeline.core.precision import full_precision


def getam_map(attns, grads, start_block: int, grid) -> torch.Tensor:
    """Per-block attentions and the gradients of one class score w.r.t. them -> (B, h, w)."""
    total = 0
    for A, G in list(zip(attns, grads))[start_block:]:
        total = total + F.relu(G * A).mean(1) * F.relu(G).mean(1)
    cls_row = total[:, 0, 1:]   # how the class token draws on each patch
    return cls_row.reshape(len(cls_row), *grid)


def attnfusion_map(attns, patch_cam: torch.Tensor, cls_blocks: int, refine_blocks=None) -> torch.Tensor:
    """Attentions of all blocks and the patch CAM (B, K, h, w) -> refined maps (B, K, h, w).

    MCTformer's inference (WeakTr's, with its learned block/head weights set equal), heads
    averaged in each block: the class token's attention to the patches, summed over the last
    `cls_blocks` blocks, times the patch CAM; then P @ map, P[i, j] = attention of patch i to
    patch j summed over *all* blocks, so each patch gathers the map of the patches it attends to.
    `refine_blocks` (block indices; [] = no refinement) replaces "all blocks" for diagnosis only.
    """
    B, K, h, w = patch_cam.shape
    A = torch.stack(attns).mean(2)                                # (blocks, B, N, N): heads averaged
    cls_attn = A[-cls_blocks:, :, 0, 1:].sum(0).reshape(B, 1, h, w)
    fused = (cls_attn * patch_cam).flatten(2)                     # (B, K, h*w)
    if refine_blocks is not None and len(refine_blocks) == 0:
        return fused.reshape(B, K, h, w)
    P = A[:, :, 1:, 1:] if refine_blocks is None else A[list(refine_blocks), :, 1:, 1:]
    P = P.sum(0)
    return torch.einsum("bij,bkj->bki", P, fused).reshape(B, K, h, w)


def _attnfusion_maps(model, x: torch.Tensor, rows: torch.Tensor, cls_blocks: int) -> torch.Tensor:
    with torch.no_grad():
        tokens, grid = model.encode(x)
        with full_precision(x.device):   # the network in the stage's precision, the maps in float32
            weight = model.patch_head.weight[rows].float()             # (K, D)
            patch_cam = F.relu(torch.einsum("bnd,kd->bkn", tokens[:, 1:].float(), weight))
            patch_cam = patch_cam.reshape(len(x), len(rows), *grid)
            return attnfusion_map([a.float() for a in model.attentions], patch_cam, cls_blocks)


def _getam_maps(model, x: torch.Tensor, rows: torch.Tensor, cls_blocks: int) -> torch.Tensor:
    with torch.enable_grad():
        tokens, grid = model.encode(x)
        attns = model.attentions
        # the score the classifier was trained on (class-token + patch-GAP logits)
        logits = sum(model.heads(tokens))
        maps = []
        for k, row in enumerate(rows.tolist()):
            # summing over the batch (the flipped copy) keeps each image's own gradient
            grads = torch.autograd.grad(logits[:, row].sum(), attns, retain_graph=k < len(rows) - 1)
            maps.append(getam_map([a.detach().float() for a in attns], [g.float() for g in grads],
                                  model.meta["start_block"], grid))
    return torch.stack(maps, 1)


# The ViT methods of the registry (pipeline/core/cam_methods.py): maps (B, K, h, w) on the patch
# grid for the classifier rows of the K classes, from one forward pass; and how the scales' sum
# is normalised per class.
VIT_MAPS = {"getam": _getam_maps, "attnfusion": _attnfusion_maps}
VIT_NORMALISE = {"getam": "max", "attnfusion": "minmax"}


def vit_multiscale_cam(model, image: np.ndarray, class_ids, scales, flip: bool, mean, std, device,
                       method: str = "getam", cls_blocks: int | None = None) -> np.ndarray:
    """As pipeline.cams.extract.multiscale_cam: maps summed over scales (and flips), upsampled to the
    image, each class / its max (getam) or min-max normalised (attnfusion, as MCTformer and
    WeakTr: the refinement adds a floor, every patch's attention-weighted share of the map).
    class_ids are dataset ids (1..C). attnfusion takes the class-to-patch attention of the last `cls_blocks`
    blocks (default: the GETAM blocks, start_block..depth-1). Returns float32 (K, H, W) in [0, 1]."""
    if method not in VIT_MAPS:
        raise ValueError(f"ViT CAM method '{method}' is unknown; expected one of {tuple(VIT_MAPS)}")
    if cls_blocks is None:
        cls_blocks = model.meta["depth"] - model.meta["start_block"]
    rows = torch.as_tensor(class_ids) - 1
    layer_maps = lambda x: [VIT_MAPS[method](model, x, rows, cls_blocks)]  # noqa: E731
    return scale_sum(image, len(class_ids), scales, flip, mean, std, device, layer_maps,
                     normalise=VIT_NORMALISE[method])
