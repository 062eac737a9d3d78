"""What a ViT with one class token per class localises, part by part: a measurement, not a method.

Per block (heads averaged, at the first scale): how spread the class tokens' attention over the
patches is (entropy over log(n); 1 = uniform), how alike the rows of the image's classes are
(mean Pearson r between two classes' rows; 1 = one row for every class, as with a shared token),
and the patch-to-patch attention's entropy and row spread (pipeline.diagnostics.attnfusion).
Beside them, the seed mIoU curve of each part of the maps through the extraction's protocol:
the coarse CAM alone, the class attention alone (last 3 blocks), MCTformer's product before and
after the patch-attention refinement, and WeakTr's fine CAM before and after it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.diagnostics.attnfusion import patch_attention_stats
from pipeline.cams.multiscale import unit_range
from pipeline.cams.seeds import seed_label
from pipeline.cams.vit import MCTFORMER_CLS_BLOCKS, mctformer_map
from pipeline.data.transforms import rescale_bicubic, to_tensor
from pipeline.data.voc import VOCDataset
from pipeline.maps.metrics import ConfusionAccumulator, scores
from pipeline.models.vit_mct import fine_cam, fuse_attention


def class_row_stats(A: torch.Tensor, C: int, rows) -> dict:
    """One block's attention (B, heads, C + n, C + n) -> the class rows' entropy over the patches and
    the mean correlation between the rows of the classes `rows` (nan with one class)."""
    R = A.mean(1)[0, :C, C:]
    R = R / R.sum(-1, keepdim=True)
    n = R.shape[-1]
    entropy = -(R[rows] * torch.log(R[rows].clamp(min=1e-12))).sum(-1).mean() / np.log(n)
    corr = np.corrcoef(R.double().numpy())            # all C classes: how alike the tokens' rows are
    pairs = corr[~np.eye(C, dtype=bool)]
    return {"class_entropy": float(entropy), "class_row_r": float(np.mean(pairs))}


def variants(model, x: torch.Tensor, rows: torch.Tensor) -> dict:
    """name -> maps (B, K, h, w) of the image's classes, from one forward pass."""
    with torch.no_grad():
        coarse = F.relu(model.encode(x)[1])
        attns = model.attentions
        C = model.num_classes
        B, _, h, w = coarse.shape
        A = torch.stack(attns).mean(2)
        cls_attn = A[-MCTFORMER_CLS_BLOCKS:, :, :C, C:].sum(0).reshape(B, C, h, w)
        fused = fuse_attention(attns, model.fusion_weights())
        w_cls = fused[:, :C, C:].reshape(B, C, h, w)
        out = {"coarse CAM": coarse, "class attention": cls_attn, "mctformer unrefined": cls_attn * coarse,
               "mctformer": mctformer_map(attns, coarse), "weaktr unrefined": w_cls * coarse,
               "weaktr": fine_cam(fused, coarse)}
    return {name: maps[:, rows] for name, maps in out.items()}


def diagnose_class_tokens(model, meta: dict, voc: VOCDataset, scales, flip: bool, thresholds,
                          device="cpu") -> dict:
    model.eval().to(device)
    C = model.num_classes
    acc, stats = {}, []
    for image_id in voc.ids:
        image, class_ids, gt = voc.load_image(image_id), voc.image_labels(image_id), voc.load_mask(image_id)
        rows = torch.as_tensor(class_ids) - 1
        totals = {}
        for scale in scales:
            x = to_tensor(rescale_bicubic(image, scale), meta["mean"], meta["std"])[None]
            x = torch.cat([x, x.flip(-1)]) if flip else x
            maps_of = variants(model, x.to(device), rows)
            if scale == scales[0]:
                stats.append([{**class_row_stats(A.cpu(), C, rows),
                               **patch_attention_stats(A[:, :, C - 1:, C - 1:].cpu())} for A in model.attentions])
            for name, maps in maps_of.items():
                maps = maps[:1] + maps[1:].flip(-1) if flip else maps
                maps = F.interpolate(maps, size=image.shape[:2], mode="bilinear", align_corners=False)[0].cpu()
                totals[name] = totals.get(name, 0) + maps
        for name, total in totals.items():
            maps = unit_range(total).numpy()
            per_t = acc.setdefault(name, {t: ConfusionAccumulator(len(voc.classes)) for t in thresholds})
            for t in thresholds:
                per_t[t].add(gt, seed_label(maps, class_ids, t))
    blocks = [{key: float(np.mean([s[b][key] for s in stats])) for key in stats[0][b]} for b in range(len(stats[0]))]
    curves = {name: [{"threshold": t, "miou": scores(per_t[t].matrix, voc.classes)["miou"]} for t in thresholds]
              for name, per_t in acc.items()}
    return {"images": len(voc), "blocks": blocks, "curves": curves}
