"""COCO-format datasets: index, rasterised masks against hand-worked label maps, labels, the reader
interface, clear errors, the demo's COCO export, and the DAG on a COCO-format fixture."""
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from coco_fixture import CATEGORIES, CLASSES, small_coco, write_split
from conftest import DEMO_CLASSES, REPO
from pipeline.data import coco, coco_export
from pipeline.data.datasets import open_split
from pipeline.data.voc import DatasetError, VOCDataset


def build(root, cache, split, classes=CLASSES):
    """What rules coco_index and coco_masks (one shard) do, then the reader the stages get."""
    index = coco.build_index(root, split, classes)
    coco.index_path(cache, split).parent.mkdir(parents=True, exist_ok=True)
    coco.index_path(cache, split).write_text(json.dumps(index))
    tally = coco.write_masks(index, [e["id"] for e in index["images"]], coco.masks_path(cache, split))
    return open_split(root, classes, split, coco_cache=cache), index, tally


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    expected = small_coco(root)
    cache = root / "results"
    train, index, tally = build(root, cache, "train2014")
    val, _, _ = build(root, cache, "val2014")
    return train, val, index, tally, expected


def test_masks_match_the_hand_worked_label_maps(small):
    train, val, _, _, expected = small
    for reader, image_id in ((train, "a"), (train, "g"), (val, "v")):
        mask = reader.load_mask(image_id)
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, expected[image_id], err_msg=image_id)


def test_labels_follow_the_files_category_order_and_include_crowd(small):
    train, val, index, _, _ = small
    assert train.ids == ["a", "g"] and val.ids == ["v"]          # empty.jpg has no annotation: left out
    assert index["without_annotations"] == 1
    assert train.image_labels("a").tolist() == [1, 2, 3]          # dog (id 18), cat (3), toothbrush (90, crowd)
    assert train.label_vector("g").tolist() == [0.0, 1.0, 0.0]
    assert val.image_labels("v").tolist() == [3]
    boxes = {(b.class_id, b.xmin, b.ymin, b.xmax, b.ymax, b.difficult) for b in train.boxes("a")}
    assert boxes == {(2, 3, 2, 4, 3, False), (1, 1, 1, 6, 5, False), (3, 6, 1, 8, 6, True)}   # VOC: 1-based


def test_images_of_any_size_and_grey_scale_load_as_rgb(small):
    train = small[0]
    grey = train.load_image("g")
    assert grey.shape == (5, 4, 3) and grey.dtype == np.uint8
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert train.load_image("a").shape == (6, 8, 3)


def test_the_mask_tally_counts_pixels_and_the_second_run_resumes(small, tmp_path):
    train, _, index, tally, expected = small
    assert tally["images"] == tally["computed_now"] == 2
    assert tally["pixels"] == {"background": int((expected["a"] == 0).sum() + (expected["g"] == 0).sum()),
                               "ignore": int((expected["a"] == 255).sum()),
                               "foreground": 30 + 6}
    out = tmp_path / "masks.h5"
    from pipeline.core.store import ArtifactWriter
    writer = ArtifactWriter(out, meta={"split": "train2014", "annotations": index["annotations"],
                                       "classes": CLASSES, "rule": coco.MASK_RULE})
    writer.write("a", expected["a"])
    writer.close()     # an interrupted run: a.jpg done, g.jpg not
    again = coco.write_masks(index, ["a", "g"], out)
    assert again["computed_now"] == 1 and again["pixels"] == tally["pixels"]


def test_the_reader_offers_the_voc_readers_interface(small):
    train = small[0]
    voc_only = {"split_file"}     # the VOC split lists, read by the Snakefile alone
    public = {n for n, _ in inspect.getmembers(VOCDataset, callable) if not n.startswith("_")} - voc_only
    for name in public:
        assert hasattr(train, name), name
        assert inspect.signature(getattr(VOCDataset, name)).parameters.keys() == \
            inspect.signature(getattr(type(train), name)).parameters.keys(), name
    for attr in ("ids", "classes", "split"):
        assert hasattr(train, attr)
    part = train.subset(["g"])
    assert part.ids == ["g"] and len(part) == 1 and len(train) == 2
    with pytest.raises(KeyError, match="not in split"):
        train.require_within(part)
    train.check(masks=True)


@pytest.mark.parametrize("break_it, message", [
    (lambda root: (root / "train2014" / "g.jpg").unlink(), "first missing file .*train2014/g.jpg"),
    (lambda root: write_split(root, "train2014", [{"id": 1, "file_name": "x.jpg", "height": 4, "width": 4}],
                              [{"id": 9, "image_id": 2, "category_id": 3, "segmentation": [[0, 0, 2, 0, 2, 2]]}]),
     "annotation 9 of .*instances_train2014.json refers to image id 2"),
    (lambda root: write_split(root, "train2014", [{"id": 1, "file_name": "x.jpg", "height": 4, "width": 4}],
                              [{"id": 9, "image_id": 1, "category_id": 5, "segmentation": [[0, 0, 2, 0, 2, 2]]}]),
     "annotation 9 of .*has category id 5, which is not in its 'categories'"),
    (lambda root: (root / "annotations" / "instances_train2014.json").write_text('{"images": [}'),
     "instances_train2014.json is not valid JSON"),
    (lambda root: write_split(root, "train2014", [], [], categories=CATEGORIES[::-1]),
     "do not match the configured classes"),
])
def test_bad_annotations_get_errors_naming_them(tmp_path, break_it, message):
    small_coco(tmp_path)
    break_it(tmp_path)
    with pytest.raises(DatasetError, match=message):
        coco.build_index(tmp_path, "train2014", CLASSES)


def test_a_missing_or_incomplete_root_fails_the_layout_check_naming_the_file(tmp_path):
    with pytest.raises(DatasetError, match="first missing file .*nowhere(.|\n)*instances_train2014.json"):
        coco.check_layout(tmp_path / "nowhere", "train2014")
    small_coco(tmp_path)
    assert coco.check_layout(tmp_path, "train2014") == tmp_path / "annotations" / "instances_train2014.json"
    (tmp_path / "train2014" / "empty.jpg").unlink()
    with pytest.raises(DatasetError, match="first missing file .*train2014/empty.jpg"):
        coco.check_layout(tmp_path, "train2014")


def test_the_demo_exported_to_coco_reads_back_as_the_same_images_masks_and_labels(tiny_voc, tmp_path):
    coco_export.export(tiny_voc, tmp_path / "coco", DEMO_CLASSES)
    for split in ("train", "val"):
        voc = VOCDataset(tiny_voc, DEMO_CLASSES, split)
        read, _, tally = build(tmp_path / "coco", tmp_path / "results", split, DEMO_CLASSES)
        assert read.ids == voc.ids
        assert tally["pixels"]["ignore"] > 0      # the border band came back as crowd regions
        for image_id in voc.ids:
            np.testing.assert_array_equal(read.load_mask(image_id), voc.load_mask(image_id))
            np.testing.assert_array_equal(read.load_image(image_id), voc.load_image(image_id))
            assert read.image_labels(image_id).tolist() == voc.image_labels(image_id).tolist()


def snakemake(*args, cwd, timeout=900):
    # PYTHONPATH: the jobs' `python -m stages...` import this checkout's code, not the one the venv
    # was installed from (an editable install resolves after sys.path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_the_dag_on_a_coco_format_fixture_runs_and_scores_the_seeds_as_on_its_voc_twin(tiny_voc, tmp_path):
    """The tiny demo in VOC layout and in COCO layout (plus, in COCO, an unannotated train image and a
    grey-scale val image with a polygon): the whole DAG runs on the COCO one, and the seeds (train:
    the same images, masks and labels) score the same as on the VOC one."""
    root = tmp_path / "coco"
    coco_export.export(tiny_voc, root, DEMO_CLASSES)
    for split, extra_image, extra_anns in (
            ("train", {"id": 900, "file_name": "unlabelled.jpg", "height": 70, "width": 60}, []),
            ("val", {"id": 901, "file_name": "grey.jpg", "height": 72, "width": 64},
             [{"id": 9000, "image_id": 901, "category_id": coco_export.category_id(2), "iscrowd": 0,
               "segmentation": [[10, 10, 40, 12, 30, 50]], "bbox": [10, 10, 30, 40], "area": 700.0}])):
        path = root / "annotations" / f"instances_{split}.json"
        data = json.loads(path.read_text())
        data["images"].append(extra_image)
        data["annotations"] += extra_anns
        write_split(root, split, [extra_image], [], pixels={
            extra_image["file_name"]: np.full((extra_image["height"], extra_image["width"]), 120, np.uint8)})
        path.write_text(json.dumps(data))

    small = {"classifier": {"epochs": 1, "batch_size": 4, "crop_size": 48, "workers": 0},
             "cams": {"scales": [1.0, 0.5]},
             "affinity": {"levels": [1, 2], "dims": [8, 8], "stride": 4, "crop_size": 48, "epochs": 1,
                          "batch_size": 4, "workers": 0},
             "segmentation": {"feature_level": 3, "channels": 32, "epochs": 1, "batch_size": 4,
                              "crop_size": 48, "workers": 0, "test_scales": [1.0]}}
    splits = {"classifier": "train", "classifier_val": "val", "cams": "train", "seeds": "train", "val": "val"}
    cfg = tmp_path / "fixture.yaml"
    cfg.write_text(yaml.safe_dump({"datasets": {
        "voc": {"root": str(tiny_voc), "classes": DEMO_CLASSES, "splits": splits, "overrides": small},
        "coco": {"root": str(root), "classes": DEMO_CLASSES, "splits": splits, "overrides": small}}}))
    run = snakemake("--cores", "2", "--configfile", str(cfg), "--", "results/voc/seeds/cam.json",
                    "results/coco/miou.json", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    res = tmp_path / "results"
    voc_seeds, coco_seeds = (json.loads((res / d / "seeds/cam.json").read_text()) for d in ("voc", "coco"))
    assert coco_seeds["images"] == voc_seeds["images"] == 10
    assert coco_seeds["miou"] == pytest.approx(voc_seeds["miou"], abs=1e-6)
    final = json.loads((res / "coco/miou.json").read_text())
    assert final["images"] == 7 and 0.0 <= final["miou"] <= 1.0     # 6 demo val images + the grey one
    index = json.loads((res / "coco/coco/train.json").read_text())
    assert index["without_annotations"] == 1 and len(index["images"]) == 10
    masks = json.loads((res / "coco/masks/val.json").read_text())
    assert masks["images"] == 7 and masks["ignore_fraction"] > 0
    assert not list(res.rglob("*.partial"))


def test_a_missing_or_incomplete_coco_root_stops_the_dry_run_naming_the_layout_and_file(tmp_path):
    from coco_fixture import listed_coco

    run = snakemake("-n", "--cores", "8", "results/coco/seeds/cam.json", cwd=tmp_path, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "first missing file data/coco" in out and "annotations/instances_train2014.json" in out

    listed_coco(tmp_path / "data/coco", train=5, val=3)
    (tmp_path / "data/coco/val2014/COCO_val2014_000000000002.jpg").unlink()
    run = snakemake("-n", "--cores", "8", "results/coco/miou.json", cwd=tmp_path, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "first missing file data/coco/val2014/COCO_val2014_000000000002.jpg" in out
    assert "data/coco/val2014/<file_name>" in out


def test_make_demo_writes_the_demo_in_coco_layout_as_the_export_of_the_voc_demo(tiny_voc, tmp_path):
    from conftest import TINY

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "stages.make_demo", "--out", str(tmp_path / "demo"),
                          "--classes", json.dumps(DEMO_CLASSES), "--generator", json.dumps({**TINY, "format": "coco"})],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    coco_export.export(tiny_voc, tmp_path / "reference", DEMO_CLASSES)
    for split in ("train", "val"):
        made, ref = (json.loads((tmp_path / d / "annotations" / f"instances_{split}.json").read_text())
                     for d in ("demo", "reference"))
        for key in ("images", "annotations", "categories"):
            assert made[key] == ref[key], key
        for image in made["images"]:
            name = image["file_name"]
            assert (tmp_path / "demo" / split / name).read_bytes() == (tiny_voc / "JPEGImages" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["demo", "reference"]   # no temporary left


def test_the_report_shows_the_published_coco_figures_beside_the_weak_network():
    from pipeline.evaluation import report

    ladder = [{"stage": "seeds (cam @ 0.15)", "metric": "mIoU", "split": "train2014", "value": 0.3},
              {"stage": "segmentation (weak)", "metric": "mIoU", "split": "val2014", "value": 0.25}]
    page = report.ladder_section({"ladder": ladder, "miou": 0.25}, report.COCO_ANCHORS, "COCO 2014")
    assert "published (COCO 2014)" in page
    weak_row = page[page.index("segmentation (weak)"):]
    assert "42.0 (MCTformer-V2)" in weak_row.split("</tr>")[0]
    assert "42.0" not in page[:page.index("segmentation (weak)")]


def test_an_rle_of_another_size_than_its_image_is_an_error_naming_the_annotation(tmp_path):
    write_split(tmp_path, "train2014", [{"id": 1, "file_name": "x.jpg", "height": 4, "width": 5}],
                [{"id": 9, "image_id": 1, "category_id": 3, "segmentation": {"size": [3, 3], "counts": [9]}},
                 {"id": 10, "image_id": 1, "category_id": 18, "segmentation": []}])
    index = coco.build_index(tmp_path, "train2014", CLASSES)
    with pytest.raises(DatasetError, match="annotation 9 of image id 1: its RLE is 3x3 .*the image 4x5"):
        coco.write_masks(index, ["x"], tmp_path / "masks.h5")


def test_an_annotation_without_polygons_labels_the_image_and_paints_nothing(tmp_path):
    write_split(tmp_path, "train2014", [{"id": 1, "file_name": "x.jpg", "height": 4, "width": 5}],
                [{"id": 10, "image_id": 1, "category_id": 18, "segmentation": []}])
    reader, _, _ = build(tmp_path, tmp_path / "results", "train2014")
    assert reader.image_labels("x").tolist() == [1]
    np.testing.assert_array_equal(reader.load_mask("x"), np.zeros((4, 5), np.uint8))
