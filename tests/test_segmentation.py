"""Segmentation retraining, prediction and the final evaluation."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.core.store import ArtifactReader, ArtifactWriter
from pipeline.data.labelled_crops import LabelledCrops
from pipeline.data.voc import VOCDataset
from pipeline.evaluation.evaluate import evaluate_predictions, final_report, ladder
from pipeline.models.segnet import SegmentationNet, load_segnet, save_segnet
from pipeline.segmentation.predict import predict_probs
from pipeline.segmentation.train import pixel_loss, require_labelled_pixels, segmentation_loss

from conftest import DEMO_CLASSES

CLASSES = ["background", "a", "b"]


def handmade_voc(root, masks: dict) -> VOCDataset:
    """A VOC-format split 'val' whose ground truth is `masks` (images are grey)."""
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, mask in masks.items():
        Image.fromarray(np.full((*mask.shape, 3), 128, np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg")
        Image.fromarray(mask, mode="L").save(root / "SegmentationClass" / f"{image_id}.png")
    (root / "ImageSets/Segmentation/val.txt").write_text("".join(f"{i}\n" for i in masks))
    return VOCDataset(root, CLASSES, "val")


def write_preds(path, preds: dict) -> ArtifactReader:
    with ArtifactWriter(path) as writer:
        for key, pred in preds.items():
            writer.write(key, pred.astype(np.uint8))
    return ArtifactReader(path)


GT = {"one": np.array([[0, 0, 1, 1],
                       [0, 0, 1, 1],
                       [2, 2, 255, 255]], np.uint8),
      "two": np.array([[2, 2, 0, 0]], np.uint8)}


def test_evaluator_gives_one_on_the_ground_truth(tmp_path):
    voc = handmade_voc(tmp_path / "voc", GT)
    perfect = {k: np.where(v == 255, 0, v) for k, v in GT.items()}
    scores = evaluate_predictions(write_preds(tmp_path / "p.h5", perfect), voc)
    assert scores["miou"] == 1.0 and scores["iou"] == {"background": 1.0, "a": 1.0, "b": 1.0}


def test_evaluator_on_a_known_confusion_gives_the_hand_value(tmp_path):
    voc = handmade_voc(tmp_path / "voc", GT)
    pred = {"one": np.array([[0, 1, 1, 1],      # one background pixel called a
                             [0, 0, 1, 2],      # one a pixel called b
                             [2, 0, 1, 1]]),    # one b pixel called background; the 255 pixels do not count
            "two": np.array([[2, 2, 0, 0]])}
    scores = evaluate_predictions(write_preds(tmp_path / "p.h5", pred), voc)
    # background: tp 5 (3 in one, 2 in two), fn 1 (called a), fp 1 (the b pixel) -> 5/7
    # a: tp 3, fp 1, fn 1 -> 3/5;  b: tp 3, fp 1, fn 1 -> 3/5
    assert scores["iou"]["background"] == pytest.approx(5 / 7)
    assert scores["iou"]["a"] == pytest.approx(3 / 5) and scores["iou"]["b"] == pytest.approx(3 / 5)
    assert scores["miou"] == pytest.approx((5 / 7 + 3 / 5 + 3 / 5) / 3)


def test_evaluator_names_a_prediction_of_the_wrong_size(tmp_path):
    voc = handmade_voc(tmp_path / "voc", GT)
    preds = write_preds(tmp_path / "p.h5", {"one": np.zeros((3, 5)), "two": GT["two"]})
    with pytest.raises(ValueError, match="prediction 'one' .*p.h5 is \\(3, 5\\).*is \\(3, 4\\)"):
        evaluate_predictions(preds, voc)


def test_ladder_and_ratio_come_from_the_stage_reports(tmp_path):
    reports = {"classifier": {"val_map": 0.9, "val_split": "val"},
               "seeds": {"method": "cam", "threshold": 0.15, "split": "train", "miou": 0.4, "iou": {}},
               "pseudo": {"eval_split": "train", "ladder": [{"step": "rw", "miou": 0.5, "iou": {}},
                                                           {"step": "rw+crf", "miou": 0.55, "iou": {}}]}}
    for name, report in reports.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(report))
    weak = {"split": "val", "miou": 0.6, "iou": {}}
    full = {"split": "val", "miou": 0.8, "iou": {}}
    rows = ladder(*(str(tmp_path / f"{n}.json") for n in ("classifier", "seeds", "pseudo")), weak, full)
    assert [r["value"] for r in rows] == [0.9, 0.4, 0.5, 0.55, 0.6, 0.8]
    assert [r["split"] for r in rows] == ["val", "train", "train", "train", "val", "val"]
    assert final_report(weak, rows, full, "cam")["weak_over_full"] == pytest.approx(0.75)


def test_training_crops_keep_image_and_label_aligned(tiny_voc):
    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train")
    # the "image" is its own label map painted as grey levels, so alignment is checkable per pixel
    painted = {i: voc.load_mask(i) for i in voc.ids}
    voc.load_image = lambda i: np.repeat(np.where(painted[i] == 255, 250, painted[i] * 40).astype(np.uint8)[..., None], 3, 2)
    data = LabelledCrops(voc, lambda i: painted[i], (0, 0, 0), (1, 1, 1), 48, (0.7, 1.3), seed=0)
    for idx in range(len(voc)):
        x, label = data[idx]
        grey = (x[0] * 255).round()
        # bilinear (image) and nearest (label) resizing differ only near label edges: compare
        # the pixels whose 5x5 label neighbourhood is uniform and inside the crop
        lab = label.float()[None, None]
        uniform = (F.max_pool2d(lab, 5, 1, 2) == -F.max_pool2d(-lab, 5, 1, 2))[0, 0]
        uniform[:2], uniform[-2:], uniform[:, :2], uniform[:, -2:] = False, False, False, False
        inside = uniform & (label != 255)
        assert x.shape == (3, 48, 48) and label.shape == (48, 48) and inside.sum() > 100
        assert torch.allclose(grey[inside], label[inside].float() * 40, atol=1)


def test_scale_attention_loss_adds_each_scales_supervision():
    torch.manual_seed(0)
    net = SegmentationNet("tf_efficientnet_lite0", 3, "aspp", 16, channels=32, attention_scales=(1.0, 0.5)).eval()
    x, target = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    target[:, :5] = 255
    fused, per_scale = net.scored(x)
    expected = sum(F.cross_entropy(s, target, ignore_index=255) for s in [fused, *per_scale])
    got = segmentation_loss(net, x, target, {"loss": "ce"})
    assert len(per_scale) == 2 and torch.allclose(got, expected)
    assert torch.allclose(net(x), fused)


class AsymmetricNet(torch.nn.Module):
    """Logits that depend on the x coordinate, so a wrong flip-back would show."""
    def forward(self, x):
        w = x.shape[-1]
        ramp = torch.linspace(-2, 2, w).view(1, 1, 1, w)
        return torch.cat([x[:, :1] + ramp, x[:, 1:2] * 2 - ramp, x[:, 2:3]], 1)


def test_multiscale_flip_prediction_equals_the_naive_average():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    got = predict_probs(AsymmetricNet(), image, mean, std, [1.0, 0.5], True, "cpu")

    import cv2
    expected = []
    for scale in (1.0, 0.5):
        scaled = image if scale == 1.0 else cv2.resize(image, (15, 10), interpolation=cv2.INTER_LINEAR)
        for flip in (False, True):
            arr = scaled[:, ::-1] if flip else scaled
            x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float()[None] / 255
            x = (x - 0.5) / 0.25
            p = torch.softmax(AsymmetricNet()(x), 1)
            p = p.flip(-1) if flip else p
            expected.append(F.interpolate(p, size=(20, 30), mode="bilinear", align_corners=False)[0])
    expected = torch.stack(expected).mean(0).numpy()
    assert got.shape == (3, 20, 30)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(0), 1.0, atol=1e-5)


def test_checkpoint_roundtrip_and_errors(tmp_path):
    net = SegmentationNet("tf_efficientnet_lite0", 3, "danet", 16, channels=32, feature_level=3).eval()
    save_segnet(net, tmp_path / "seg.pt", classes=CLASSES)
    loaded, meta = load_segnet(tmp_path / "seg.pt", "tf_efficientnet_lite0")
    x = torch.randn(1, 3, 48, 48)
    assert meta["classes"] == CLASSES and meta["head"] == "danet"
    assert torch.allclose(loaded.eval()(x), net(x))
    with pytest.raises(ValueError, match="seg.pt was trained with backbone 'tf_efficientnet_lite0'.*resnet50"):
        load_segnet(tmp_path / "seg.pt", "resnet50")
    torch.save({"state_dict": {}, "meta": {"backbone": "x"}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a segmentation checkpoint"):
        load_segnet(tmp_path / "other.pt")


def test_segmentation_refuses_labels_without_a_labelled_pixel(tiny_voc):
    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train")
    ignored = lambda image_id: np.full(voc.load_mask(image_id).shape, 255, np.uint8)  # noqa: E731
    with pytest.raises(ValueError, match="labels of split 'train' from pseudo/x.h5 have no labelled pixel"):
        require_labelled_pixels(voc, ignored, "pseudo/x.h5")
    require_labelled_pixels(voc, voc.load_mask, "ground truth")   # the masks have some: no error


def test_cross_entropy_of_a_crop_without_labels_is_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = pixel_loss(logits, torch.full((2, 4, 4), 255), {"loss": "ce"})
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
