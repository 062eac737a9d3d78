"""What ReCAM's map does on a classifier's features: a measurement, not a method.

On a checkpoint of ReCAM's step (classifier_recam.pt), the seed curves of three maps through the
extraction's own multi-scale protocol: the CAM of the classifier after the step,
relu(W_cls . F); W_new's own map, relu(W_new . F); and ReCAM's, relu((W_new * W_cls) . F).
Beside them, the share of negative values in the features F (ReCAM's ResNet features come out
of a ReLU, F >= 0) and per class the cosine of W_cls,k and W_new,k and the share of channels
where their signs agree (where the product W_new * W_cls is positive).
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from pipeline.cams.extract import class_activation, recam_weight
from pipeline.cams.multiscale import scale_sum
from pipeline.cams.seeds import seed_label
from pipeline.data.voc import VOCDataset
from pipeline.maps.metrics import ConfusionAccumulator, scores


def weight_variants(model) -> dict[str, torch.Tensor]:
    """name -> map weights (K, C): the CAM's, W_new's and ReCAM's product."""
    product = recam_weight(model).flatten(1)   # also the error when the checkpoint has no W_new
    return {"cam": model.classifier.weight.flatten(1), "w_new": model.recam.weight.flatten(1), "recam": product}


def weight_agreement(w_cls: torch.Tensor, w_new: torch.Tensor) -> list[dict]:
    """Per class row: cosine of the two weight vectors and the share of channels of equal sign."""
    cos = torch.nn.functional.cosine_similarity(w_cls, w_new, dim=1)
    same = ((w_cls > 0) == (w_new > 0)).double().mean(1)
    return [{"cosine": float(c), "same_sign": float(s)} for c, s in zip(cos, same)]


@torch.no_grad()
def diagnose(model, meta: dict, voc: VOCDataset, scales, flip: bool, thresholds, device="cpu") -> dict:
    model.eval().to(device)
    variants = {name: w.detach().to(device) for name, w in weight_variants(model).items()}
    acc = {name: {t: ConfusionAccumulator(len(voc.classes)) for t in thresholds} for name in variants}
    negative, values = 0, 0
    for image_id in tqdm(voc.ids, desc="recam diagnosis"):
        image, class_ids, gt = voc.load_image(image_id), voc.image_labels(image_id), voc.load_mask(image_id)
        rows = torch.as_tensor(class_ids) - 1
        for name, weight in variants.items():
            def layer_maps(x, w=weight[rows], count=name == "cam"):
                nonlocal negative, values
                features = model.features(x)
                if count:
                    negative += int((features < 0).sum())
                    values += features.numel()
                return [class_activation(features, w)]
            maps = scale_sum(image, len(class_ids), scales, flip, meta["mean"], meta["std"], device, layer_maps)
            for t in thresholds:
                acc[name][t].add(gt, seed_label(maps, class_ids, t))
    curves = {}
    for name, per_t in acc.items():
        curves[name] = []
        for t in thresholds:
            s = scores(per_t[t].matrix, voc.classes)
            curves[name].append({"threshold": t, "miou": s["miou"], "fg_precision": s["fg_precision"],
                                 "fg_recall": s["fg_recall"]})
    agreement = weight_agreement(variants["cam"].cpu(), variants["w_new"].cpu())
    return {"images": len(voc), "negative_feature_fraction": negative / max(values, 1),
            "classes": {c: a for c, a in zip(voc.classes[1:], agreement)}, "curves": curves}
