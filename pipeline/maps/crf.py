"""Fully connected CRF (Krähenbühl & Koltun) through pydensecrf, with a Gaussian smoothness
kernel and a bilateral appearance kernel, in two modes:

softmax: the unary is -log of per-class scores (CAM or random-walk maps);
label:   the unary trusts a hard label map with probability gt_prob, the rest spread evenly
         over the other labels (for refining argmax pseudo-labels).
Defaults are the ones AffinityNet / IRN and most WSSS code use."""
from __future__ import annotations

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels

SOFTMAX_DEFAULTS = {"iterations": 10, "gaussian_sxy": 3, "gaussian_compat": 3,
                    "bilateral_sxy": 80, "bilateral_srgb": 13, "bilateral_compat": 10}
LABEL_DEFAULTS = {"gt_prob": 0.7, "iterations": 10, "gaussian_sxy": 3, "gaussian_compat": 3,
                  "bilateral_sxy": 50, "bilateral_srgb": 5, "bilateral_compat": 10}


def _check_image(image: np.ndarray, shape) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"CRF image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if tuple(shape) != image.shape[:2]:
        raise ValueError(f"CRF input {tuple(shape)} does not match the image {image.shape[:2]}")


def _infer(crf, image: np.ndarray, p: dict, k: int, h: int, w: int) -> np.ndarray:
    crf.addPairwiseGaussian(sxy=p["gaussian_sxy"], compat=p["gaussian_compat"])
    crf.addPairwiseBilateral(sxy=p["bilateral_sxy"], srgb=p["bilateral_srgb"],
                             rgbim=np.ascontiguousarray(image), compat=p["bilateral_compat"])
    return np.asarray(crf.inference(p["iterations"]), np.float32).reshape(k, h, w)


def softmax_unary(probs: np.ndarray) -> np.ndarray:
    """probs (K, H, W) -> unary energies (K, H * W) float32: -log of the scores clipped to [1e-5, 1],
    as pydensecrf's unary_from_softmax (the reference); a score above 1 costs as much as 1."""
    k = probs.shape[0]
    return -np.log(np.clip(probs.reshape(k, -1), 1e-5, 1.0)).astype(np.float32)


def crf_softmax(image: np.ndarray, probs: np.ndarray, params: dict | None = None) -> np.ndarray:
    """image uint8 (H, W, 3), probs (K, H, W) non-negative scores -> refined (K, H, W) marginals.
    Scores need not sum to 1 (the CAM-derived stacks do not); the unary clips them to [1e-5, 1]."""
    p = {**SOFTMAX_DEFAULTS, **(params or {})}
    if probs.ndim != 3:
        raise ValueError(f"CRF scores must be (K, H, W), got shape {probs.shape}")
    _check_image(image, probs.shape[1:])
    k, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(np.ascontiguousarray(softmax_unary(probs)))
    return _infer(crf, image, p, k, h, w)


def crf_labels(image: np.ndarray, labels: np.ndarray, n_labels: int, params: dict | None = None) -> np.ndarray:
    """image uint8 (H, W, 3), labels (H, W) in 0..n_labels-1 -> marginals (n_labels, H, W)."""
    p = {**LABEL_DEFAULTS, **(params or {})}
    _check_image(image, labels.shape)
    bad = (labels < 0) | (labels >= n_labels)
    if bad.any():
        raise ValueError(f"CRF label map holds label {int(labels[bad][0])}, outside 0..{n_labels - 1} "
                         f"(the {n_labels} labels this image's CRF was given)")
    h, w = labels.shape
    crf = dcrf.DenseCRF2D(w, h, n_labels)
    # pydensecrf's convention: label 0 means "unsure"; shift so every pixel carries a label
    unary = unary_from_labels(labels.astype(np.int64) + 1, n_labels, gt_prob=p["gt_prob"], zero_unsure=True)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    return _infer(crf, image, p, n_labels, h, w)
