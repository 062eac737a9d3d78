import numpy as np
import pytest
import torch
import torch.nn as nn

from pipeline.cams.extract import class_activation, multiscale_cam
from pipeline.cams.seeds import seed_label, sweep_values


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
    expected = raw / raw.reshape(2, -1).max(1)[:, None, None]
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


# --- gradient methods -------------------------------------------------------------------

from pipeline.cams.extract import _activation_maps, gradcampp_map, layercam_map  # noqa: E402
from pipeline.models.classifier import Classifier, thresholded_average_pool  # noqa: E402


class TinyConvNet(nn.Module):
    """conv -> relu features, GAP, bias-free linear head: the setting of the Grad-CAM identity."""

    def __init__(self, pooling="gap"):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(6, 4, 1, bias=False)
        self.pooling = pooling

    def features(self, x):
        return self.body(x)

    def features_and_levels(self, x, levels):
        return self.features(x), []

    def classify(self, f):
        pooled = f.mean((2, 3)) if self.pooling == "gap" else thresholded_average_pool(f)
        return self.classifier(pooled[:, :, None, None]).flatten(1)


def test_gradcam_equals_cam_up_to_a_positive_per_class_scale():
    model = TinyConvNet()
    x = torch.randn(2, 3, 7, 9)
    cam = _activation_maps(model, x, [1, 2, 4], "cam", ())[0]
    grad = _activation_maps(model, x, [1, 2, 4], "gradcam", ())[0]
    # d(mean-pooled logit)/dA = W / (h w): Grad-CAM = CAM / (h w)
    torch.testing.assert_close(grad * (7 * 9), cam, rtol=1e-4, atol=1e-5)


def test_nwc_clamps_negative_weights():
    model = TinyConvNet()
    x = torch.randn(1, 3, 5, 5)
    got = _activation_maps(model, x, [2], "cam_nwc", ())[0]
    w = model.classifier.weight[1].flatten().clamp(min=0)
    expected = torch.relu(torch.einsum("bchw,c->bhw", model.features(x), w))[:, None]
    torch.testing.assert_close(got, expected)


def _naive_gradcampp(A, G):
    B, C, H, W = A.shape
    out = np.zeros((B, H, W))
    for b in range(B):
        weights = []
        for c in range(C):
            s = sum(A[b, c, i, j] for i in range(H) for j in range(W))
            total = 0.0
            for i in range(H):
                for j in range(W):
                    g = G[b, c, i, j]
                    denom = 2 * g * g + s * g ** 3
                    alpha = g * g / denom if denom != 0 else 0.0
                    total += max(g, 0.0) * alpha
            weights.append(total)
        for i in range(H):
            for j in range(W):
                out[b, i, j] = max(0.0, sum(weights[c] * A[b, c, i, j] for c in range(C)))
    return out


def _naive_layercam(A, G):
    B, C, H, W = A.shape
    out = np.zeros((B, H, W))
    for b in range(B):
        for i in range(H):
            for j in range(W):
                out[b, i, j] = max(0.0, sum(max(G[b, c, i, j], 0.0) * A[b, c, i, j] for c in range(C)))
    return out


def test_gradcampp_and_layercam_against_naive_loops():
    rng = np.random.default_rng(3)
    A = np.abs(rng.normal(size=(2, 3, 4, 5)))
    G = rng.normal(size=(2, 3, 4, 5))
    G[0, 1, 2, 3] = 0.0   # alpha must be 0 where the gradient is 0
    A_t, G_t = torch.tensor(A), torch.tensor(G)
    np.testing.assert_allclose(gradcampp_map(A_t, G_t).numpy(), _naive_gradcampp(A, G), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layercam_map(A_t, G_t).numpy(), _naive_layercam(A, G), rtol=1e-9, atol=1e-12)


def test_all_classes_in_one_pass_equal_one_class_at_a_time():
    model = TinyConvNet(pooling="tap")
    x = torch.randn(2, 3, 6, 6)
    for method in ("gradcam", "gradcampp", "layercam"):
        together = _activation_maps(model, x, [1, 3], method, ())[0]
        alone = torch.cat([_activation_maps(model, x, [c], method, ())[0] for c in (1, 3)], 1)
        torch.testing.assert_close(together, alone)


def test_fullycam_without_extra_levels_is_layercam_and_levels_are_checked():
    model = Classifier("tf_efficientnet_lite0", 3, feature_level=2).eval()
    image = np.random.default_rng(4).integers(0, 256, size=(40, 48, 3)).astype(np.uint8)
    args = (model, image, np.array([1, 2]), [1.0], True, (0.5,) * 3, (0.5,) * 3, "cpu")
    np.testing.assert_allclose(multiscale_cam(*args, method="fullycam", levels=()),
                               multiscale_cam(*args, method="layercam"), atol=1e-5)
    fused = multiscale_cam(*args, method="fullycam", levels=[1])
    assert fused.shape == (2, 40, 48) and np.allclose(fused.reshape(2, -1).max(1), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="beyond the classifier's feature_level 2"):
        multiscale_cam(*args, method="fullycam", levels=[3])


def test_tap_on_a_hand_computed_channel():
    f = torch.tensor([[[[0.0, 0.05, 1.0], [2.0, 0.3, 0.1]]]])   # max 2.0 -> tau 0.2
    # above tau: 1.0, 2.0, 0.3 -> (1.0 + 2.0 + 0.3) / 3 = 1.1
    torch.testing.assert_close(thresholded_average_pool(f), torch.tensor([[1.1]]))
    assert float(thresholded_average_pool(torch.zeros(1, 1, 2, 2))) == 0.0


from pipeline.cams.multiscale import scale_sum  # noqa: E402
from pipeline.data.transforms import rescale_bicubic, resize, to_tensor  # noqa: E402


def naive_pil_bicubic(image, scale):
    """PIL's bicubic resize (a = -0.5) written out: per axis, output pixel o samples around
    centre (o + 0.5) * in / out, the kernel widened by in / out when shrinking (antialiasing),
    taps clipped to the image and the weights renormalised; the horizontal pass first, each
    pass rounded to uint8. Size: round(w * scale) x round(h * scale), as psa."""
    def cubic(t):
        t, a = abs(t), -0.5
        if t < 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        return (((t - 5) * t + 8) * t - 4) * a if t < 2 else 0.0

    def one_axis(x, n_out):                       # x (n_in, ...) -> (n_out, ...)
        n_in = x.shape[0]
        ratio = n_in / n_out
        stretch = max(ratio, 1.0)
        support = 2.0 * stretch
        out = np.zeros((n_out,) + x.shape[1:])
        for o in range(n_out):
            centre = (o + 0.5) * ratio
            lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
            taps = [cubic((i - centre + 0.5) / stretch) for i in range(lo, hi)]
            out[o] = sum(t * x[i] for t, i in zip(taps, range(lo, hi))) / sum(taps)
        return np.clip(np.floor(out + 0.5), 0, 255)

    h, w = image.shape[:2]
    wide = one_axis(image.astype(np.float64).transpose(1, 0, 2), round(w * scale)).transpose(1, 0, 2)
    return one_axis(wide, round(h * scale)).astype(np.uint8)


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.5, 2.0])
def test_cam_scales_rescale_the_image_bicubically_as_psa(scale):
    image = np.random.default_rng(5).integers(0, 256, size=(11, 14, 3)).astype(np.uint8)
    expected = naive_pil_bicubic(image, scale)
    got = rescale_bicubic(image, scale)
    assert got.shape == expected.shape == (round(11 * scale), round(14 * scale), 3)
    # PIL computes in fixed point: a grey level off by one where a value lies at .5
    assert np.abs(got.astype(int) - expected).max() <= 1
    if scale != 1.0:   # cv2's bilinear (no antialiasing) is far off, so the check above can fail
        assert np.abs(resize(image, scale).astype(int) - expected).max() > 20
    # and the CAM path feeds the network exactly that image, and its mirror image
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    seen = []

    def record(x):
        seen.append(x)
        return [x[:, :1]]

    scale_sum(image, 1, [scale], True, mean, std, "cpu", record)
    want = to_tensor(expected, mean, std)
    assert torch.allclose(seen[0][0], want, atol=1.01 / 255 / 0.2) and torch.equal(seen[0][1], seen[0][0].flip(-1))


def test_the_method_registry_is_the_one_list_of_cam_methods():
    """Dispatch, schema enum, stage choices and the Snakefile's wildcard all come from the registry."""
    from pathlib import Path

    from pipeline.cams.extract import GRADIENT_MAPS, WEIGHT_MAPS
    from pipeline.cams.vit import VIT_MAPS, VIT_NORMALISE
    from pipeline.core import config as cfgmod
    from pipeline.core.cam_methods import CAM_METHODS, CNN_METHODS, VIT_METHODS

    assert sorted([*WEIGHT_MAPS, *GRADIENT_MAPS]) == sorted(CNN_METHODS)
    assert sorted(VIT_MAPS) == sorted(VIT_NORMALISE) == sorted(VIT_METHODS)
    assert cfgmod.schema()["$defs"]["cams"]["properties"]["methods"]["items"]["enum"] == list(CAM_METHODS)
    root = Path(__file__).resolve().parents[1]
    workflow = "\n".join(p.read_text() for p in [root / "Snakefile", *sorted((root / "rules").glob("*.smk"))])
    assert 'method="|".join(CAM_METHODS)' in workflow
    assert not [m for m in CAM_METHODS if f'"{m}"' in workflow], "a method name written out in the workflow"
