import numpy as np
import pytest
import torch

from pipeline.models.vit_hybrid import ViTHybridClassifier
from pipeline.vit_cams import attnfusion_map, getam_map, vit_multiscale_cam


def tiny_model(depth=2, start_block=1):
    torch.manual_seed(0)
    return ViTHybridClassifier("tf_efficientnet_lite0", 3, embed_dim=16, depth=depth, heads=2,
                               start_block=start_block, weights="none", feature_level=3, pos_grid=4).eval()


def test_getam_map_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    B, H, depth, start, (h, w) = 2, 3, 4, 2, (2, 3)
    N = 1 + h * w
    attns = [torch.from_numpy(rng.random((B, H, N, N))) for _ in range(depth)]
    grads = [torch.from_numpy(rng.normal(size=(B, H, N, N))) for _ in range(depth)]
    expected = np.zeros((B, h, w))
    for b in range(B):
        for y in range(h):
            for x in range(w):
                j = 1 + y * w + x
                for blk in range(start, depth):
                    A, G = attns[blk].numpy(), grads[blk].numpy()
                    ga = sum(max(0.0, G[b, hd, 0, j] * A[b, hd, 0, j]) for hd in range(H)) / H
                    g = sum(max(0.0, G[b, hd, 0, j]) for hd in range(H)) / H
                    expected[b, y, x] += ga * g
    got = getam_map(attns, grads, start, (h, w)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # blocks below start_block do not count: changing them changes nothing
    attns[0] = attns[0] * 7
    grads[1] = -grads[1]
    np.testing.assert_allclose(getam_map(attns, grads, start, (h, w)).numpy(), expected, rtol=1e-10)


def test_getam_on_a_score_linear_in_the_attention():
    # one block, one head, 2x2 grid; score = sum(M * A) so dscore/dA = M
    A = torch.tensor([[[[0.0, 0.2, 0.1, 0.3, 0.4]] + [[0.2] * 5] * 4]], requires_grad=True)
    M = torch.zeros(1, 1, 5, 5)
    M[0, 0, 0] = torch.tensor([9.0, 2.0, -1.0, 4.0, 0.5])
    M[0, 0, 1:] = 3.0                                    # patch rows do not reach the map
    grad, = torch.autograd.grad((M * A).sum(), [A])
    # row 0, cols 1..4: relu(M*A) = [0.4, 0, 1.2, 0.2], relu(M) = [2, 0, 4, 0.5]
    expected = torch.tensor([[[0.8, 0.0], [4.8, 0.1]]])
    torch.testing.assert_close(getam_map([A.detach()], [grad], 0, (2, 2)), expected)


def test_hooks_capture_softmax_attention_and_its_gradient():
    model = tiny_model()
    x = torch.randn(1, 3, 64, 80)
    logits = model(x)
    attns = model.attentions
    assert len(attns) == 2 and attns[0].shape == (1, 2, 21, 21)         # grid 4x5 + class token
    for A in attns:
        torch.testing.assert_close(A.sum(-1), torch.ones(A.shape[:-1]))

    # block 0's attention recomputed by hand from its qkv weights
    blk = model.blocks[0]
    tokens, grid = model.embed(x)
    qkv = blk.attn.qkv(blk.norm1(tokens)).reshape(1, 21, 3, 2, 8).permute(2, 0, 3, 1, 4)
    q, k, v = qkv
    A0 = torch.softmax(q @ k.transpose(-2, -1) * 8 ** -0.5, -1)
    torch.testing.assert_close(attns[0], A0)

    # gradient of a class score w.r.t. block 0's attention, through a hand-written block 0
    A0 = A0.detach().requires_grad_()
    out = (A0 @ v.detach()).transpose(1, 2).reshape(1, 21, 16)
    t = tokens.detach() + blk.attn.proj(out)
    t = t + blk.mlp(blk.norm2(t))
    t = model.norm(model.blocks[1](t))
    score = sum(model.heads(t))[0, 2]
    expected, = torch.autograd.grad(score, [A0])
    captured, = torch.autograd.grad(logits[0, 2], [attns[0]])
    torch.testing.assert_close(captured, expected)
    # and retain_grad exposes the same gradient after a plain backward
    model.zero_grad()
    logits = model(x)
    logits[0, 2].backward()
    torch.testing.assert_close(model.attentions[0].grad, expected)


def test_attnfusion_with_identity_patch_attention():
    B, K, h, w = 1, 2, 2, 2
    A = torch.zeros(B, 1, 5, 5)
    A[0, 0, 0] = torch.tensor([0.2, 0.1, 0.3, 0.4, 0.0])
    A[0, 0, 1:, 1:] = torch.eye(4)
    patch_cam = torch.arange(8.0).reshape(B, K, h, w)
    expected = torch.tensor([0.1, 0.3, 0.4, 0.0]).reshape(1, 1, 2, 2) * patch_cam
    # an older block with other attention is outside last_blocks=1
    other = torch.full((B, 1, 5, 5), 0.2)
    torch.testing.assert_close(attnfusion_map([other, A], patch_cam, 1), expected)
    # P @ map: with P averaging patch 0 over patches 0 and 1, patch 0 gets their mean
    A[0, 0, 1, 1:] = torch.tensor([0.5, 0.5, 0.0, 0.0])
    got = attnfusion_map([A], patch_cam, 1)
    torch.testing.assert_close(got[0, :, 0, 0], (expected[0, :, 0, 0] + expected[0, :, 0, 1]) / 2)


@pytest.mark.parametrize("method", ["getam", "attnfusion"])
def test_vit_multiscale_cam_shape_range_and_unit_max(method):
    model = tiny_model(depth=3, start_block=1)
    image = np.random.default_rng(3).integers(0, 256, size=(70, 90, 3)).astype(np.uint8)
    maps = vit_multiscale_cam(model, image, np.array([1, 3]), [1.0, 0.5], True, (0.5,) * 3, (0.5,) * 3,
                              "cpu", method)
    assert maps.shape == (2, 70, 90) and maps.dtype == np.float32
    assert np.all(maps >= 0) and np.all(maps <= 1 + 1e-6)
    np.testing.assert_allclose(maps.reshape(2, -1).max(1), 1.0, atol=1e-5)
    assert vit_multiscale_cam(model, image, np.array([], int), [1.0], True, (0.5,) * 3, (0.5,) * 3,
                              "cpu", method).shape == (0, 70, 90)


def test_param_groups_and_meta():
    model = tiny_model()
    groups = model.param_groups()
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert model.meta["kind"] == "vit_hybrid" and model.meta["start_block"] == 1
    with pytest.raises(ValueError, match="start_block"):
        ViTHybridClassifier("tf_efficientnet_lite0", 3, depth=2, start_block=2)


def test_plain_vit_gives_maps_and_roundtrips(tmp_path):
    from pipeline.models.classifier import build_classifier, load_classifier, save_checkpoint
    from pipeline.models.vit_plain import PlainViTClassifier

    cfg = {"kind": "vit", "backbone": "deit_tiny_patch16_224", "start_block": 9}
    model = build_classifier(cfg, 4).eval()
    assert isinstance(model, PlainViTClassifier) and model.meta["depth"] == 12
    image = np.random.default_rng(5).integers(0, 256, size=(50, 70, 3)).astype(np.uint8)
    for method in ("getam", "attnfusion"):
        maps = vit_multiscale_cam(model, image, np.array([2, 4]), [1.0], True, (0.5,) * 3, (0.5,) * 3, "cpu", method)
        assert maps.shape == (2, 50, 70)
        np.testing.assert_allclose(maps.reshape(2, -1).max(1), 1.0, atol=1e-5)
    assert len(model.attentions) == 12 and model.attentions[0].shape[-1] == 1 + 4 * 5  # 50x70 padded to 64x80
    path = tmp_path / "vit.pt"
    save_checkpoint(model, path, classes=["background", "a", "b", "c", "d"], mean=[0.5] * 3, std=[0.5] * 3)
    loaded, meta = load_classifier(path, "deit_tiny_patch16_224")
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="two prefix tokens"):
        PlainViTClassifier("deit_tiny_distilled_patch16_224", 4)
