"""ReCAM: its class-wise pooled features, its softmax cross-entropy, the map relu((W_new * W_cls) . F)
and the checkpoint of its training step, each against a direct computation written here."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import pipeline.classifier.train as tc
from conftest import DEMO_CLASSES
from pipeline.cams.extract import _activation_maps, multiscale_cam
from pipeline.classifier.recam import (ReCAMStep, class_pooled_features, normalised_cams, recam_loss,
                                       train_recam)
from pipeline.core.training import make_optimizer
from pipeline.data.voc import VOCDataset
from pipeline.models.classifier import Classifier, load_classifier, save_checkpoint


def _naive_pooled(F, W):
    """Per image b and class k: CAM = max(0, sum_c W[k, c] F[b, c]), divided by (its max + 1e-5),
    then pooled[b, k, c] = mean over pixels of CAM x F[b, c]."""
    B, C, H, Wd = F.shape
    K = W.shape[0]
    out = np.zeros((B, K, C))
    for b in range(B):
        for k in range(K):
            cam = np.zeros((H, Wd))
            for i in range(H):
                for j in range(Wd):
                    cam[i, j] = max(0.0, sum(W[k, c] * F[b, c, i, j] for c in range(C)))
            cam = cam / (cam.max() + 1e-5)
            for c in range(C):
                out[b, k, c] = sum(cam[i, j] * F[b, c, i, j] for i in range(H) for j in range(Wd)) / (H * Wd)
    return out


def _naive_loss(pooled, labels, W_new):
    """For each image, each present class k: -log softmax(W_new . pooled[b, k])[k], averaged over
    the image's classes; summed over images, divided by the batch size."""
    B, K, C = pooled.shape
    total, correct, scored = 0.0, 0, 0
    for b in range(B):
        present = [k for k in range(K) if labels[b, k] > 0]
        if not present:
            continue
        image_loss = 0.0
        for k in present:
            scores = [sum(W_new[j, c] * pooled[b, k, c] for c in range(C)) for j in range(K)]
            log_norm = math.log(sum(math.exp(s) for s in scores))
            image_loss += log_norm - scores[k]
            correct += int(np.argmax(scores) == k)
            scored += 1
        total += image_loss / len(present)
    return total / B, correct / scored


def test_pooled_features_and_loss_on_two_classes_against_naive_loops():
    rng = np.random.default_rng(0)
    F = rng.normal(size=(3, 4, 3, 5))
    F[0, :, 0, 0] = np.abs(F[0, :, 0, 0]) + 2.0   # a strong pixel, so the first image's CAMs are not all 0
    W = rng.normal(size=(2, 4))
    W_new = rng.normal(size=(2, 4))
    labels = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])   # both classes, one class, none (adds 0)

    F_t = torch.tensor(F)
    pooled = class_pooled_features(F_t, normalised_cams(F_t, torch.tensor(W)[:, :, None, None]))
    np.testing.assert_allclose(pooled.numpy(), _naive_pooled(F, W), rtol=1e-10, atol=1e-12)

    loss, accuracy = recam_loss(pooled, torch.tensor(labels), torch.tensor(W_new)[:, :, None, None])
    want_loss, want_accuracy = _naive_loss(_naive_pooled(F, W), labels, W_new)
    assert loss.item() == pytest.approx(want_loss, rel=1e-10)
    assert accuracy.item() == pytest.approx(want_accuracy)


def test_loss_falls_when_w_new_separates_the_classes():
    """Hand case: class 0's pooled feature lies along e0, class 1's along e1; W_new = s * identity
    gives CE = log(1 + exp(-s)) per class, the loss of the naive formula."""
    pooled = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    labels = torch.tensor([[1.0, 1.0]])
    for s in (0.0, 1.0, 5.0):
        loss, accuracy = recam_loss(pooled, labels, s * torch.eye(2))
        assert loss.item() == pytest.approx(math.log(1 + math.exp(-s)), rel=1e-6)
    assert accuracy.item() == 1.0


class _TinyReCAM(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(5, 4, 1, bias=False)
        self.recam = nn.Conv2d(5, 4, 1, bias=False)

    def features(self, x):
        return self.body(x)


def test_the_recam_map_against_a_naive_loop():
    model = _TinyReCAM()
    x = torch.randn(2, 3, 4, 6)
    got = _activation_maps(model, x, [2, 4], "recam", ())[0].numpy()
    F = model.features(x).detach().numpy()
    W = model.classifier.weight.detach().flatten(1).numpy()
    W_new = model.recam.weight.detach().flatten(1).numpy()
    want = np.zeros((2, 2, 4, 6))
    for b in range(2):
        for n, cls in enumerate([2, 4]):
            k = cls - 1
            for i in range(4):
                for j in range(6):
                    want[b, n, i, j] = max(0.0, sum(W_new[k, c] * W[k, c] * F[b, c, i, j] for c in range(5)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_recam_follows_the_cam_protocol_and_needs_w_new():
    """With W_new = 1 the ReCAM map is the CAM, through the same scales, flip and normalisation."""
    model = Classifier("tf_efficientnet_lite0", 3, feature_level=2, recam=True).eval()
    image = np.random.default_rng(2).integers(0, 256, size=(40, 48, 3)).astype(np.uint8)
    args = (model, image, np.array([1, 3]), [1.0, 0.5], True, (0.5,) * 3, (0.5,) * 3, "cpu")
    with torch.no_grad():
        model.recam.weight.fill_(1.0)
    np.testing.assert_allclose(multiscale_cam(*args, method="recam"), multiscale_cam(*args, method="cam"), atol=1e-6)
    with torch.no_grad():
        model.recam.weight.fill_(2.0)   # a constant factor cancels in the per-class max normalisation
    np.testing.assert_allclose(multiscale_cam(*args, method="recam"), multiscale_cam(*args, method="cam"), atol=1e-6)

    plain = Classifier("tf_efficientnet_lite0", 3, feature_level=2).eval()
    with pytest.raises(ValueError, match="train_recam.*classifier_recam.pt"):
        multiscale_cam(plain, *args[1:], method="recam")


def test_w_new_trains_at_lr_and_the_rest_at_lr_ratio_times_lr():
    model = Classifier("tf_efficientnet_lite0", 3, feature_level=2, recam=True)
    cfg = {"optimizer": "sgd", "lr": 0.0005, "momentum": 0.0, "weight_decay": 1e-4}
    groups = make_optimizer(ReCAMStep(model, 0.1), cfg).param_groups
    assert [g["lr"] for g in groups] == [pytest.approx(0.00005), 0.0005]
    assert groups[1]["params"] == [model.recam.weight]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = Classifier("tf_efficientnet_lite0", 3, feature_level=2, recam=True).eval()
    path = tmp_path / "classifier_recam.pt"
    save_checkpoint(model, path, classes=["background", "a", "b", "c"], mean=[0.5] * 3, std=[0.5] * 3)
    raw = torch.load(path, weights_only=True)
    assert raw["meta"]["recam"] is True and "recam.weight" in raw["state_dict"]
    loaded, meta = load_classifier(path, "tf_efficientnet_lite0")
    loaded.eval()
    assert torch.equal(loaded.recam.weight, model.recam.weight)
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)
    image = np.random.default_rng(5).integers(0, 256, size=(36, 40, 3)).astype(np.uint8)
    args = (image, np.array([2]), [1.0], True, (0.5,) * 3, (0.5,) * 3, "cpu")
    np.testing.assert_array_equal(multiscale_cam(loaded, *args, method="recam"),
                                  multiscale_cam(model, *args, method="recam"))


CLASSIFIER = {"backbone": "tf_efficientnet_lite0", "weights": "none", "pooling": "gap", "output_stride": 16,
              "feature_level": "last", "optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9,
              "poly_power": 0.9, "epochs": 1, "batch_size": 4, "crop_size": 48, "scale_range": [0.7, 1.0],
              "workers": 0}
RECAM = {"epochs": 2, "lr": 0.05, "lr_ratio": 0.1, "loss_weight": 1.0, "momentum": 0.0, "weight_decay": 1e-4,
         "poly_power": 0.9, "batch_size": 4, "crop_size": 48, "scale_range": [0.7, 1.0], "workers": 0}


def test_the_training_step_writes_a_loadable_recam_classifier(tmp_path, tiny_voc):
    train_voc, val_voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train"), VOCDataset(tiny_voc, DEMO_CLASSES, "val")
    first = tmp_path / "classifier.pt"
    tc.train(train_voc, val_voc, CLASSIFIER, first, "cpu")
    out = tmp_path / "classifier_recam.pt"
    result = train_recam(train_voc, val_voc, RECAM, first, out, "cpu")
    json.dumps(result)
    assert [h["epoch"] for h in result["history"]] == [1, 2] and 0.0 <= result["val_map"] <= 1.0
    assert [p["epoch"] for p in result["parts"]] == [1, 2]
    assert all(set(p) == {"epoch", "cls", "ce", "accuracy"} for p in result["parts"])
    assert not (tmp_path / "classifier_recam.pt.partial").exists()

    model, meta = load_classifier(out)
    before, _ = load_classifier(first)
    assert meta["recam"] is True and meta["classes"] == DEMO_CLASSES and meta["recam_settings"] == RECAM
    # the classifier itself went on training (at lr_ratio x lr)
    assert not torch.equal(model.classifier.weight, before.classifier.weight)
    with pytest.raises(ValueError, match="already holds a ReCAM classifier"):
        train_recam(train_voc, val_voc, RECAM, out, tmp_path / "again.pt", "cpu")


def test_the_recam_overlay_plans_the_step_and_its_published_settings(tmp_path):
    """configs/recam.yaml on a VOC layout: one train_recam job on the classifier, ReCAM's published
    step settings, the recam maps feeding the chain, and seeds at ReCAM's threshold 0.21."""
    from conftest import REPO, listed_voc
    from test_workflow import job_counts, snakemake, stage_settings

    listed_voc(tmp_path / "data/VOCdevkit/VOC2012")
    run = snakemake("-n", "-p", "--cores", "8", "--configfile", str(REPO / "configs/recam.yaml"),
                    "--", "results/voc/miou.json", cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert job_counts(run.stdout)["train_recam"] == 1
    lines = run.stdout.splitlines()
    step = next(line for line in lines if "python -m stages.train_recam " in line)
    assert "--classifier results/voc/classifier.pt" in step and "--out results/voc/classifier_recam.pt" in step
    assert stage_settings(step, "train_recam") == {
        "batch_size": 16, "crop_size": 512, "epochs": 4, "loss_weight": 1.0, "lr": 0.0005, "lr_ratio": 0.1,
        "momentum": 0.0, "poly_power": 0.9, "scale_range": [0.7, 1.3], "weight_decay": 0.0001, "workers": 2}
    extract = [line for line in lines if "python -m stages.extract_cams " in line and "--method recam" in line]
    assert extract and all("--classifier results/voc/classifier_recam.pt" in line for line in extract)
    seeds = next(line for line in lines if "python -m stages.evaluate_seeds " in line)
    assert stage_settings(seeds, "evaluate_seeds")["bg_threshold"] == 0.21


def test_the_diagnosis_runs_the_extraction_protocol(tiny_voc):
    """Its `recam` and `cam` curves are those of the extracted maps; the agreement of the two
    classifiers and the negative share of the features against direct computations."""
    from pipeline.diagnostics.recam import diagnose
    from pipeline.cams.seeds import seed_label
    from pipeline.maps.metrics import ConfusionAccumulator, scores

    torch.manual_seed(0)
    model = Classifier("tf_efficientnet_lite0", len(DEMO_CLASSES) - 1, feature_level=3, recam=True).eval()
    meta = {**model.meta, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train")
    voc = voc.subset(voc.ids[:2])
    result = diagnose(model, meta, voc, [1.0, 0.5], True, [0.2, 0.4])
    assert result["images"] == 2 and set(result["curves"]) == {"cam", "w_new", "recam"}
    for method in ("cam", "recam"):
        for row in result["curves"][method]:
            acc = ConfusionAccumulator(len(DEMO_CLASSES))
            for image_id in voc.ids:
                labels = voc.image_labels(image_id)
                maps = multiscale_cam(model, voc.load_image(image_id), labels, [1.0, 0.5], True, (0.5,) * 3,
                                      (0.5,) * 3, "cpu", method)
                acc.add(voc.load_mask(image_id), seed_label(maps, labels, row["threshold"]))
            assert row["miou"] == pytest.approx(scores(acc.matrix, DEMO_CLASSES)["miou"], abs=1e-9)

    W = model.classifier.weight.detach().flatten(1).numpy().astype(np.float64)
    Wn = model.recam.weight.detach().flatten(1).numpy().astype(np.float64)
    for k, name in enumerate(DEMO_CLASSES[1:]):
        cos = W[k] @ Wn[k] / np.linalg.norm(W[k]) / np.linalg.norm(Wn[k])
        same = np.mean([(a > 0) == (b > 0) for a, b in zip(W[k], Wn[k])])
        assert result["classes"][name]["cosine"] == pytest.approx(cos, abs=1e-5)
        assert result["classes"][name]["same_sign"] == pytest.approx(same)

    from pipeline.data.transforms import rescale_bicubic, to_tensor
    negative = total = 0
    with torch.no_grad():
        for image_id in voc.ids:
            for scale in (1.0, 0.5):
                x = to_tensor(rescale_bicubic(voc.load_image(image_id), scale), (0.5,) * 3, (0.5,) * 3)[None]
                f = model.features(torch.cat([x, x.flip(-1)]))
                negative, total = negative + int((f < 0).sum()), total + f.numel()
    assert result["negative_feature_fraction"] == pytest.approx(negative / total)
