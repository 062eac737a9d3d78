"""Why attnfusion's maps are (or are not) flat on a ViT classifier: a measurement, not a method.

Per block, two statistics of the head-averaged patch-to-patch attention P (rows renormalised
over the patches): its entropy over log(n) (1 = each patch attends uniformly) and its row spread,
the mean total-variation distance of each row to the mean row (0 = every patch attends to the
same patches, so P @ map gives every patch the same value and the refined map is flat).
Beside them, the seed mIoU curve of the fusion without refinement, with MCTformer's refinement
(all blocks) and with each single block's, through the extraction's own multi-scale protocol;
and the Pearson correlation of each class map refined (all blocks) with its unrefined map
(negative: the refinement moves the map away from where the fusion put it).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.cams.multiscale import unit_range
from pipeline.cams.seeds import seed_label
from pipeline.cams.vit import MCTFORMER_CLS_BLOCKS, attnfusion_map
from pipeline.data.transforms import rescale_bicubic, to_tensor
from pipeline.data.voc import VOCDataset
from pipeline.maps.metrics import ConfusionAccumulator, scores


def patch_attention_stats(A: torch.Tensor) -> dict:
    """A: one block's attention (B, heads, N, N), token 0 the class token -> entropy, row spread."""
    P = A.mean(1)[:, 1:, 1:]
    P = P / P.sum(-1, keepdim=True)
    n = P.shape[-1]
    entropy = -(P * torch.log(P.clamp(min=1e-12))).sum(-1).mean() / np.log(n)
    spread = 0.5 * (P - P.mean(1, keepdim=True)).abs().sum(-1).mean()
    return {"entropy": float(entropy), "row_spread": float(spread)}


def fusion_variants(attns, patch_cam: torch.Tensor, cls_blocks: int) -> dict:
    """name -> maps (B, K, h, w): unrefined, MCTformer's (all blocks), and one block at a time."""
    out = {"unrefined": attnfusion_map(attns, patch_cam, cls_blocks, refine_blocks=[]),
           "refined, all blocks": attnfusion_map(attns, patch_cam, cls_blocks)}
    for b in range(len(attns)):
        out[f"refined, block {b}"] = attnfusion_map(attns, patch_cam, cls_blocks, refine_blocks=[b])
    return out


def diagnose(model, meta: dict, voc: VOCDataset, scales, flip: bool, thresholds, device="cpu") -> dict:
    """Attention statistics (at the first scale) and each variant's seed curve over the images of voc."""
    model.eval().to(device)
    cls_blocks = MCTFORMER_CLS_BLOCKS   # as the extraction's attnfusion
    acc, stats, corr = {}, [], []
    for image_id in voc.ids:
        image, class_ids, gt = voc.load_image(image_id), voc.image_labels(image_id), voc.load_mask(image_id)
        rows = torch.as_tensor(class_ids) - 1
        totals = {}
        for scale in scales:
            x = to_tensor(rescale_bicubic(image, scale), meta["mean"], meta["std"])[None]   # as scale_sum
            x = torch.cat([x, x.flip(-1)]) if flip else x
            with torch.no_grad():
                tokens, grid = model.encode(x.to(device))
                cam = F.relu(torch.einsum("bnd,kd->bkn", tokens[:, 1:], model.patch_head.weight[rows]))
                variants = fusion_variants(model.attentions, cam.reshape(len(x), len(rows), *grid), cls_blocks)
            if scale == scales[0]:
                stats.append([patch_attention_stats(A) for A in model.attentions])
            for name, maps in variants.items():
                maps = maps[:1] + maps[1:].flip(-1) if flip else maps
                maps = F.interpolate(maps, size=image.shape[:2], mode="bilinear", align_corners=False)[0].cpu()
                totals[name] = totals.get(name, 0) + maps
        for unrefined, refined in zip(totals["unrefined"], totals["refined, all blocks"]):
            corr.append(float(np.corrcoef(unrefined.flatten().numpy(), refined.flatten().numpy())[0, 1]))
        for name, total in totals.items():
            maps = unit_range(total).numpy()
            per_t = acc.setdefault(name, {t: ConfusionAccumulator(len(voc.classes)) for t in thresholds})
            for t in thresholds:
                per_t[t].add(gt, seed_label(maps, class_ids, t))
    blocks = [{key: float(np.mean([s[b][key] for s in stats])) for key in stats[0][b]} for b in range(len(stats[0]))]
    curves = {name: [{"threshold": t, "miou": scores(per_t[t].matrix, voc.classes)["miou"]} for t in thresholds]
              for name, per_t in acc.items()}
    return {"images": len(voc), "blocks": blocks, "curves": curves,
            "refined_vs_unrefined": {"class_maps": len(corr), "mean_r": float(np.mean(corr)),
                                     "negative_fraction": float(np.mean(np.array(corr) < 0))}}
