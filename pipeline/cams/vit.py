"""Localisation maps from the ViT classifiers' attention, each method with its published
inference protocol (VIT_PROTOCOLS) or the project's multi-scale + flip one.

getam:      GETAM (gradient-weighted element-wise transformer attention) on the single-token
            ViT: per block from `start_block` on, mean_heads relu(dS/dA * A) times
            mean_heads relu(dS/dA), summed; the class token's row gives the map.
mctformer:  MCTformer-V2 on the ViT with one class token per class: class token c's attention to
            the patches, heads averaged, summed over the last 3 blocks, times relu(coarse CAM_c);
            refined as P @ map, P the patch-to-patch attention summed over all blocks.
weaktr:     WeakTr's fine CAM on the same model: the attention maps of every (block, head)
            weighted per image by the adaptive attention fusion, P_w @ (class attention * relu(coarse CAM)).
attnfusion: MCTformer-V2's arithmetic on the single-token ViT (one class token shared by all
            classes; class specificity from its patch-token CAM alone): the ablation that shows
            what one token per class adds.
Attention matrices are (B, heads, N, N), rows = queries (rows sum to 1); the single-token ViT's
token 0 is its class token, the class-token ViT's tokens 0..C-1 are its class tokens.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.cams.multiscale import scale_sum
from pipeline.core.precision import full_precision
from pipeline.models.vit_mct import fine_cam, fuse_attention


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


MCTFORMER_CLS_BLOCKS = 3   # MCTformer-V2: class-to-patch attention of the last 3 blocks


def mctformer_map(attns, coarse: torch.Tensor, cls_blocks: int = MCTFORMER_CLS_BLOCKS) -> torch.Tensor:
    """MCTformer-V2's map for all C classes: attentions (B, H, C + n, C + n) of every block and
    relu(coarse CAM) (B, C, h, w) -> P @ (class attention of the last `cls_blocks` blocks * coarse)."""
    B, C, h, w = coarse.shape
    A = torch.stack(attns).mean(2)                                # (blocks, B, N, N): heads averaged
    cls_attn = A[-cls_blocks:, :, :C, C:].sum(0).reshape(B, C, h, w)
    cams = (cls_attn * coarse).flatten(2)
    P = A[:, :, C:, C:].sum(0)
    return torch.einsum("bij,bcj->bci", P, cams).reshape(B, C, h, w)


def _class_token_maps(method: str):
    def maps(model, x: torch.Tensor, rows: torch.Tensor, cls_blocks: int) -> torch.Tensor:
        with torch.no_grad():
            coarse = F.relu(model.encode(x)[1])
            if method == "mctformer":
                all_maps = mctformer_map(model.attentions, coarse, cls_blocks)
            else:
                all_maps = fine_cam(fuse_attention(model.attentions, model.fusion_weights()), coarse)
        return all_maps[:, rows]
    return maps


# The ViT methods of the registry (pipeline/core/cam_methods.py): maps (B, K, h, w) on the patch
# grid for the classifier rows of the K classes, from one forward pass; and how the scales' sum
# is normalised per class.
VIT_MAPS = {"getam": _getam_maps, "attnfusion": _attnfusion_maps,
            "mctformer": _class_token_maps("mctformer"), "weaktr": _class_token_maps("weaktr")}
VIT_NORMALISE = {"getam": "max", "attnfusion": "minmax", "mctformer": "minmax", "weaktr": "minmax"}
# Each method's published inference protocol (cams.vit_protocol: published): scales, flip, and the
# bilinear upsampling's align_corners. GETAM: one scale; MCTformer-V2: scale 1 + flip; WeakTr:
# 1.0 and 1.2 + flip (its COCO runs add 0.8). attnfusion, MCTformer's arithmetic, takes MCTformer's.
VIT_PROTOCOLS = {"getam": {"scales": [1.0], "flip": False, "align_corners": True},
                 "attnfusion": {"scales": [1.0], "flip": True, "align_corners": False},
                 "mctformer": {"scales": [1.0], "flip": True, "align_corners": False},
                 "weaktr": {"scales": [1.0, 1.2], "flip": True, "align_corners": False}}
PROTOCOL_CHOICES = ("published", "project")


def vit_protocol(method: str, protocol: str, scales, flip: bool) -> dict:
    """The scales, flip and align_corners a ViT method runs with: its published protocol, or the
    project's (the `cams` section's scales and flip, align_corners False)."""
    if protocol not in PROTOCOL_CHOICES:
        raise ValueError(f"cams.vit_protocol '{protocol}' is unknown; expected one of {PROTOCOL_CHOICES}")
    if protocol == "published":
        return dict(VIT_PROTOCOLS[method])
    return {"scales": list(scales), "flip": bool(flip), "align_corners": False}


def vit_multiscale_cam(model, image: np.ndarray, class_ids, scales, flip: bool, mean, std, device,
                       method: str = "getam", cls_blocks: int | None = None,
                       align_corners: bool = False) -> np.ndarray:
    """As pipeline.cams.extract.multiscale_cam: maps summed over scales (and flips), upsampled to the
    image, each class / its max (getam) or min-max normalised (attnfusion, as MCTformer and
    WeakTr: the refinement adds a floor, every patch's attention-weighted share of the map).
    class_ids are dataset ids (1..C). attnfusion and mctformer take the class-to-patch attention of the
    last `cls_blocks` blocks (default: MCTformer-V2's 3).
    Returns float32 (K, H, W) in [0, 1]."""
    if method not in VIT_MAPS:
        raise ValueError(f"ViT CAM method '{method}' is unknown; expected one of {tuple(VIT_MAPS)}")
    if (model.meta.get("class_tokens", "one") == "per_class") != (method in ("mctformer", "weaktr")):
        raise ValueError(f"ViT CAM method '{method}' needs a classifier with "
                         f"{'one class token per class' if method in ('mctformer', 'weaktr') else 'one class token'}, "
                         f"but this one has class_tokens '{model.meta.get('class_tokens', 'one')}'")
    if cls_blocks is None:
        cls_blocks = MCTFORMER_CLS_BLOCKS if method in ("mctformer", "attnfusion") else \
            model.meta["depth"] - model.meta["start_block"]
    rows = torch.as_tensor(class_ids) - 1
    layer_maps = lambda x: [VIT_MAPS[method](model, x, rows, cls_blocks)]  # noqa: E731
    return scale_sum(image, len(class_ids), scales, flip, mean, std, device, layer_maps,
                     normalise=VIT_NORMALISE[method], align_corners=align_corners)
