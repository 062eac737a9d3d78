"""The ViT with one class token per class (MCTformer-V2, WeakTr): its predictions, losses and CAM
methods against the published formulas written out naively here (loops over classes, blocks, heads)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.cams.vit import (MCTFORMER_CLS_BLOCKS, VIT_PROTOCOLS, attnfusion_map, mctformer_map,
                               vit_multiscale_cam, vit_protocol)
from pipeline.classifier.train import _batch_loss
from pipeline.models.classifier import build_classifier, load_classifier, save_checkpoint
from pipeline.models.vit_hybrid import ViTHybridClassifier
from pipeline.models.vit_mct import (AdaptiveAttentionFusion, HybridClassTokenViT, PlainClassTokenViT,
                                     fine_cam, fuse_attention)

MEAN = STD = (0.5,) * 3


def tiny_hybrid(num_classes=3, depth=2, heads=2, embed_dim=16):
    torch.manual_seed(0)
    return HybridClassTokenViT("tf_efficientnet_lite0", num_classes, embed_dim=embed_dim, depth=depth, heads=heads,
                               weights="none", feature_level=3, pos_grid=4).eval()


def tiny_plain(num_classes=2):
    torch.manual_seed(0)
    return PlainClassTokenViT("vit_tiny_patch16_224", num_classes).eval()


# --- naive references of the published formulas -------------------------------------------------

def naive_mctformer(attns, coarse, cls_blocks):
    """MCTformer-V2: for class c and patch i, sum_j P[i, j] * clsattn[c, j] * coarse[c, j], with
    clsattn = mean over heads summed over the last cls_blocks blocks, P = the same over all blocks."""
    K = len(attns)
    B, H = attns[0].shape[:2]
    C, (h, w) = coarse.shape[1], coarse.shape[2:]
    n = h * w
    out = np.zeros((B, C, n))
    for b in range(B):
        for c in range(C):
            cls = np.zeros(n)
            for k in range(K - cls_blocks, K):
                for hd in range(H):
                    cls += attns[k][b, hd, c, C:] / H
            cam = cls * coarse[b, c].reshape(-1)
            for i in range(n):
                for j in range(n):
                    p = sum(attns[k][b, hd, C + i, C + j] / H for k in range(K) for hd in range(H))
                    out[b, c, i] += p * cam[j]
    return out.reshape(B, C, h, w)


def naive_weaktr(attns, weights, coarse):
    """WeakTr: W = mean over (block, head) of weight[b, k, h] * A_kh; fine CAM =
    sum_j W[C+i, C+j] * W[c, C+j] * coarse[c, j]."""
    K = len(attns)
    B, H = attns[0].shape[:2]
    C, (h, w) = coarse.shape[1], coarse.shape[2:]
    n = h * w
    out = np.zeros((B, C, n))
    for b in range(B):
        W = sum(weights[b, k, hd] * attns[k][b, hd] for k in range(K) for hd in range(H)) / (K * H)
        for c in range(C):
            for i in range(n):
                out[b, c, i] = sum(W[C + i, C + j] * W[c, C + j] * coarse[b, c].reshape(-1)[j] for j in range(n))
    return out.reshape(B, C, h, w)


def random_attention(rng, B, H, N):
    a = rng.random((B, H, N, N))
    return a / a.sum(-1, keepdims=True)


def test_mctformer_map_matches_the_naive_loops():
    rng = np.random.default_rng(0)
    B, H, K, C, (h, w) = 2, 3, 5, 2, (2, 3)
    attns = [random_attention(rng, B, H, C + h * w) for _ in range(K)]
    coarse = rng.random((B, C, h, w))
    got = mctformer_map([torch.from_numpy(a) for a in attns], torch.from_numpy(coarse), 3)
    np.testing.assert_allclose(got.numpy(), naive_mctformer(attns, coarse, 3), rtol=1e-10)
    assert MCTFORMER_CLS_BLOCKS == 3


def test_weaktr_fine_cam_matches_the_naive_loops_and_equal_weights_give_mctformer():
    rng = np.random.default_rng(1)
    B, H, K, C, (h, w) = 2, 2, 3, 3, (2, 2)
    attns = [random_attention(rng, B, H, C + h * w) for _ in range(K)]
    coarse = rng.random((B, C, h, w))
    weights = rng.random((B, K, H))
    t = [torch.from_numpy(a) for a in attns]
    got = fine_cam(fuse_attention(t, torch.from_numpy(weights)), torch.from_numpy(coarse))
    np.testing.assert_allclose(got.numpy(), naive_weaktr(attns, weights, coarse), rtol=1e-10)
    # equal weights over all blocks: the weighted mean is (1/K) x MCTformer's block sum in both the
    # class attention and P, so the fine CAM is MCTformer's map over all K blocks / K^2
    equal = fine_cam(fuse_attention(t, torch.full((B, K, H), 0.37, dtype=torch.float64)), torch.from_numpy(coarse))
    mct_all = naive_mctformer(attns, coarse, K)
    np.testing.assert_allclose(equal.numpy(), 0.37 ** 2 * mct_all / K ** 2, rtol=1e-10)
    np.testing.assert_allclose(fine_cam(fuse_attention(t), torch.from_numpy(coarse)).numpy(), mct_all / K ** 2,
                               rtol=1e-10)


def test_fusion_weights_by_hand_and_per_image():
    torch.manual_seed(0)
    aaf = AdaptiveAttentionFusion(blocks=2, heads=2, embed_dim=8, reduction=2, feat_reduction=2)
    outputs = [torch.randn(3, 5, 8) for _ in range(2)]
    got = aaf(outputs)
    assert got.shape == (3, 2, 2) and torch.all((got > 0) & (got < 1))
    # by hand: head hd takes channels d with d % 2 == hd, averaged over the 5 tokens, through the
    # two linear maps (4 -> 2 -> 1); the 4 scalars (block-major) through the bias-free MLP
    l1, l2 = aaf.feat_ffn
    m1, _, m2, _ = aaf.head_ffn
    for b in range(3):
        s = []
        for k in range(2):
            for hd in range(2):
                pooled = outputs[k][b].mean(0)[hd::2]
                s.append((l2.weight @ (l1.weight @ pooled + l1.bias) + l2.bias)[0])
        s = torch.stack(s)
        expected = torch.sigmoid(m2.weight @ torch.relu(m1.weight @ s)).reshape(2, 2)
        torch.testing.assert_close(got[b], expected)
    # the weights follow the image: two images of one batch get different weights
    model = tiny_hybrid(depth=3)
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(2, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        model.encode(x)
        w = model.fusion_weights()
    assert w.shape == (2, 3, 2)
    assert (w[0] - w[1]).abs().max() > 1e-4
    assert w[0].std() > 1e-4   # not one weight for every map


def _row_correlation(rows: torch.Tensor) -> float:
    """The largest correlation between two classes' rows (C, n)."""
    corr = np.corrcoef(rows.numpy())
    return float(np.max(corr[~np.eye(len(corr), dtype=bool)]))


def test_per_class_token_rows_differ_and_one_shared_token_cannot():
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 3, 64, 80)).astype(np.float32))
    model = tiny_hybrid(num_classes=3, depth=2)
    with torch.no_grad():
        model.encode(x)
    C = 3
    for A in model.attentions:
        rows = A[0].mean(0)[:C, C:]   # each class token's attention to the 4x5 patches
        assert _row_correlation(rows) < 0.99
    # the single-token ViT: attnfusion's class factor is one row for every class
    torch.manual_seed(0)
    single = ViTHybridClassifier("tf_efficientnet_lite0", 3, embed_dim=16, depth=2, heads=2, start_block=1,
                                 weights="none", feature_level=3, pos_grid=4).eval()
    with torch.no_grad():
        single.encode(x)
    ones = torch.ones(1, 3, 4, 5)
    maps = attnfusion_map(single.attentions, ones, cls_blocks=1, refine_blocks=[])
    torch.testing.assert_close(maps[0, 0], maps[0, 1])
    torch.testing.assert_close(maps[0, 1], maps[0, 2])


def test_plain_vit_tokens_start_from_the_pretrained_class_token_and_part_after_a_step():
    model = tiny_plain(num_classes=2)
    t = model.trunk
    for c in range(2):
        torch.testing.assert_close(model.cls_tokens[0, c], t.cls_token[0, 0])
        torch.testing.assert_close(model.cls_pos[0, c], t.pos_embed[0, 0])
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(2, 3, 32, 48)
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    opt.zero_grad()
    _batch_loss(model, (x, y), "cpu").backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        model.encode(x)
    rows = model.attentions[-1][0].mean(0)[:2, 2:]
    assert (rows[0] - rows[1]).abs().max() > 1e-6


def test_coarse_cam_and_the_three_losses_by_hand_on_a_2x2_grid():
    model = tiny_plain(num_classes=2)
    x = torch.randn(1, 3, 32, 32)                 # 2x2 patches of 16
    y = torch.tensor([[1.0, 0.0]])
    with torch.no_grad():
        tokens, grid = model.tokens(x)
        cls_logits, coarse_logits, fine_logits = model.predictions(x)
        weights = model.fusion_weights()
        attns = [a.clone() for a in model.attentions]
    assert grid == (2, 2) and tokens.shape[1] == 2 + 4
    D = tokens.shape[-1]
    # class-token scores: each class token's mean channel
    torch.testing.assert_close(cls_logits[0], tokens[0, :2].mean(-1))
    # coarse CAM: a 3x3 conv, zero padded, over the 2x2 grid of patch tokens (row-major), by loops
    Wc, bc = model.head.weight.detach(), model.head.bias.detach()
    grid_tokens = tokens[0, 2:].reshape(2, 2, D)
    coarse = torch.zeros(2, 2, 2)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                total = bc[c].clone()
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        if 0 <= i + di < 2 and 0 <= j + dj < 2:
                            total = total + (Wc[c, :, di + 1, dj + 1] * grid_tokens[i + di, j + dj]).sum()
                coarse[c, i, j] = total
    torch.testing.assert_close(coarse_logits[0], coarse.mean((1, 2)), rtol=1e-5, atol=1e-6)
    # fine CAM: WeakTr's naive loops on the same attentions, weights and relu(coarse)
    fine = naive_weaktr([a.double().numpy() for a in attns], weights.double().numpy(),
                        F.relu(coarse).double().numpy()[None])
    np.testing.assert_allclose(fine_logits[0].numpy(), fine.mean((2, 3))[0], rtol=1e-4, atol=1e-7)

    # each loss: -(1/C) sum_c [y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))], and the total their sum
    def soft_margin(s):
        return -sum(y[0, c] * math.log(1 / (1 + math.exp(-s[c]))) +
                    (1 - y[0, c]) * math.log(1 - 1 / (1 + math.exp(-s[c]))) for c in range(2)) / 2

    expected = sum(soft_margin(p[0].tolist()) for p in (cls_logits, coarse_logits, fine_logits))
    with torch.no_grad():
        assert _batch_loss(model, (x, y), "cpu").item() == pytest.approx(float(expected), rel=1e-5)


def test_the_fine_cam_loss_trains_only_the_fusion():
    model = tiny_hybrid(num_classes=3, depth=2).train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    fine_logits = model.predictions(x)[2]
    F.multilabel_soft_margin_loss(fine_logits, y).backward()
    fusion = {id(p) for p in model.fusion.parameters()}
    for name, p in model.named_parameters():
        if id(p) in fusion:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None or p.grad.abs().sum() == 0, name


@pytest.mark.parametrize("method", ["mctformer", "weaktr"])
def test_class_token_methods_give_minmax_maps_and_refuse_a_single_token_model(method):
    model = tiny_hybrid(num_classes=3, depth=4)
    image = np.random.default_rng(4).integers(0, 256, size=(70, 90, 3)).astype(np.uint8)
    run = vit_protocol(method, "published", [9.0], False)
    assert run == VIT_PROTOCOLS[method]
    maps = vit_multiscale_cam(model, image, np.array([1, 3]), run["scales"], run["flip"], MEAN, STD, "cpu",
                              method, align_corners=run["align_corners"])
    assert maps.shape == (2, 70, 90) and maps.dtype == np.float32
    np.testing.assert_allclose(maps.reshape(2, -1).min(1), 0.0, atol=1e-6)
    np.testing.assert_allclose(maps.reshape(2, -1).max(1), 1.0, atol=1e-5)
    torch.manual_seed(0)
    single = ViTHybridClassifier("tf_efficientnet_lite0", 3, embed_dim=16, depth=2, heads=2, start_block=1,
                                 weights="none", feature_level=3, pos_grid=4).eval()
    with pytest.raises(ValueError, match="one class token per class"):
        vit_multiscale_cam(single, image, np.array([1]), [1.0], False, MEAN, STD, "cpu", method)
    with pytest.raises(ValueError, match="needs a classifier with one class token,"):
        vit_multiscale_cam(model, image, np.array([1]), [1.0], False, MEAN, STD, "cpu", "getam")


def test_the_map_of_one_image_is_mctformer_on_its_patches():
    """vit_multiscale_cam at scale 1 without flip on an image the size of the grid x 16: the model's
    own attentions through the naive formula, upsampled, min-max normalised."""
    model = tiny_hybrid(num_classes=2, depth=4)
    image = np.random.default_rng(6).integers(0, 256, size=(64, 48, 3)).astype(np.uint8)
    from pipeline.data.transforms import to_tensor
    x = to_tensor(image, MEAN, STD)[None]
    with torch.no_grad():
        coarse = F.relu(model.encode(x)[1])
    raw = naive_mctformer([a.double().numpy() for a in model.attentions], coarse.double().numpy(), 3)[:, [1]]
    up = F.interpolate(torch.from_numpy(raw), size=(64, 48), mode="bilinear", align_corners=False)[0, 0].numpy()
    expected = (up - up.min()) / (up.max() - up.min())
    got = vit_multiscale_cam(model, image, np.array([2]), [1.0], False, MEAN, STD, "cpu", "mctformer")
    np.testing.assert_allclose(got[0], expected, atol=1e-4)


def test_protocols_are_the_published_ones():
    assert VIT_PROTOCOLS["getam"] == {"scales": [1.0], "flip": False, "align_corners": True}
    assert VIT_PROTOCOLS["mctformer"] == {"scales": [1.0], "flip": True, "align_corners": False}
    assert VIT_PROTOCOLS["weaktr"] == {"scales": [1.0, 1.2], "flip": True, "align_corners": False}
    assert vit_protocol("weaktr", "project", (1.0, 0.5), True) == {"scales": [1.0, 0.5], "flip": True,
                                                                    "align_corners": False}
    with pytest.raises(ValueError, match="vit_protocol 'paper' is unknown"):
        vit_protocol("getam", "paper", [1.0], True)


def test_deit_small_checkpoint_of_the_right_shape_loads(tmp_path):
    cfg = {"kind": "vit", "backbone": "deit_small_patch16_224", "class_tokens": "per_class", "start_block": 6,
           "aaf_reduction": 4, "aaf_feat_reduction": 8}
    torch.manual_seed(0)
    model = build_classifier(cfg, 20).eval()
    assert isinstance(model, PlainClassTokenViT)
    assert model.cls_tokens.shape == (1, 20, 384) and model.meta["depth"] == 12 and model.meta["heads"] == 6
    assert model.fusion.head_ffn[0].weight.shape == (72 // 4, 72)   # 12 blocks x 6 heads, reduction 4
    path = tmp_path / "classifier_mct.pt"
    save_checkpoint(model, path, classes=["background", *map(str, range(20))], mean=[0.5] * 3, std=[0.5] * 3)
    loaded, meta = load_classifier(path, "deit_small_patch16_224")
    assert meta["class_tokens"] == "per_class" and isinstance(loaded, PlainClassTokenViT)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        for a, b in zip(loaded.eval().predictions(x), model.predictions(x)):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="class token"):
        PlainClassTokenViT("deit_tiny_distilled_patch16_224", 4)


def test_hybrid_meta_and_param_groups():
    model = tiny_hybrid()
    assert model.meta["class_tokens"] == "per_class" and model.meta["kind"] == "vit_hybrid"
    groups = model.param_groups()
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.backbone.parameters()}


def test_class_row_stats_by_hand():
    from pipeline.diagnostics.class_tokens import class_row_stats
    # 2 class tokens, 4 patches, one head: class 0 looks at one patch only, class 1 uniformly
    A = torch.zeros(1, 1, 6, 6)
    A[0, 0, 0] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    A[0, 0, 1] = torch.tensor([0.2, 0.0, 0.2, 0.2, 0.2, 0.2])
    A[0, 0, 2:] = 1 / 6
    got = class_row_stats(A, 2, torch.tensor([1]))
    assert got["class_entropy"] == pytest.approx(1.0)            # uniform over the 4 patches
    assert class_row_stats(A, 2, torch.tensor([0]))["class_entropy"] == pytest.approx(0.0, abs=1e-9)
    # three classes with rows [1, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0] over the patches
    A3 = torch.zeros(1, 1, 7, 7)
    A3[0, 0, 0, 3:] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    A3[0, 0, 1, 3:] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    A3[0, 0, 2, 3:] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    stats = class_row_stats(A3, 3, torch.tensor([0, 1, 2]))
    # pairs: (0,1) r = -1/3, (0,2) r = 1, (1,2) r = -1/3, each counted twice
    assert stats["class_row_r"] == pytest.approx((-1 / 3 + 1 - 1 / 3) / 3)
