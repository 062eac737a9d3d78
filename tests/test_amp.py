"""Mixed precision (pipeline/core/precision.py): which dtype `amp` gives on which device, and on
the same weights the bf16 networks' CAMs, random-walk maps, predictions and training losses
against float32's. bf16 autocast runs on the CPU, so these run here; tests/gpu repeats the stages
on CUDA. The tolerances are the ones docs/gpu.md states (measured there on the trained demo
networks with benchmarks/bench_amp.py); the networks here are the ImageNet-pretrained backbone
with untrained heads, whose maps are no smoother than trained ones."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.affinity.propagate import propagate_image
from pipeline.cams.extract import multiscale_cam
from pipeline.core import config as cfgmod
from pipeline.core.precision import (autocast, channels_last, current_amp, grad_scaler, mixed_precision,
                                     resolve_amp, to_device)
from pipeline.core.training import fit
from pipeline.data.voc import VOCDataset
from pipeline.models.affinity_net import AffinityNet
from pipeline.models.backbone import normalisation
from pipeline.models.classifier import build_classifier
from pipeline.models.segnet import build_segnet
from pipeline.segmentation.predict import predict_probs
from tests.conftest import DEMO_CLASSES

# bf16 against float32 on the same weights (docs/gpu.md, "Tolerance"). Measured here: CAM 0.022
# (cam) and 0.041 (gradcam), getam 0.046, attnfusion 0.060 (labels 99.5%, 98.7%), walk 0.0007, probabilities 0.004; labels 98.6%, 100%, 98.9% the same.
# Untrained heads tie classes over much of the image, so their labels flip more than trained ones'.
CAM_MAX_ABS = 0.05        # a CAM value (each class scaled to max 1)
VIT_MAX_ABS = 0.1         # a ViT map value: getam 0.046, attnfusion (min-max normalised) 0.060 measured
WALK_MAX_ABS = 0.01       # a walked map value
PROB_MAX_ABS = 0.01       # a predicted class probability
CAM_LABEL_AGREEMENT = 0.97   # pixels with the same seed label (background 0.15)
LABEL_AGREEMENT = 0.98       # pixels with the same argmax label
BACKBONE = "tf_efficientnet_lite0"


def labels(maps: np.ndarray, background: float | None = None) -> np.ndarray:
    """Argmax label per pixel, with a constant background channel in front when given."""
    if background is not None:
        maps = np.concatenate([np.full((1, *maps.shape[1:]), background, maps.dtype), maps])
    return maps.argmax(0)


def both(fn):
    """fn() in float32 and under bf16 autocast."""
    reference = fn()
    with mixed_precision(torch.bfloat16):
        return reference, fn()


@pytest.fixture(scope="module")
def images(tiny_voc):
    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train")
    return [(voc.load_image(i), voc.image_labels(i)) for i in voc.ids[:3]]


@pytest.mark.parametrize("amp, device, expected", [
    ("off", "cpu", None), ("auto", "cpu", None), ("bf16", "cpu", torch.bfloat16), ("fp16", "cpu", torch.float16),
    ("off", "cuda", None)])
def test_amp_names_the_autocast_dtype_of_the_device(amp, device, expected):
    assert resolve_amp(amp, device) is expected


def test_auto_on_cuda_is_bf16_where_the_gpu_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_amp("auto", "cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    assert resolve_amp("auto", "cuda") is torch.float16
    with pytest.raises(RuntimeError, match="Tesla V100 has no bfloat16.*amp: fp16"):
        resolve_amp("bf16", "cuda")
    with pytest.raises(ValueError, match="amp 'half' is unknown"):
        resolve_amp("half", "cpu")


def test_the_precision_holds_inside_its_block_only_and_shapes_the_cuda_habits():
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast("cpu"):
        assert layer(x).dtype == torch.float32
    with mixed_precision(torch.bfloat16):
        assert current_amp() is torch.bfloat16
        with autocast("cpu"):
            assert layer(x).dtype == torch.bfloat16
        assert channels_last("cuda") and not channels_last("cpu")
        assert not grad_scaler("cpu").is_enabled()
    with mixed_precision(torch.float16):
        assert grad_scaler("cpu").is_enabled()
    assert current_amp() is None and not channels_last("cuda")
    batch = torch.randn(2, 3, 8, 8)
    assert to_device(batch, "cpu").is_contiguous()   # NCHW on the CPU


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_bf16_cams_are_the_float32_cams_within_tolerance(images, method):
    torch.manual_seed(0)
    cfg = {**cfgmod.defaults("classifier"), "feature_level": 3}
    model = build_classifier(cfg, len(DEMO_CLASSES) - 1, "offline").eval()
    mean, std = normalisation(BACKBONE)
    agree, worst, differs = [], 0.0, False
    for image, class_ids in images:
        ref, amp = both(lambda: multiscale_cam(model, image, class_ids, [1.0, 0.5, 1.5], True, mean, std,
                                               "cpu", method))
        assert amp.dtype == np.float32 and amp.shape == ref.shape
        worst = max(worst, float(np.abs(amp - ref).max()))
        differs |= not np.array_equal(amp, ref)
        agree.append((labels(amp, 0.15) == labels(ref, 0.15)).mean())
    assert differs, "bf16 gave float32's maps bit for bit: autocast did not run"
    assert worst < CAM_MAX_ABS
    assert np.mean(agree) >= CAM_LABEL_AGREEMENT


@pytest.mark.parametrize("method", ["getam", "attnfusion"])
def test_bf16_vit_maps_are_the_float32_maps_within_tolerance(images, method):
    from pipeline.cams.vit import vit_multiscale_cam
    torch.manual_seed(0)
    cfg = {**cfgmod.defaults("classifier"), **cfgmod.defaults("vit_classifier"), "feature_level": 3}
    model = build_classifier(cfg, len(DEMO_CLASSES) - 1, "offline").eval()
    mean, std = normalisation(BACKBONE)
    worst, agree = 0.0, []
    for image, class_ids in images:
        ref, amp = both(lambda: vit_multiscale_cam(model, image, class_ids, [1.0, 0.5], True, mean, std, "cpu",
                                                   method))
        assert amp.dtype == np.float32
        worst = max(worst, float(np.abs(amp - ref).max()))
        agree.append((labels(amp, 0.15) == labels(ref, 0.15)).mean())
    assert 0 < worst < VIT_MAX_ABS
    assert np.mean(agree) >= CAM_LABEL_AGREEMENT


def test_bf16_walk_maps_are_the_float32_maps_within_tolerance(images):
    torch.manual_seed(0)
    model = AffinityNet(BACKBONE, [1, 2, 3], [32, 64, 128], stride=4, weights="offline").eval()
    mean, std = normalisation(BACKBONE)
    cfg = {"radius": 5, "beta": 8, "logt": 5, "alpha": 16}
    rng = np.random.default_rng(0)
    agree, worst = [], 0.0
    for image, class_ids in images:
        h, w = image.shape[:2]
        # CAM-like maps: a smooth blob per class, so the walk has something to spread
        yy, xx = np.mgrid[:h, :w]
        cams = np.stack([np.exp(-((yy - rng.uniform(0, h)) ** 2 + (xx - rng.uniform(0, w)) ** 2) / (0.05 * h * w))
                         for _ in class_ids]).astype(np.float32)
        ref, amp = both(lambda: propagate_image(model, image, cams, mean, std, "cpu", cfg))
        assert amp.dtype == np.float32
        worst = max(worst, float(np.abs(amp - ref).max()))
        agree.append((labels(amp) == labels(ref)).mean())
    assert 0 < worst < WALK_MAX_ABS
    assert np.mean(agree) >= LABEL_AGREEMENT


def test_bf16_predictions_are_the_float32_ones_within_tolerance(images):
    torch.manual_seed(0)
    cfg = {**cfgmod.defaults("segmentation"), "feature_level": 3, "channels": 64}
    model = build_segnet(cfg, len(DEMO_CLASSES), "offline").eval()
    mean, std = normalisation(BACKBONE)
    agree, worst = [], 0.0
    for image, _ in images:
        ref, amp = both(lambda: predict_probs(model, image, mean, std, [0.75, 1.0], True, "cpu"))
        assert amp.dtype == np.float32
        np.testing.assert_allclose(amp.sum(0), 1.0, atol=1e-5)   # the softmax average stays float32
        worst = max(worst, float(np.abs(amp - ref).max()))
        agree.append((labels(amp) == labels(ref)).mean())
    assert 0 < worst < PROB_MAX_ABS
    assert np.mean(agree) >= LABEL_AGREEMENT


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_training_follows_the_float32_loss_curve(tiny_voc, tmp_path, dtype):
    """The classifier's loop on the tiny demo from the same start and the same batches: bf16's mean
    loss of each epoch within 5% of float32's. float16 runs through the loss scaler, which skips
    the first steps while it finds a scale whose gradients do not overflow (a large share of the
    6 steps here, a few of a real run's thousands), so its last epoch is compared, within 10%; the training state
    keeps the scaler's for a resume."""
    from pipeline.classifier.train import ClassificationData, _batch_loss

    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train")
    cfg = {**cfgmod.defaults("classifier"), "feature_level": 3, "epochs": 3, "batch_size": 4, "lr": 0.01}
    mean, std = normalisation(BACKBONE)

    def run(precision, name):
        torch.manual_seed(0)
        model = build_classifier(cfg, len(DEMO_CLASSES) - 1, "offline")
        data = ClassificationData(voc, mean, std, 64, [0.9, 1.1], seed=0)
        loader = DataLoader(data, batch_size=4, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(0))
        with mixed_precision(precision):
            history = fit(model, loader, _batch_loss, cfg, tmp_path / f"{name}.partial", {"run": name}, "cpu",
                          "classifier", on_epoch=lambda epoch: setattr(data, "epoch", epoch))
        return [h["loss"] for h in history]

    ref, amp = run(None, "fp32"), run(dtype, str(dtype))
    assert amp != ref
    if dtype is torch.bfloat16:
        np.testing.assert_allclose(amp, ref, rtol=0.05)
    else:
        assert amp[-1] < amp[0] and abs(amp[-1] - ref[-1]) <= 0.1 * ref[-1]
    state = torch.load(tmp_path / f"{dtype}.partial", weights_only=True)
    assert ("scaler" in state) == (dtype is torch.float16)
