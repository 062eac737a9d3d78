import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO_CLASSES, TINY
from pipeline.data import demo
from pipeline.data.voc import DatasetError, VOCDataset


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path, tiny_voc):
    demo.generate(tmp_path / "again", DEMO_CLASSES, **TINY)
    first, second = _digest(tiny_voc), _digest(tmp_path / "again")
    assert len(first) == 3 * (TINY["n_train"] + TINY["n_val"]) + 2
    assert first == second


def test_other_seed_gives_other_images(tmp_path, tiny_voc):
    demo.generate(tmp_path / "other", DEMO_CLASSES, **{**TINY, "seed": TINY["seed"] + 1})
    a = (tiny_voc / "JPEGImages" / "train_0000.jpg").read_bytes()
    b = (tmp_path / "other" / "JPEGImages" / "train_0000.jpg").read_bytes()
    assert a != b


def test_reader_labels_agree_with_masks(tiny_voc):
    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train")
    voc.check(masks=True)
    assert voc.ids == [f"train_{i:04d}" for i in range(TINY["n_train"])]
    for image_id in voc.ids:
        image, mask = voc.load_image(image_id), voc.load_mask(image_id)
        assert image.dtype == np.uint8 and image.shape == (*mask.shape, 3)
        in_mask = set(np.unique(mask)) - {0, 255}
        # every labelled class has pixels; the XML may not list a class the mask lacks
        assert set(voc.image_labels(image_id).tolist()) == in_mask
        assert (mask == 255).any()   # the VOC border band
        for box in voc.boxes(image_id):
            assert 1 <= box.xmin <= box.xmax <= mask.shape[1] and 1 <= box.ymin <= box.ymax <= mask.shape[0]
            region = mask[box.ymin - 1:box.ymax, box.xmin - 1:box.xmax]
            assert (region == box.class_id).any()
        vec = voc.label_vector(image_id)
        assert vec.shape == (len(DEMO_CLASSES) - 1,) and set(np.nonzero(vec)[0] + 1) == in_mask


def test_masks_are_palette_pngs_with_the_voc_colours(tiny_voc):
    with Image.open(tiny_voc / "SegmentationClass" / "train_0000.png") as img:
        assert img.mode == "P"
        palette = img.getpalette()
    assert palette[3:6] == [128, 0, 0] and palette[6:9] == [0, 128, 0] and palette[765:768] == [224, 224, 192]


def test_several_classes_and_objects_occur(tiny_voc):
    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train")
    counts = [len(voc.image_labels(i)) for i in voc.ids]
    assert max(counts) >= 2 and min(counts) >= 1


def test_missing_dataset_names_the_layout(tmp_path):
    with pytest.raises(DatasetError) as err:
        VOCDataset(tmp_path / "nowhere", DEMO_CLASSES, "train")
    text = str(err.value)
    assert "ImageSets/Segmentation/train.txt" in text and "JPEGImages/<id>.jpg" in text


def test_incomplete_dataset_names_the_first_missing_file(tmp_path, tiny_voc):
    root = tmp_path / "copy"
    shutil.copytree(tiny_voc, root)
    (root / "SegmentationClass" / "train_0003.png").unlink()
    voc = VOCDataset(root, DEMO_CLASSES, "train")
    voc.check(masks=False)  # masks are not needed to train a classifier
    with pytest.raises(DatasetError, match="train_0003.png"):
        voc.check(masks=True)


def test_corrupt_image_and_unknown_class_are_named(tmp_path, tiny_voc):
    root = tmp_path / "copy"
    shutil.copytree(tiny_voc, root)
    (root / "JPEGImages" / "train_0001.jpg").write_bytes(b"not a jpeg")
    xml = root / "Annotations" / "train_0002.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>x", 1))
    voc = VOCDataset(root, DEMO_CLASSES, "train")
    with pytest.raises(DatasetError, match="train_0001.jpg"):
        voc.load_image("train_0001")
    with pytest.raises(DatasetError, match="train_0002.xml.*'x"):
        voc.image_labels("train_0002")


def test_mask_with_an_unknown_class_index_is_rejected(tmp_path, tiny_voc):
    root = tmp_path / "copy"
    shutil.copytree(tiny_voc, root)
    mask = np.zeros((8, 8), np.uint8)
    mask[0, 0] = 9
    Image.fromarray(mask, mode="L").save(root / "SegmentationClass" / "train_0000.png")
    with pytest.raises(DatasetError, match="class index 9"):
        VOCDataset(root, DEMO_CLASSES, "train").load_mask("train_0000")


def test_a_repeated_id_and_an_object_without_a_box_are_named(tmp_path, tiny_voc):
    root = tmp_path / "copy"
    shutil.copytree(tiny_voc, root)
    split = root / "ImageSets/Segmentation/train.txt"
    split.write_text(split.read_text() + "train_0003\n")
    with pytest.raises(DatasetError, match=r"train.txt lists image 'train_0003' more than once"):
        VOCDataset(root, DEMO_CLASSES, "train")
    xml = root / "Annotations" / "train_0002.xml"
    text = xml.read_text()
    start, end = text.index("<bndbox>"), text.index("</bndbox>") + len("</bndbox>")
    xml.write_text(text[:start] + text[end:])
    voc = VOCDataset(root, DEMO_CLASSES, "val")   # (the train list now repeats an id)
    with pytest.raises(DatasetError, match=r"train_0002.xml: object '\w+' has no readable <bndbox>"):
        voc.boxes("train_0002")
