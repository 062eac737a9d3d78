"""AffinityNet and the random walk against hand-computed cases and a dense reference."""
import math

import numpy as np
import pytest
import torch

from pipeline.affinity import labels as al
from pipeline.affinity.labels import IGNORE, confident_label, label_grid, pair_classes
from pipeline.affinity.propagate import propagate_image
from pipeline.affinity.random_walk import (block_affinity, disk_offsets, half_offsets, neighbour_weights, pair_affinity,
                                           random_walk, transition_matrix)
from pipeline.affinity.train import EPS, affinity_loss
from pipeline.data.transforms import random_scale_flip_crop
from pipeline.models.affinity_net import AffinityNet, load_affinity_net, save_affinity_net


def dense_transition(features: torch.Tensor, radius: int, beta: float) -> torch.Tensor:
    """T = D^-1 A^beta built as a full N x N float64 matrix, pixel by pixel."""
    d, h, w = features.shape
    f = features.double().reshape(d, -1)
    n = h * w
    A = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            (yi, xi), (yj, xj) = divmod(i, w), divmod(j, w)
            if (yi - yj) ** 2 + (xi - xj) ** 2 < radius ** 2:
                A[i, j] = torch.exp(-(f[:, i] - f[:, j]).abs().mean()) ** beta
    return A / A.sum(1, keepdim=True)


def dense_walk(features: torch.Tensor, radius: int, beta: float, maps: torch.Tensor, steps: int):
    """T^steps v with the dense T of dense_transition."""
    T = dense_transition(features, radius, beta)
    v = maps.double().reshape(len(maps), -1).T
    return (torch.linalg.matrix_power(T, steps) @ v).T.reshape(maps.shape)


# the last two span several blocks of rows (ROW_BLOCK pixels), the last one row a block
@pytest.mark.parametrize("h, w, radius", [(6, 9, 5), (11, 7, 3), (12, 90, 3), (2, 520, 2)])
def test_sparse_matrix_is_the_dense_transition_matrix(h, w, radius):
    torch.manual_seed(h * w)
    features = torch.rand(16, h, w, dtype=torch.float64) * 3
    T = transition_matrix(features, radius, beta=8)
    assert T.layout == torch.sparse_csr and T.dtype == torch.float64
    assert torch.allclose(T.to_dense(), dense_transition(features, radius, 8), atol=1e-12, rtol=0)
    # one stored entry per in-grid neighbour: the disk clipped by the grid, never more
    # (each offset (dy, dx) of the disk links the (h - |dy|)(w - |dx|) pixels whose neighbour is in the grid)
    r = radius - 1
    assert T.values().numel() == sum(max(h - abs(dy), 0) * max(w - abs(dx), 0) for dy in range(-r, r + 1)
                                     for dx in range(-r, r + 1) if dy * dy + dx * dx < radius ** 2)


@pytest.mark.parametrize("h, w, radius", [(6, 9, 5), (11, 7, 3)])
def test_sparse_walk_equals_the_dense_matrix_walk(h, w, radius):
    torch.manual_seed(h * w)
    features = torch.rand(16, h, w, dtype=torch.float64) * 3
    maps = torch.rand(3, h, w, dtype=torch.float64)
    T = transition_matrix(features, radius, beta=8)
    reference = dense_walk(features, radius, 8, maps, 2 ** 8)
    assert torch.allclose(random_walk(maps, T, steps=2 ** 8), reference, atol=1e-10, rtol=0)
    # and after a few steps, before everything has mixed
    assert torch.allclose(random_walk(maps, T, 3), dense_walk(features, radius, 8, maps, 3), atol=1e-10, rtol=0)
    # float32, as propagate_image runs it: exp(-beta mean|f_i - f_j|) rounds each entry of T
    # to ~|exponent| x 6e-8 relative (here up to ~20 x), and 256 steps carry that along
    T32 = transition_matrix(features.float(), radius, beta=8)
    walked = random_walk(maps.float(), T32, steps=2 ** 8)
    assert walked.dtype == torch.float32
    assert torch.allclose(walked.double(), reference, atol=5e-5, rtol=0)
    assert torch.equal(walked.argmax(0), reference.argmax(0))


def test_float32_walk_keeps_the_float64_argmax_on_a_propagate_sized_grid():
    # 256 steps on a 40 x 48 grid of smooth features, 3 maps: float32 rounding must not move
    # the maps by more than float32 tolerance nor change the label of any pixel
    g = torch.Generator().manual_seed(3)
    coarse = torch.rand(1, 32, 5, 6, generator=g, dtype=torch.float64)
    features = torch.nn.functional.interpolate(coarse, size=(40, 48), mode="bilinear")[0] * 4
    maps = torch.rand(3, 40, 48, generator=g, dtype=torch.float64)
    reference = random_walk(maps, transition_matrix(features, 5, 8), 256)
    walked = random_walk(maps.float(), transition_matrix(features.float(), 5, 8), 256)
    assert (walked.double() - reference).abs().max() < 1e-5
    assert torch.equal(walked.argmax(0), reference.argmax(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_walk_on_cuda_equals_the_walk_on_cpu():
    torch.manual_seed(0)
    features, maps = torch.rand(16, 20, 24) * 3, torch.rand(3, 20, 24)
    on_cpu = random_walk(maps, transition_matrix(features, 5, 8), 64)
    on_gpu = random_walk(maps.cuda(), transition_matrix(features.cuda(), 5, 8), 64)
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-5, rtol=0)


def test_block_affinity_is_the_pair_affinity_whatever_the_blocks():
    torch.manual_seed(1)
    f1, f2 = torch.rand(37, 5, 6, dtype=torch.float64), torch.rand(37, 5, 6, dtype=torch.float64)
    for block in (1, 16, 37, 64):   # blocks that split the channels unevenly, or not at all
        assert torch.allclose(block_affinity(f1, f2, block), pair_affinity(f1, f2), atol=1e-14, rtol=0)


def test_offsets_are_the_disk_and_its_half():
    disk = disk_offsets(5)
    assert len(disk) == 69 and (0, 0) in disk           # 9 + 2 * (9 + 9 + 7 + 5) lattice points
    assert all(dy * dy + dx * dx < 25 for dy, dx in disk) and (0, 5) not in disk and (3, 4) not in disk
    assert disk == sorted(disk)                         # row-major: CSR columns ascend in each row
    half = half_offsets(5)
    assert len(half) == 34 and set(half) | {(-dy, -dx) for dy, dx in half} | {(0, 0)} == set(disk)


def test_walk_keeps_a_constant_map_and_is_blocked_by_zero_affinity():
    # two halves whose features differ by 100: a^8 = exp(-800) = 0 across the edge
    features = torch.zeros(1, 4, 8)
    features[:, :, 4:] = 100.0
    _, weights = neighbour_weights(features, 3, beta=8)
    assert torch.allclose(weights.sum(-1), torch.ones(4, 8))
    T = transition_matrix(features, 3, beta=8)
    assert torch.allclose(random_walk(torch.full((1, 4, 8), 0.7), T, 50), torch.tensor(0.7))
    left = torch.zeros(1, 4, 8)
    left[0, 1, 1] = 1.0
    walked = random_walk(left, T, 64)
    assert walked[0, :, 4:].abs().max() == 0
    assert torch.allclose(walked[0, :, :4], torch.full((4, 4), walked[0, :, :4].mean()), atol=1e-3)


class PooledColour(torch.nn.Module):
    """A stand-in AffinityNet: features = 3 x the image average-pooled by the stride."""
    stride = 4

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, self.stride) * 3


def naive_propagate(image, cams, mean, std, cfg, bg_pad):
    """psa's infer_aff step by step: pad the image (zeros after normalising) and the maps
    [(1 - max CAM)^alpha, CAMs] to a multiple of the stride (every channel with 0; with bg_pad=1,
    the background channel with 1, a padding that differs from psa), average-pool each
    stride x stride block by hand, walk with the dense matrix, upsample bilinearly, crop."""
    s, (h, w) = PooledColour.stride, image.shape[:2]
    H, W = -(-h // s) * s, -(-w // s) * s
    x = np.zeros((3, H, W))
    x[:, :h, :w] = ((image / 255.0 - mean) / std).transpose(2, 0, 1)
    features = PooledColour()(torch.from_numpy(x)[None])[0]
    maps = np.zeros((1 + len(cams), H, W))
    maps[0] = bg_pad
    maps[0, :h, :w] = (1 - cams.max(0)) ** cfg["alpha"]
    maps[1:, :h, :w] = cams
    grid = np.zeros((len(maps), H // s, W // s))
    for gy in range(H // s):
        for gx in range(W // s):
            grid[:, gy, gx] = maps[:, gy * s:(gy + 1) * s, gx * s:(gx + 1) * s].mean((1, 2))
    walked = dense_walk(features, cfg["radius"], cfg["beta"], torch.from_numpy(grid), 2 ** cfg["logt"])
    up = torch.nn.functional.interpolate(walked[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    return up[:, :h, :w].numpy()


def test_propagation_pads_every_channel_with_zero_as_psa():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (10, 13, 3)).astype(np.uint8)      # 2 x 3 pixels of padding
    cams = rng.random((2, 10, 13)).astype(np.float32)
    mean, std = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])
    cfg = {"radius": 3, "beta": 8, "logt": 3, "alpha": 4}
    got = propagate_image(PooledColour(), image, cams, mean.tolist(), std.tolist(), "cpu", cfg)
    assert got.shape == (3, 10, 13)
    np.testing.assert_allclose(got, naive_propagate(image, cams, mean, std, cfg, bg_pad=0.0), atol=1e-5)
    # a background padded with 1 is measurably different here, so the check above can fail
    assert np.abs(got - naive_propagate(image, cams, mean, std, cfg, bg_pad=1.0)).max() > 1e-2


def _identity_crf(image, probs, params=None):
    return probs / probs.sum(0, keepdims=True)


def test_affinity_label_rules_on_a_handmade_cam(monkeypatch):
    # the CRF left out, the rules by hand: low-alpha background (1-m)^4, high-alpha (1-m)^32
    monkeypatch.setattr(al, "crf_softmax", _identity_crf)
    cams = np.zeros((2, 1, 6), np.float32)
    cams[0, 0] = [0.9, 0.3, 0.1, 0.01, 0.0, 0.5]
    cams[1, 0] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.8]
    # m = 0.9: (0.1)^4 = 1e-4 < 0.9 -> class; m = 0.3: 0.7^4 = 0.24 < 0.3 -> class;
    # m = 0.1: low 0.9^4 = 0.66 > 0.1 (bg), high 0.9^32 = 0.034 < 0.1 (fg) -> ignored;
    # m = 0.01: high 0.99^32 = 0.72 > 0.01 -> background; m = 0 -> background;
    # (0.5, 0.8): the stronger class, id 15
    label = confident_label(np.zeros((1, 6, 3), np.uint8), cams, [4, 15], 4, 32, {})
    assert label.tolist() == [[4, 4, IGNORE, 0, 0, 15]]


def test_affinity_labels_with_the_real_crf():
    # a bright square with a strong CAM on a dark image: the square is the class, the far
    # corners background, the weak ring around the CAM neither
    image = np.full((40, 40, 3), 20, np.uint8)
    image[12:28, 12:28] = 230
    yy, xx = np.mgrid[:40, :40]
    cam = np.clip(1 - np.hypot(yy - 19.5, xx - 19.5) / 22, 0, 1).astype(np.float32)[None]
    label = confident_label(image, cam, [3], 4, 32, {})
    assert (label[14:26, 14:26] == 3).all()
    assert (label[:3, :3] == 0).all() and (label[-3:, -3:] == 0).all()
    assert set(np.unique(label)) <= {0, 3, IGNORE} and (label == IGNORE).any()


def test_label_grid_and_pair_classes_by_hand():
    label = np.arange(30, dtype=np.uint8).reshape(5, 6)
    # stride 4: cell centres at 2 and (clipped) 4 / 5
    assert label_grid(label, 4).tolist() == [[14, 17], [26, 29]]
    l1 = np.array([0, 0, 3, 3, 255, 2])
    l2 = np.array([0, 3, 3, 0, 0, 255])
    bg, fg, neg = pair_classes(l1, l2)
    assert bg.tolist() == [1, 0, 0, 0, 0, 0] and fg.tolist() == [0, 0, 1, 0, 0, 0]
    assert neg.tolist() == [0, 1, 0, 1, 0, 0]


def test_affinity_loss_equals_the_hand_computed_value():
    # one row of four pixels, radius 2: the pairs (0,1), (1,2), (2,3)
    f = torch.tensor([[[0.0, 0.2, 1.0, 5.0]], [[0.0, 0.4, 2.0, 5.0]]])[None]   # (1, 2, 1, 4)
    labels = torch.tensor([[[0, 0, 1, 255]]])
    # (0,1): background positive, mean|diff| = 0.3; (1,2): negative, mean|diff| = 1.2; (2,3) ignored
    expected = -math.log(math.exp(-0.3) + EPS) / 4 + 0 / 4 - math.log(1 + EPS - math.exp(-1.2)) / 2
    assert affinity_loss(f, labels, 2).item() == pytest.approx(expected, rel=1e-6)

    # two rows: a foreground pair too; radius 2 adds the vertical and diagonal pairs
    f = torch.tensor([[[0.0, 1.0], [0.0, 3.0]]])[None]       # (1, 1, 2, 2)
    labels = torch.tensor([[[2, 0], [2, 255]]])
    # pairs: (0,0)-(0,1) neg |1|; (0,0)-(1,0) fg |0|; (0,0)-(1,1) ignored; (0,1)-(1,0) neg |1|;
    # (0,1)-(1,1) ignored; (1,0)-(1,1) ignored
    expected = 0 / 4 - math.log(1 + EPS) / 4 - math.log(1 + EPS - math.exp(-1.0)) / 2
    assert affinity_loss(f, labels, 2).item() == pytest.approx(expected, rel=1e-6)


def test_joint_crop_keeps_image_and_label_aligned():
    rng_image = np.random.default_rng(3)
    image = rng_image.integers(0, 255, (30, 50, 3), dtype=np.uint8)
    label = (image[:, :, 0] // 64).astype(np.uint8)   # the label is a function of the colour
    for seed in range(10):
        crop, crop_label = random_scale_flip_crop(image, np.random.default_rng(seed), (1.0, 1.0), 40, (0, 0, 0),
                                                  label=label)
        known = crop_label != 255
        assert (crop_label[known] == crop[:, :, 0][known] // 64).all()
        assert (crop[~known] == 0).all()
        # the image alone gets exactly the same transform (the classifier's augmentation)
        alone = random_scale_flip_crop(image, np.random.default_rng(seed), (1.0, 1.0), 40, (0, 0, 0))
        assert np.array_equal(alone, crop)


def test_affinity_net_grid_and_checkpoint(tmp_path):
    net = AffinityNet("tf_efficientnet_lite0", [1, 2], [8, 16], stride=4)
    assert net(torch.rand(1, 3, 37, 50)).shape == (1, 24, 10, 13)
    save_affinity_net(net, tmp_path / "aff.pt", mean=[0.5] * 3, std=[0.5] * 3, radius=5)
    loaded, meta = load_affinity_net(tmp_path / "aff.pt", "tf_efficientnet_lite0")
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded.eval()(x), net.eval()(x)) and meta["levels"] == [1, 2]
    with pytest.raises(ValueError, match="backbone 'tf_efficientnet_lite0'.*'resnet50'"):
        load_affinity_net(tmp_path / "aff.pt", "resnet50")
    torch.save({"state_dict": {}, "meta": {"backbone": "x"}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an AffinityNet checkpoint"):
        load_affinity_net(tmp_path / "other.pt")
