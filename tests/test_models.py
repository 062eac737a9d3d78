import pytest
import torch
import timm
from skimage import data

from pipeline.data.transforms import to_tensor
from pipeline.models.classifier import Classifier, load_classifier, save_checkpoint
from pipeline.models.weights import WeightsError, load_backbone_weights, load_offline_efficientnet_lite0

CATS = {281, 282, 283, 284, 285}  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_offline_weights_classify_a_real_cat():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    load_offline_efficientnet_lite0(model)
    image = torch.nn.functional.interpolate(to_tensor(data.chelsea(), (0.5,) * 3, (0.5,) * 3)[None],
                                            size=(224, 224), mode="bilinear", align_corners=False)
    with torch.no_grad():
        top = model(image).softmax(1)[0].topk(3)
    assert int(top.indices[0]) in CATS
    assert float(top.values[0]) > 0.5


def test_offline_weights_fill_the_headless_backbone():
    model = Classifier("tf_efficientnet_lite0", 5, weights="offline")
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_offline_efficientnet_lite0(reference)
    ours, ref = model.backbone.model.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[k], ref[k]) for k in ours)


def test_offline_weights_for_another_backbone_are_refused():
    with pytest.raises(WeightsError, match="resnet18"):
        load_backbone_weights(timm.create_model("resnet18", pretrained=False), "resnet18", "offline")


def test_checkpoint_roundtrip_and_backbone_mismatch(tmp_path):
    model = Classifier("tf_efficientnet_lite0", 3, weights="none").eval()
    path = tmp_path / "classifier.pt"
    save_checkpoint(model, path, classes=["background", "a", "b", "c"], mean=[0.5] * 3, std=[0.5] * 3)
    loaded, meta = load_classifier(path, "tf_efficientnet_lite0")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), model(x))
    assert meta["classes"] == ["background", "a", "b", "c"]
    with pytest.raises(ValueError, match="'tf_efficientnet_lite0'.*'resnet50'"):
        load_classifier(path, "resnet50")
    ckpt = tmp_path / "foreign.pt"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), ckpt)
    with pytest.raises(WeightsError, match="another backbone"):
        Classifier("tf_efficientnet_lite0", 3, weights=str(ckpt))


def test_earlier_feature_level_is_the_network_cut_after_that_stage():
    # level 3 of EfficientNet-Lite0 ends after blocks[4] (112 channels, stride 16)
    ours = Classifier("tf_efficientnet_lite0", 5, weights="offline", feature_level=3).eval()
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0, global_pool="",
                             output_stride=16).eval()
    load_offline_efficientnet_lite0(full)
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        expected = full.bn1(full.conv_stem(x))
        for stage in full.blocks[:5]:
            expected = stage(expected)
        got = ours.features(x)
    assert got.shape == (1, 112, 6, 5)
    assert torch.allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="feature_level 9"):
        Classifier("tf_efficientnet_lite0", 5, feature_level=9)


def test_vit_hybrid_checkpoint_loads_back_as_a_vit(tmp_path):
    from pipeline.models.classifier import build_classifier
    from pipeline.models.vit_hybrid import ViTHybridClassifier

    cfg = {"kind": "vit_hybrid", "backbone": "tf_efficientnet_lite0", "embed_dim": 16, "depth": 2, "heads": 2,
           "start_block": 1, "output_stride": 16, "feature_level": 2}
    model = build_classifier(cfg, 3).eval()
    path = tmp_path / "classifier_vit.pt"
    save_checkpoint(model, path, classes=["background", "a", "b", "c"], mean=[0.5] * 3, std=[0.5] * 3)
    loaded, meta = load_classifier(path, "tf_efficientnet_lite0")
    assert isinstance(loaded, ViTHybridClassifier) and meta["kind"] == "vit_hybrid"
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), model(x))


def test_another_networks_or_a_truncated_checkpoint_is_named(tmp_path):
    from pipeline.models.affinity_net import AffinityNet, save_affinity_net
    save_affinity_net(AffinityNet("tf_efficientnet_lite0", [1, 2], [8, 16], 4, 16, "none"), tmp_path / "aff.pt")
    with pytest.raises(ValueError, match=r"aff.pt is not a classifier checkpoint .*describes an AffinityNet"):
        load_classifier(tmp_path / "aff.pt")
    whole = (tmp_path / "aff.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ValueError, match=r"cannot read classifier checkpoint .*cut.pt .*truncated"):
        load_classifier(tmp_path / "cut.pt")
