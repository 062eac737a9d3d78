"""The background channel stacked under the CAMs by the stages that argmax them."""
from __future__ import annotations

import numpy as np


def background_score(cams: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - max_c CAM)^alpha; 1 everywhere for an image without classes."""
    peak = cams.max(0) if len(cams) else np.zeros(cams.shape[1:], np.float32)
    return np.power(1.0 - peak, alpha)
