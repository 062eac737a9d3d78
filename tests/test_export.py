"""The PNG hand-offs and the networks on a folder of new images."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.core.store import ArtifactWriter
from pipeline.data.palette import voc_palette
from pipeline.data.transforms import to_tensor
from pipeline.data.voc import load_rgb
from pipeline.models.classifier import Classifier, save_checkpoint
from pipeline.models.segnet import SegmentationNet, save_segnet
from stages import cams_folder, export_png, segment_folder

CLASSES = ["background", "a", "b", "c"]
MEAN, STD = [0.5] * 3, [0.5] * 3


def test_label_artifact_round_trips_through_palette_pngs(tmp_path):
    rng = np.random.default_rng(0)
    labels = {"2007_000032": rng.integers(0, 4, (13, 17)).astype(np.uint8),
              "img_b": np.full((5, 9), 255, np.uint8)}
    labels["2007_000032"][3:6, 4:8] = 255
    with ArtifactWriter(tmp_path / "pseudo.h5") as writer:
        for key, label in labels.items():
            writer.write(key, label)
    export_png.main(["--maps", str(tmp_path / "pseudo.h5"), "--out", str(tmp_path / "pngs")])
    files = sorted(p.name for p in (tmp_path / "pngs").iterdir())
    assert files == ["2007_000032.png", "img_b.png"]
    for key, label in labels.items():
        with Image.open(tmp_path / "pngs" / f"{key}.png") as png:
            assert png.mode == "P"
            palette = png.getpalette()
            back = np.asarray(png)
        np.testing.assert_array_equal(back, label)   # class ids, 255 kept
        # VOC's colours: class 1 dark red, class 2 green, 255 (ignore) cream
        assert palette[3:6] == [128, 0, 0] and palette[6:9] == [0, 128, 0]
        assert palette[765:768] == [224, 224, 192]
    assert not (tmp_path / "pngs.partial").exists()


def test_export_refuses_class_maps(tmp_path):
    with ArtifactWriter(tmp_path / "cams.h5") as writer:
        writer.write("x", np.zeros((2, 4, 4), np.float16))
    with pytest.raises(ValueError, match=r"cams\.h5.*'x'.*not a uint8 label map"):
        export_png.main(["--maps", str(tmp_path / "cams.h5"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.fixture
def folder(tmp_path):
    """Three images of odd sizes: an RGB JPEG, a grey-scale PNG, a PNG with alpha."""
    rng = np.random.default_rng(1)
    d = tmp_path / "images"
    d.mkdir()
    rgb = rng.integers(0, 256, (37, 53, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(d / "photo.jpg", quality=95)
    grey = rng.integers(0, 256, (20, 31)).astype(np.uint8)
    Image.fromarray(grey).save(d / "grey.png")
    rgba = np.zeros((41, 17, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:20, :, 3] = 255                    # top half opaque, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(d / "alpha.png")
    (d / "notes.txt").write_text("not an image")
    return d, {"photo": (37, 53), "grey": (20, 31), "alpha": (41, 17)}, grey


def test_folder_images_load_as_rgb(folder):
    d, sizes, grey = folder
    g = load_rgb(d / "grey.png")
    assert g.shape == (20, 31, 3) and g.dtype == np.uint8
    assert (g == grey[..., None]).all()      # grey repeated in the three channels
    a = load_rgb(d / "alpha.png")
    assert a.shape == (41, 17, 3)
    assert (a[:20] == (200, 100, 50)).all() and (a[20:] == 0).all()   # alpha composited on black


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg is not a readable image"):
        load_rgb(tmp_path / "broken.jpg")


def test_segment_folder_writes_the_networks_argmax(folder, tmp_path):
    d, sizes, _ = folder
    torch.manual_seed(0)
    net = SegmentationNet("tf_efficientnet_lite0", len(CLASSES), "aspp", 16, channels=32).eval()
    save_segnet(net, tmp_path / "segnet.pt", classes=CLASSES, mean=MEAN, std=STD)
    segment_folder.main(["--model", str(tmp_path / "segnet.pt"), "--images", str(d), "--out",
                         str(tmp_path / "seg"), "--no-flip", "--threads", "1"])
    names = sorted(p.name for p in (tmp_path / "seg").iterdir())
    assert names == sorted([f"{n}.png" for n in sizes] + [f"{n}_overlay.png" for n in sizes])
    for name, size in sizes.items():
        with Image.open(tmp_path / "seg" / f"{name}.png") as png:
            assert png.mode == "P"
            label = np.asarray(png)
        assert label.shape == size
        with torch.no_grad():   # the network's own argmax at scale 1, computed here directly
            logits = net(to_tensor(load_rgb(d / (name + (".jpg" if name == "photo" else ".png"))), MEAN, STD)[None])
        np.testing.assert_array_equal(label, logits[0].argmax(0).numpy())
        with Image.open(tmp_path / "seg" / f"{name}_overlay.png") as overlay:
            assert overlay.size == size[::-1] and overlay.mode == "RGB"


def test_cams_folder_maps_the_classes_the_classifier_finds(folder, tmp_path):
    d, sizes, _ = folder
    torch.manual_seed(0)
    model = Classifier("tf_efficientnet_lite0", len(CLASSES) - 1, weights="none").eval()
    save_checkpoint(model, tmp_path / "cls.pt", classes=CLASSES, mean=MEAN, std=STD)
    cams_folder.main(["--classifier", str(tmp_path / "cls.pt"), "--images", str(d), "--out", str(tmp_path / "cams"),
                      "--threshold", "0", "--scales", "1.0", "--threads", "1"])
    for name in sizes:
        report = json.loads((tmp_path / "cams" / f"{name}.json").read_text())
        assert report["found"] == ["a", "b", "c"]          # threshold 0: every class
        image = load_rgb(d / (name + (".jpg" if name == "photo" else ".png")))
        with torch.no_grad():
            expected = torch.sigmoid(model(to_tensor(image, MEAN, STD)[None]))[0].numpy()
        np.testing.assert_allclose([report["scores"][c] for c in ("a", "b", "c")], expected, rtol=1e-5)
        for cls in ("a", "b", "c"):
            with Image.open(tmp_path / "cams" / f"{name}_{cls}.png") as heat:
                assert heat.size == sizes[name][::-1]
    with pytest.raises(SystemExit):
        cams_folder.main(["--classifier", str(tmp_path / "cls.pt"), "--images", str(d), "--out", "x",
                          "--threshold", "1.5"])
    with pytest.raises(ValueError, match="'getam' needs a ViT classifier"):
        cams_folder.main(["--classifier", str(tmp_path / "cls.pt"), "--images", str(d), "--out", "x",
                          "--method", "getam"])


def test_console_scripts_name_existing_entry_points():
    import importlib
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"wsss-segment", "wsss-cams", "wsss-export-png"} <= set(scripts)
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))
