"""Predict label maps with the trained segmentation network (the `pred` stage).

Per image: softmax probabilities at every test scale, and of the mirrored image mirrored back,
averaged at the image size; optionally a dense CRF on them (DeepLab's post-processing); the argmax
is stored as uint8 under the image id. Resumable like every artifact writer.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.core.precision import autocast, prepare_model, to_device
from pipeline.core.provenance import dataset_identity
from pipeline.core.store import ArtifactWriter, file_digest
from pipeline.data.transforms import resize, to_tensor
from pipeline.data.voc import VOCDataset
from pipeline.maps.crf import crf_softmax
from pipeline.models.segnet import SegmentationNet


@torch.no_grad()
def predict_probs(model: SegmentationNet, image: np.ndarray, mean, std, scales, flip: bool, device) -> np.ndarray:
    """image uint8 (H, W, 3) -> float32 (K, H, W) class probabilities averaged over scales and flips."""
    h, w = image.shape[:2]
    total, count = None, 0
    for scale in scales:
        x = to_tensor(image if scale == 1.0 else resize(image, scale), mean, std)[None]
        batch = to_device(torch.cat([x, x.flip(-1)]) if flip else x, device)
        with autocast(device):   # the network in the stage's precision, its softmax and average in float32
            logits = model(batch)
        probs = torch.softmax(logits.float(), 1)
        if flip:
            probs = torch.stack([probs[0], probs[1].flip(-1)])
        probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False).sum(0)
        total = probs if total is None else total + probs
        count += len(batch)
    return (total / count).cpu().numpy()


def predict(model: SegmentationNet, meta: dict, voc: VOCDataset, out, cfg: dict, device, *, checkpoint: str) -> dict:
    """cfg: test_scales, test_flip, test_crf, crf (the CRF's parameters). Resumable from a partial
    computed from the same images and the same `checkpoint` (its hash)."""
    prepare_model(model.eval(), device)
    params = {k: cfg[k] for k in ("test_scales", "test_flip", "test_crf", "crf")}
    seconds = 0.0
    provenance = {"data": dataset_identity(voc), "model": file_digest(checkpoint)}
    with ArtifactWriter(out, meta={**params, "classes": voc.classes}, provenance=provenance) as writer:
        todo = [i for i in voc.ids if i not in writer.done_keys()]
        for image_id in tqdm(todo, desc=f"predict {voc.split}"):
            image = voc.load_image(image_id)
            start = time.perf_counter()
            probs = predict_probs(model, image, meta["mean"], meta["std"], cfg["test_scales"], cfg["test_flip"],
                                  device)
            if cfg["test_crf"]:
                probs = crf_softmax(image, probs, cfg["crf"])
            seconds += time.perf_counter() - start
            writer.write(image_id, probs.argmax(0).astype(np.uint8))
    return {"split": voc.split, "images": len(voc), "computed_now": len(todo), "seconds": seconds}
