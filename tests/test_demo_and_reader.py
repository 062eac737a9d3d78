import hashlib
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import DEMO_CLASSES, REPO, TINY
from pipeline.core import config as cfgmod
from pipeline.data import demo
from pipeline.diagnostics import demo_anatomy
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


# the collar the demo is drawn with (config.yaml), so the statistics below are the shipped demo's
DEMO_COLLAR = {k: v for k, v in cfgmod.dataset_config(cfgmod.load(REPO / "config.yaml"), "demo")["generator"].items()
               if k.startswith("collar_")}


def _scenes(count, seed=TINY["seed"], collar=DEMO_COLLAR):
    return [demo.render(seed, "train", i, DEMO_CLASSES, TINY["min_size"], TINY["max_size"], **collar)
            for i in range(count)]


def _mean_colours(scenes, masks_of):
    """Per class: the mean RGB of each drawn region masks_of(scene) returns, one row per region."""
    colours = {c: [] for c in range(1, len(DEMO_CLASSES))}
    for scene in scenes:
        for cls, mask in masks_of(scene):
            if mask.sum() >= 20:
                colours[cls].append(scene.image[mask].astype(float).mean(0))
    return {c: np.array(rows) for c, rows in colours.items()}


def _class_distances(bodies):
    """Per class: the spread of its bodies' mean colours, and the distance of its centre to every other class's."""
    centre = {c: rows.mean(0) for c, rows in bodies.items()}
    spread = {c: np.linalg.norm(rows - centre[c], axis=1).mean() for c, rows in bodies.items()}
    return spread, {c: {d: np.linalg.norm(centre[c] - centre[d]) for d in bodies if d != c} for c in bodies}


def _twin(c):
    return DEMO_CLASSES.index(demo.twin(DEMO_CLASSES[c]))


def test_bodies_carry_their_class_colour_and_twins_look_alike():
    scenes = _scenes(150)
    bodies = _mean_colours(scenes, lambda s: s.bodies)
    assert all(len(rows) >= 10 for rows in bodies.values())
    spread, distances = _class_distances(bodies)
    for c, others in distances.items():
        # class evidence: a body's colour sits closer to its class than the classes sit to each other
        assert np.mean(list(others.values())) > 2 * spread[c], DEMO_CLASSES[c]
        # look-alike pairs: the twin is the nearest class
        assert min(others, key=others.get) == _twin(c)
    # and the bodies' own looks, without the collar that carries each part's colour into its body,
    # put a twin nearer than half the distance to any other class
    plain = _mean_colours(_scenes(150, collar={}), lambda s: s.bodies) if DEMO_COLLAR else bodies
    for c, others in _class_distances(plain)[1].items():
        twin = _twin(c)
        assert others[twin] < 0.5 * min(v for d, v in others.items() if d != twin), DEMO_CLASSES[c]


def test_the_part_tells_twins_apart_better_than_the_body():
    scenes = _scenes(150)

    def parts(scene):   # an object's visible region minus its body
        for cls in {c for c, _ in scene.objects}:
            whole = np.any([m for c, m in scene.objects if c == cls], axis=0)
            body = np.any([m for c, m in scene.bodies if c == cls] or [np.zeros_like(whole)], axis=0)
            yield cls, whole & ~body

    body = {c: rows.mean(0) for c, rows in _mean_colours(scenes, lambda s: s.bodies).items()}
    part = {c: rows.mean(0) for c, rows in _mean_colours(scenes, parts).items()}
    for c in (1, 3, 5):
        assert np.linalg.norm(part[c] - part[c + 1]) > 3 * np.linalg.norm(body[c] - body[c + 1])


def test_the_collar_blends_the_body_toward_the_part_by_distance_by_hand():
    """A 5 x 5 part (radius of the equal disc: sqrt(25 / pi)) at the left end of a grey body; along
    the part's middle row the distance to the part is exact, so the blend is 0.5 (1 - d / (2 * r))."""
    img = np.full((20, 40, 3), 100.0, np.float32)
    body, part = np.zeros((20, 40), bool), np.zeros((20, 40), bool)
    body[5:15, 5:35] = True
    part[8:13, 5:10] = True
    demo._collar(img, body, part, (200, 0, 40), tint_at_part=0.5, reach=2.0)
    reach_px = 2.0 * np.sqrt(25 / np.pi)   # 5.64 px
    for d in range(1, 9):
        t = 0.5 * max(0.0, 1 - d / reach_px)
        assert img[10, 9 + d] == pytest.approx([100 + 100 * t, 100 - 100 * t, 100 - 60 * t], abs=1e-4), d
    assert (img[~body] == 100).all()   # the background is left alone
    assert (img[5:15, 9 + 6:35] == 100).all()   # and the body beyond the reach


def test_the_collar_is_off_by_default_and_changes_only_the_bodies():
    plain = demo.render(TINY["seed"], "train", 3, DEMO_CLASSES, TINY["min_size"], TINY["max_size"])
    off = demo.render(TINY["seed"], "train", 3, DEMO_CLASSES, TINY["min_size"], TINY["max_size"], collar_tint=0.0)
    collared = demo.render(TINY["seed"], "train", 3, DEMO_CLASSES, TINY["min_size"], TINY["max_size"],
                           collar_tint=0.5, collar_reach=2.5)
    assert (plain.image == off.image).all()
    assert (plain.label == collared.label).all()
    changed = np.abs(plain.image.astype(int) - collared.image.astype(int)).max(2) > 2
    near_bodies = cv2.dilate(np.any([m for _, m in plain.bodies], axis=0).astype(np.uint8), np.ones((5, 5)))
    assert changed.any() and not (changed & ~near_bodies.astype(bool)).any()   # the 3x3 blur spreads 1 px


def test_distractors_are_rare_and_not_in_a_class_colour():
    scenes = _scenes(300)
    with_distractor = [s for s in scenes if s.distractors]
    assert 0 < len(with_distractor) <= 0.1 * len(scenes)   # at most about 1 image in 10
    for scene in with_distractor:
        for mask in scene.distractors:
            assert not scene.label[mask & (scene.label != 255)].any()   # background in the ground truth
    bodies = _mean_colours(scenes, lambda s: s.bodies)
    centre = {c: rows.mean(0) for c, rows in bodies.items()}
    spread = max(np.linalg.norm(rows - centre[c], axis=1).mean() for c, rows in bodies.items())
    for scene in with_distractor:
        for mask in scene.distractors:
            if mask.sum() >= 20:
                colour = scene.image[mask].astype(float).mean(0)
                assert min(np.linalg.norm(colour - m) for m in centre.values()) > 2 * spread


def test_cam_anatomy_by_hand():
    """A 40 x 40 scene: a 5 x 5 part at columns 5-9 and its body to the right (rows 5-9). The map
    is 1 on the part, 0.5 on the body up to 15 px from it, 0.1 beyond, 0.2 on the background."""
    label = np.zeros((40, 40), np.uint8)
    part, body = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    part[5:10, 5:10] = True
    body[5:10, 10:40] = True
    label[part | body] = 1
    scene = demo.Scene(np.zeros((40, 40, 3), np.uint8), label, [(1, part | body)], [(1, body)], [])
    cam = np.full((40, 40), 0.2)
    cam[part] = 1.0
    cam[5:10, 10:25] = 0.5   # distances 1..15 from the part: the first 16 px band
    cam[5:10, 25:40] = 0.1   # distances 16..30: the second
    other = np.ones((40, 40))  # a map of a class the scene lacks is not looked at
    result = demo_anatomy.anatomy([("x", scene)], lambda _: (np.stack([other, cam]), [3, 1]), DEMO_CLASSES,
                                  threshold=0.3)
    assert result["objects"] == 1
    assert result["part_mean"] == pytest.approx(1.0)
    assert result["body_at_or_above_threshold"] == pytest.approx(75 / 150)
    assert result["background_ring_mean"] == pytest.approx(0.2)
    assert [(b["from_px"], b["mean"]) for b in result["body_by_distance"]] == [(0, pytest.approx(0.5)),
                                                                             (16, pytest.approx(0.1))]


def test_class_map_on_own_twin_and_other_bodies_by_hand():
    """Three 10 x 10 bodies in a 30 x 40 scene: class 1's (with a 2 x 2 part), its twin 2's and
    class 3's. Class 1's map is 0.6 on its own body, 0.3 on the twin's, 0.1 on class 3's, 0 on
    the background but for one 10-pixel strip at 0.5; class 4's map (absent) is not looked at.
    Class 2's map counts class 1's body as its twin's; a body under 50 pixels is left out."""
    label = np.zeros((30, 40), np.uint8)
    masks = {}
    for cls, x in ((1, 0), (2, 12), (3, 24)):
        masks[cls] = np.zeros((30, 40), bool)
        masks[cls][0:10, x:x + 10] = True
        label[masks[cls]] = cls
    part = np.zeros((30, 40), bool)
    part[0:2, 0:2] = True
    tiny = np.zeros((30, 40), bool)
    tiny[20:25, 20:25] = True          # 25 pixels of class 3: too small to count
    label[tiny] = 3
    bodies = [(1, masks[1] & ~part), (2, masks[2]), (3, masks[3]), (3, tiny)]
    objects = [(1, masks[1]), (2, masks[2]), (3, masks[3] | tiny)]
    scene = demo.Scene(np.zeros((30, 40, 3), np.uint8), label, objects, bodies, [])
    map1 = np.zeros((30, 40))
    map1[masks[1]], map1[masks[2]], map1[masks[3]] = 0.6, 0.3, 0.1
    map1[29, 0:10] = 0.5
    map2 = np.zeros((30, 40))
    map2[masks[1]] = 0.2
    result = demo_anatomy.anatomy([("x", scene)], lambda _: (np.stack([map1, map2, np.ones((30, 40))]), [1, 2, 4]),
                                  DEMO_CLASSES, threshold=0.15)["class_map_on_bodies"]
    background = (label == 0).sum()
    assert result["own"] == {"bodies": 2, "mean": pytest.approx((0.6 + 0.0) / 2)}      # map 1 on body 1, map 2 on body 2
    assert result["twin"] == {"bodies": 2, "mean": pytest.approx((0.3 + 0.2) / 2)}     # map 1 on body 2, map 2 on body 1
    assert result["other"] == {"bodies": 2, "mean": pytest.approx((0.1 + 0.0) / 2)}    # both maps on class 3's body
    assert result["background"] == {"bodies": 2, "mean": pytest.approx((5.0 / background + 0.0) / 2)}
