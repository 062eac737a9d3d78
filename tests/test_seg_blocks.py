"""Segmentation building blocks against naive implementations and hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from pipeline.models.seg_heads import ChannelAttention, PositionAttention, ScaleAttention
from pipeline.segmentation.loss import clipped_cross_entropy


def test_position_attention_matches_a_naive_loop():
    torch.manual_seed(0)
    pam = PositionAttention(16)
    pam.gamma.data.fill_(0.7)
    x = torch.randn(1, 16, 3, 4)
    with torch.no_grad():
        out = pam(x)
        q, k, v = (conv(x)[0].flatten(1).double() for conv in (pam.query, pam.key, pam.value))
    xs = x[0].flatten(1).double()
    n = xs.shape[1]
    expected = torch.zeros_like(xs)
    for i in range(n):
        energies = [float(q[:, i] @ k[:, j]) for j in range(n)]
        weights = np.exp(np.array(energies) - max(energies))
        weights /= weights.sum()
        expected[:, i] = 0.7 * sum(weights[j] * v[:, j] for j in range(n)) + xs[:, i]
    assert torch.allclose(out[0].flatten(1).double(), expected, atol=1e-5)


def test_channel_attention_matches_a_naive_loop():
    torch.manual_seed(1)
    cam = ChannelAttention()
    cam.gamma.data.fill_(-0.4)
    x = torch.randn(1, 5, 3, 3)
    with torch.no_grad():
        out = cam(x)
    xs = x[0].flatten(1).double()
    expected = torch.zeros_like(xs)
    for c in range(5):
        energy = np.array([float(xs[c] @ xs[d]) for d in range(5)])
        energy = energy.max() - energy
        weights = np.exp(energy - energy.max())
        weights /= weights.sum()
        expected[c] = -0.4 * sum(weights[d] * xs[d] for d in range(5)) + xs[c]
    assert torch.allclose(out[0].flatten(1).double(), expected, atol=1e-5)


def test_attention_blocks_start_as_the_identity():
    x = torch.randn(2, 8, 5, 6)
    assert torch.equal(PositionAttention(8)(x), x) and torch.equal(ChannelAttention()(x), x)


def test_scale_attention_weights_sum_to_one_per_pixel():
    torch.manual_seed(2)
    attention = ScaleAttention(6, 3, hidden=16)
    weights = attention([torch.randn(2, 6, 7, 9) for _ in range(3)])
    assert weights.shape == (2, 3, 7, 9) and (weights > 0).all()
    assert torch.allclose(weights.sum(1), torch.ones(2, 7, 9), atol=1e-6)
    score = torch.randn(2, 4, 7, 9)
    assert torch.allclose(ScaleAttention.fuse([score, score, score], weights), score, atol=1e-6)


def logits_for_losses(losses):
    """Two-class logits [0, a] with target 0 give cross-entropy log(1 + e^a) = the wanted loss."""
    a = torch.tensor([math.log(math.expm1(v)) for v in losses])
    return torch.stack([torch.zeros_like(a), a])[None, :, None, :]    # (1, 2, 1, W)


def test_clipped_loss_equals_the_hand_computed_case():
    logits = logits_for_losses([0.1, 0.2, 3.0, 5.0])
    target = torch.tensor([[[0, 0, 0, 255]]])
    # pixel losses 0.1, 0.2, 3.0 (the 4th ignored); global mean 1.1; 3-wide local means over
    # labelled pixels: 0.15, 1.1, 1.6; bounds max(local, 1.1) = 1.1, 1.1, 1.6
    # -> clipped 0.1, 0.2, 1.6 -> mean 1.9 / 3
    assert clipped_cross_entropy(logits, target, start=2.0, window=3).item() == pytest.approx(1.9 / 3, rel=1e-5)
    # above the start value: plain cross-entropy
    assert clipped_cross_entropy(logits, target, start=1.0, window=3).item() == pytest.approx(1.1, rel=1e-5)


@pytest.mark.parametrize("head, stride", [("aspp", 16), ("danet", 8)])
def test_segmentation_net_gives_logits_at_the_input_size(head, stride):
    from pipeline.models.segnet import SegmentationNet
    net = SegmentationNet("tf_efficientnet_lite0", 6, head, stride, channels=32).eval()
    out = net(torch.rand(2, 3, 65, 90))
    assert out.shape == (2, 6, 65, 90) and torch.isfinite(out).all()
    groups = net.param_groups()
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    with pytest.raises(ValueError, match="head 'fcn' is unknown"):
        SegmentationNet("tf_efficientnet_lite0", 6, "fcn")
