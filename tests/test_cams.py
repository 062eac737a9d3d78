import numpy as np
import torch
import torch.nn as nn

from pipeline.cams import class_activation, multiscale_cam
from pipeline.seeds import seed_label, sweep_values


class HandBuilt(nn.Module):
    """features = identity on the 3 normalised channels (stride 1); classifier weights given."""

    def __init__(self, weight):
        super().__init__()
        self.classifier = nn.Conv2d(3, weight.shape[0], 1, bias=False)
        self.classifier.weight.data = torch.tensor(weight, dtype=torch.float32)[:, :, None, None]

    def features(self, x):
        return x


def test_class_activation_is_relu_of_weighted_sum():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2, 4, 3, 5)).astype(np.float32)
    w = rng.normal(size=(3, 4)).astype(np.float32)
    expected = np.zeros((2, 3, 3, 5), np.float32)
    for b in range(2):
        for k in range(3):
            for y in range(3):
                for x in range(5):
                    expected[b, k, y, x] = max(0.0, sum(w[k, c] * f[b, c, y, x] for c in range(4)))
    got = class_activation(torch.from_numpy(f), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_multiscale_cam_on_hand_built_network():
    # three classes; the image has classes 1 and 3 -> rows 0 and 2 of the classifier
    weight = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 1.0]])
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(6, 7, 3)).astype(np.uint8)
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    x = (image / 255.0 - 0.5) / 0.5                  # what the network sees, (H, W, 3)
    raw = np.maximum(0, np.einsum("hwc,kc->khw", x, weight[[0, 2]]))
    expected = raw / (raw.reshape(2, -1).max(1)[:, None, None] + 1e-5)
    model = HandBuilt(weight)
    got = multiscale_cam(model, image, np.array([1, 3]), [1.0], False, mean, std, "cpu")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # a 1x1 network commutes with flipping: adding the flipped pass doubles the map, the
    # per-class max normalisation removes the factor again
    flipped = multiscale_cam(model, image, np.array([1, 3]), [1.0], True, mean, std, "cpu")
    np.testing.assert_allclose(flipped, expected, rtol=1e-4, atol=1e-5)
    assert multiscale_cam(model, image, np.array([], int), [1.0], True, mean, std, "cpu").shape == (0, 6, 7)


def test_multiscale_maps_keep_the_image_size_and_unit_max():
    model = HandBuilt(np.eye(3))
    image = np.random.default_rng(2).integers(0, 256, size=(9, 13, 3)).astype(np.uint8)
    maps = multiscale_cam(model, image, np.array([1, 2]), [1.0, 0.5, 1.5, 2.0], True, (0.5,) * 3, (0.5,) * 3, "cpu")
    assert maps.shape == (2, 9, 13)
    assert np.all(maps >= 0) and np.allclose(maps.reshape(2, -1).max(1), 1.0, atol=1e-4)


def test_seed_label_by_hand():
    maps = np.array([[[0.9, 0.1], [0.3, 0.2]],
                     [[0.5, 0.6], [0.3, 0.05]]])
    # pixel (0,0): class 4 wins with 0.9; (0,1): class 7 with 0.6; (1,0): 0.3 vs 0.3 tie -> first
    # of the two classes (4), both above 0.25; (1,1): max 0.2 <= 0.25 -> background
    np.testing.assert_array_equal(seed_label(maps, np.array([4, 7]), 0.25), [[4, 7], [4, 0]])
    # background wins a tie with the threshold
    np.testing.assert_array_equal(seed_label(maps, np.array([4, 7]), 0.3), [[4, 7], [0, 0]])
    assert sweep_values(0.05, 0.6, 0.05) == [round(0.05 * i, 6) for i in range(1, 13)]
