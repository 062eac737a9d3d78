import math

import numpy as np
import pytest
import torch

from conftest import DEMO_CLASSES
from pipeline.diagnostics.attnfusion import diagnose, fusion_variants, patch_attention_stats
from pipeline.cams.multiscale import scale_sum
from pipeline.cams.vit import attnfusion_map, getam_map, vit_multiscale_cam
from pipeline.maps.metrics import ConfusionAccumulator, scores
from pipeline.models.vit_hybrid import ViTHybridClassifier


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


def naive_mctformer_fusion(attns, cam, cls_blocks, refine_blocks=None):
    """MCTformer's published inference, entry by entry: heads averaged per block; the class
    row summed over the last cls_blocks blocks times the patch CAM; then each patch i gathers
    sum_j P[i, j] * fused[j], with P the patch-to-patch attention summed over every block
    (or over refine_blocks)."""
    depth, (B, H, N, _), K = len(attns), attns[0].shape, cam.shape[1]
    refine_blocks = range(depth) if refine_blocks is None else refine_blocks
    out = np.zeros((B, K, N - 1))
    for b in range(B):
        for k in range(K):
            for i in range(N - 1):
                for j in range(N - 1):
                    p = sum(attns[blk][b, hd, 1 + i, 1 + j] for blk in refine_blocks for hd in range(H)) / H
                    c = sum(attns[blk][b, hd, 0, 1 + j]
                            for blk in range(depth - cls_blocks, depth) for hd in range(H)) / H
                    out[b, k, i] += p * c * cam[b, k, j]
    return out


def random_attention(seed: int, B: int, H: int, depth: int, h: int, w: int, K: int):
    """depth blocks of softmax attention (B, H, 1 + h w, 1 + h w) and a patch CAM (B, K, h, w)."""
    rng = np.random.default_rng(seed)
    N = 1 + h * w
    attns = [torch.softmax(torch.from_numpy(rng.normal(size=(B, H, N, N))), -1) for _ in range(depth)]
    return attns, torch.from_numpy(rng.random((B, K, h, w)))


def test_attnfusion_matches_a_naive_mctformer_fusion():
    B, K = 2, 2
    attns, cam = random_attention(1, B, 3, 4, 2, 3, K)
    for cls_blocks in (1, 3):
        expected = naive_mctformer_fusion([a.numpy() for a in attns], cam.reshape(B, K, -1).numpy(), cls_blocks)
        got = attnfusion_map(attns, cam, cls_blocks)
        np.testing.assert_allclose(got.reshape(B, K, -1).numpy(), expected, rtol=1e-10)


def test_attnfusion_by_hand():
    # two patches (grid 1x2), one head, two blocks; patch CAM [2, 4]
    A0 = torch.tensor([[0.5, 0.25, 0.25],      # class row
                       [0.0, 1.0, 0.0],        # block 0: each patch attends to itself only
                       [0.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    A1 = torch.tensor([[0.2, 0.2, 0.6],
                       [0.1, 0.45, 0.45],
                       [0.0, 0.5, 0.5]]).view(1, 1, 3, 3)
    cam = torch.tensor([2.0, 4.0]).view(1, 1, 1, 2)
    # class attention of the last block [0.2, 0.6] -> fused [0.4, 2.4]; P = A0 + A1 on the
    # patches = [[1.45, 0.45], [0.5, 1.5]] -> [1.45*0.4 + 0.45*2.4, 0.5*0.4 + 1.5*2.4]
    torch.testing.assert_close(attnfusion_map([A0, A1], cam, 1), torch.tensor([[[[1.66, 3.8]]]]))
    # both blocks' class rows: [0.45, 0.85] -> fused [0.9, 3.4]
    torch.testing.assert_close(attnfusion_map([A0, A1], cam, 2), torch.tensor([[[[2.835, 5.55]]]]))


def test_fusion_variants_against_the_naive_fusion():
    B, K = 1, 2
    attns, cam = random_attention(4, B, 2, 3, 2, 2, K)
    got = fusion_variants(attns, cam, 2)
    A = [a.numpy() for a in attns]
    flat = cam.reshape(B, K, -1).numpy()
    cls = sum(a.mean(1)[:, 0, 1:] for a in A[-2:])                      # (B, n)
    np.testing.assert_allclose(got["unrefined"].reshape(B, K, -1).numpy(), cls[:, None] * flat, rtol=1e-10)
    np.testing.assert_allclose(got["refined, all blocks"].reshape(B, K, -1).numpy(),
                               naive_mctformer_fusion(A, flat, 2), rtol=1e-10)
    for b in range(len(attns)):
        np.testing.assert_allclose(got[f"refined, block {b}"].reshape(B, K, -1).numpy(),
                                   naive_mctformer_fusion(A, flat, 2, [b]), rtol=1e-10)


def test_patch_attention_stats_by_hand():
    def block(patch_rows):   # one head; the class column takes 0.2 of every row, renormalised away
        n = len(patch_rows)
        A = torch.zeros(1, 1, n + 1, n + 1, dtype=torch.float64)
        A[0, 0, 0] = 1.0 / (n + 1)
        A[0, 0, 1:, 0] = 0.2
        A[0, 0, 1:, 1:] = 0.8 * torch.tensor(patch_rows, dtype=torch.float64)
        return A
    # each patch attends to itself: entropy 0; every row is 3/4 (total variation) from the mean row
    stats = patch_attention_stats(block(np.eye(4).tolist()))
    assert stats["entropy"] == pytest.approx(0.0, abs=1e-9) and stats["row_spread"] == pytest.approx(0.75)
    # every patch attends alike: no spread, entropy of [0.1, 0.2, 0.3, 0.4] over log 4
    row = [0.1, 0.2, 0.3, 0.4]
    stats = patch_attention_stats(block([row] * 4))
    assert stats["row_spread"] == pytest.approx(0.0, abs=1e-12)
    assert stats["entropy"] == pytest.approx(-sum(p * math.log(p) for p in row) / math.log(4))
    assert patch_attention_stats(block([[0.25] * 4] * 4))["entropy"] == pytest.approx(1.0)


def test_diagnose_runs_the_extraction_protocol(tiny_voc):
    from pipeline.data.voc import VOCDataset
    from pipeline.cams.seeds import seed_label

    torch.manual_seed(0)
    classes = DEMO_CLASSES
    model = ViTHybridClassifier("tf_efficientnet_lite0", len(classes) - 1, embed_dim=16, depth=2, heads=2, start_block=1,
                                weights="none", feature_level=3, pos_grid=4).eval()
    meta = {**model.meta, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    voc = VOCDataset(tiny_voc, classes, "train")
    voc = voc.subset(voc.ids[:2])
    result = diagnose(model, meta, voc, [1.0, 0.5], True, [0.2, 0.5])
    assert result["images"] == 2 and len(result["blocks"]) == 2
    assert set(result["curves"]) == {"unrefined", "refined, all blocks", "refined, block 0", "refined, block 1"}
    r = result["refined_vs_unrefined"]
    assert r["class_maps"] == sum(len(voc.image_labels(i)) for i in voc.ids) and -1 <= r["mean_r"] <= 1
    # the method's curve is the one its extracted maps give
    for row in result["curves"]["refined, all blocks"]:
        acc = ConfusionAccumulator(len(classes))
        for image_id in voc.ids:
            labels = voc.image_labels(image_id)
            maps = vit_multiscale_cam(model, voc.load_image(image_id), labels, [1.0, 0.5], True, (0.5,) * 3,
                                      (0.5,) * 3, "cpu", "attnfusion")
            acc.add(voc.load_mask(image_id), seed_label(maps, labels, row["threshold"]))
        assert row["miou"] == pytest.approx(scores(acc.matrix, classes)["miou"])


def test_scale_sum_minmax_by_hand():
    image = np.zeros((2, 2, 3), np.uint8)
    raw = torch.tensor([[[2.0, 3.0], [4.0, 6.0]], [[5.0, 5.0], [5.0, 5.0]]])
    maps = lambda x: [raw[None]]  # noqa: E731  (grid = image: the upsampling is the identity)
    args = (image, 2, [1.0], False, (0.5,) * 3, (0.5,) * 3, "cpu", maps)
    # (x - min) / (max - min); a constant map carries no location: 0
    np.testing.assert_allclose(scale_sum(*args, normalise="minmax"),
                               [[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_allclose(scale_sum(*args), [[[1 / 3, 0.5], [2 / 3, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    with pytest.raises(ValueError, match="normalise 'range' is unknown"):
        scale_sum(*args, normalise="range")


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
