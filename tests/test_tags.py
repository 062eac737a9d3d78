"""Tags datasets (a folder of images, a tags file, masks optional): the reader against hand-written
folders, its splits, every bad input stopped at `snakemake -n` with the file and line, and the DAG
on the demo written in the tags layout with masks for all, for val only and for no image."""
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import DEMO_CLASSES, REPO
from pipeline.data import tags
from pipeline.data.datasets import open_split
from pipeline.data.palette import save_label_png
from pipeline.data.voc import DatasetError, UnreadableImage, VOCDataset

CLASSES = ["background", "cat", "dog", "traffic light"]
SPLITS = {"classifier": "train", "classifier_val": "holdout", "cams": "all", "seeds": "all", "val": "all"}


def picture(path: Path, size=(8, 6), mode="RGB", seed=0) -> None:
    """An image of `size` (w, h) with random pixels, in whatever format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)


def folder(root: Path, csv: str = None) -> Path:
    """images/ with a subfolder and four formats, a tags CSV (a negative, a quoted class with a space)."""
    picture(root / "images" / "a.jpg")
    picture(root / "images" / "b.png", mode="RGBA", seed=1)
    picture(root / "images" / "garden" / "c.webp", size=(5, 4), seed=2)
    picture(root / "images" / "garden" / "d.bmp", mode="L", seed=3)
    (root / "tags.csv").write_text(csv if csv is not None else
                                   "image,tags\na.jpg,cat;dog\nb,\ngarden/c.webp,\"traffic light\"\ngarden/d,dog\n")
    return root


def snakemake(*args, cwd, timeout=900):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def write_config(path: Path, datasets: dict) -> Path:
    path.write_text(yaml.safe_dump({"datasets": datasets}))
    return path


# ---------------------------------------------------------------- the reader


def test_ids_are_relative_paths_without_extension_and_labels_come_from_the_tags(tmp_path):
    root = folder(tmp_path)
    reader = tags.TagsDataset(root, CLASSES, "all")
    assert reader.ids == ["a", "b", "garden/c", "garden/d"]           # the file's order
    assert reader.image_labels("a").tolist() == [1, 2]
    assert reader.image_labels("b").tolist() == []                     # a negative
    assert reader.label_vector("b").tolist() == [0.0, 0.0, 0.0]
    assert reader.image_labels("garden/c").tolist() == [3]
    assert reader.image_path("garden/d") == root / "images" / "garden" / "d.bmp"
    grey, rgba = reader.load_image("garden/d"), reader.load_image("b")
    assert grey.shape == (6, 8, 3) and (grey[..., 0] == grey[..., 2]).all()
    assert rgba.shape == (6, 8, 3) and reader.load_image("garden/c").shape == (4, 5, 3)


def test_a_json_mapping_reads_as_the_csv(tmp_path):
    csv_root, json_root = folder(tmp_path / "csv"), folder(tmp_path / "json")
    (json_root / "tags.json").write_text(json.dumps({"a.jpg": ["cat", "dog"], "b": [], "garden/c": "traffic light",
                                                     "garden/d.bmp": "dog"}))
    from_csv = tags.TagsDataset(csv_root, CLASSES, "all")
    from_json = tags.TagsDataset(json_root, CLASSES, "all", tags="tags.json")
    assert from_json.ids == from_csv.ids
    for image_id in from_csv.ids:
        assert from_json.image_labels(image_id).tolist() == from_csv.image_labels(image_id).tolist()


def test_classes_auto_are_background_then_the_tags_sorted_and_it_says_so(tmp_path, capsys):
    root = folder(tmp_path)
    assert tags.resolve_classes(root, "auto") == ["background", "cat", "dog", "traffic light"]
    assert "classes: auto -> ['background', 'cat', 'dog', 'traffic light']" in capsys.readouterr().err
    assert tags.resolve_classes(root, ["background", "dog", "cat", "traffic light"])[1] == "dog"


def test_the_held_out_split_is_a_seeded_fraction_and_train_the_rest(tmp_path):
    root = tmp_path
    for i in range(40):
        picture(root / "images" / f"{i:02d}.png", size=(3, 3), seed=i)
    (root / "tags.csv").write_text("".join(f"{i:02d}.png,{'cat' if i % 2 else 'dog'}\n" for i in range(40)))
    held = tags.TagsDataset(root, CLASSES, "holdout", holdout=0.25, seed=3)
    train = tags.TagsDataset(root, CLASSES, "train", holdout=0.25, seed=3)
    assert len(held) == 10 and len(train) == 30
    assert set(held.ids).isdisjoint(train.ids) and sorted(held.ids + train.ids) == [f"{i:02d}" for i in range(40)]
    expected = sorted(f"{i:02d}" for i in np.random.default_rng(3).permutation(40)[:10])
    assert held.ids == expected                                       # the file's order of the drawn images
    assert tags.TagsDataset(root, CLASSES, "holdout", holdout=0.25, seed=3).ids == held.ids
    assert tags.TagsDataset(root, CLASSES, "holdout", holdout=0.25, seed=4).ids != held.ids


def test_explicit_lists_and_the_tagged_and_masked_views(tmp_path):
    root = folder(tmp_path)
    (root / "splits").mkdir()
    (root / "splits" / "mine.txt").write_text("garden/d\nb\na.jpg\n")
    mask = np.array([[0, 1], [255, 2]], np.uint8)
    (root / "masks").mkdir()
    save_label_png(np.kron(mask, np.ones((3, 4), np.uint8)), root / "masks" / "a.png")    # a VOC-palette PNG
    Image.fromarray(np.zeros((6, 8), np.uint8), "L").save(root / "masks" / "b.png")     # an index PNG
    assert tags.TagsDataset(root, CLASSES, "mine").ids == ["garden/d", "b", "a"]
    assert tags.TagsDataset(root, CLASSES, "mine:tagged").ids == ["garden/d", "a"]
    assert tags.TagsDataset(root, CLASSES, "mine:masked").ids == ["b", "a"]
    assert tags.TagsDataset(root, CLASSES, "mine:tagged:masked").ids == ["a"]
    reader = tags.TagsDataset(root, CLASSES, "all")
    np.testing.assert_array_equal(reader.load_mask("a"), np.kron(mask, np.ones((3, 4), np.uint8)))
    np.testing.assert_array_equal(reader.load_mask("b"), np.zeros((6, 8), np.uint8))
    assert reader.has_mask("a") and not reader.has_mask("garden/c")
    with pytest.raises(DatasetError, match="first missing file .*masks/garden/c.png"):
        reader.check(masks=True)
    tags.TagsDataset(root, CLASSES, "all:masked").check(masks=True)
    with pytest.raises(DatasetError, match=r"split 'nope' .*no list .*splits/nope.txt.*all, train, holdout"):
        tags.TagsDataset(root, CLASSES, "nope")
    with pytest.raises(DatasetError, match="not the filter 'boxed'"):
        tags.TagsDataset(root, CLASSES, "all:boxed")


def test_the_reader_offers_the_voc_readers_interface(tmp_path):
    reader = open_split(folder(tmp_path), CLASSES, "all", tags={"file": "tags.csv", "holdout": 0.5, "seed": 0})
    assert isinstance(reader, tags.TagsDataset)
    public = {n for n, _ in inspect.getmembers(VOCDataset, callable) if not n.startswith("_")} - {"split_file"}
    for name in public:
        assert inspect.signature(getattr(VOCDataset, name)).parameters.keys() == \
            inspect.signature(getattr(tags.TagsDataset, name)).parameters.keys(), name
    assert reader.subset(["b"]).ids == ["b"]
    with pytest.raises(DatasetError, match="tags only, no boxes"):
        reader.boxes("a")


def test_the_demo_in_the_tags_layout_reads_back_as_the_voc_demo(tiny_voc, tmp_path):
    tags.export(tiny_voc, tmp_path / "t", DEMO_CLASSES, masks="val")
    for split in ("train", "val"):
        voc, read = VOCDataset(tiny_voc, DEMO_CLASSES, split), tags.TagsDataset(tmp_path / "t", DEMO_CLASSES, split)
        assert read.ids == voc.ids
        for image_id in voc.ids:
            assert read.image_labels(image_id).tolist() == voc.image_labels(image_id).tolist()
            np.testing.assert_array_equal(read.load_image(image_id), voc.load_image(image_id))
            assert read.has_mask(image_id) == (split == "val")
            if split == "val":
                np.testing.assert_array_equal(read.load_mask(image_id), voc.load_mask(image_id))


# ---------------------------------------------------------------- bad input, named


def _bad_header(root):
    (root / "images" / "a.jpg").write_bytes(b"not a jpeg at all")


def _bad_mask(root):
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((4, 5), np.uint8), "L").save(root / "masks" / "a.png")


BAD_INPUTS = {
    "missing tags file": (lambda root: (root / "tags.csv").unlink(), r"missing tags file \S*/tags.csv"),
    "tag not in classes": (lambda root: (root / "tags.csv").write_text("image,tags\na.jpg,cat;dgo\nb.png,dog\n"),
                           r"tags.csv line 2: tag 'dgo' is not one of the configured classes"),
    "image missing": (lambda root: (root / "tags.csv").write_text("image,tags\na.jpg,cat\nghost.jpg,dog\n"),
                      r"tags.csv line 3: image 'ghost' is not in \S*/images"),
    "image twice": (lambda root: (root / "tags.csv").write_text("image,tags\na.jpg,cat\nb,dog\na,dog\n"),
                    r"tags.csv line 4 lists image 'a' again \(first on line 2\)"),
    "unreadable image": (_bad_header, r"image \S*/images/a.jpg is not a readable image"),
    "mask size": (_bad_mask, r"mask \S*/masks/a.png is 5x4 \(w x h\), its image \S*/images/a.jpg is 8x6"),
    "every image negative": (lambda root: (root / "tags.csv").write_text("image,tags\na.jpg,\nb.png,\n"),
                             r"every image of \S*/tags.csv is a negative"),
}


def _broken(root: Path, break_it) -> Path:
    folder(root)
    break_it(root)
    return root


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_each_bad_input_is_an_error_naming_the_file_and_line(tmp_path, case):
    break_it, message = BAD_INPUTS[case]
    root = _broken(tmp_path, break_it)
    with pytest.raises(DatasetError, match=message) as caught:
        tags.check_dataset(root, "tags.csv", CLASSES, SPLITS)
    if case == "unreadable image":
        assert isinstance(caught.value, UnreadableImage)


def test_a_class_no_image_has_is_a_warning_naming_it_and_the_key(tmp_path):
    root = folder(tmp_path, "image,tags\na.jpg,cat\nb.png,dog\n")
    result = tags.check_dataset(root, "tags.csv", CLASSES, SPLITS)
    assert any("has the class 'traffic light' (config key 'classes')" in w for w in result.warnings)
    assert any("2 images of" in w and "are not in" in w for w in result.warnings)   # garden/c, garden/d unlisted
    assert result.images == 2 and result.negatives == 0


@pytest.mark.parametrize("case", [*BAD_INPUTS, "class without image"])
def test_each_bad_input_stops_the_dry_run_naming_the_file_and_line(tmp_path, case):
    if case == "class without image":
        root, message = folder(tmp_path / "mine", "image,tags\na.jpg,cat\nb.png,dog\n"), \
            r"WARNING: no image of \S*tags.csv has the class 'traffic light'"
    else:
        break_it, message = BAD_INPUTS[case]
        root = _broken(tmp_path / "mine", break_it)
    one = {"batch_size": 1}   # the two-image folder fits every batch
    cfg = write_config(tmp_path / "cfg.yaml", {"mine": {"kind": "tags", "root": str(root), "classes": CLASSES,
                                                        "splits": SPLITS, "overrides": {
                                                            "classifier": one, "affinity": one, "segmentation": one}}})
    run = snakemake("-n", "--cores", "1", "--configfile", str(cfg), "--", "results/mine/all", cwd=tmp_path, timeout=300)
    out = run.stdout + run.stderr
    assert re.search(message, out), out[-3000:]
    assert (run.returncode == 0) == (case == "class without image"), out[-3000:]


def test_classes_auto_and_holdout_are_checked_in_the_config():
    from pipeline.core import config as cfgmod

    base = yaml.safe_load((REPO / "config.yaml").read_text())
    base["datasets"] = {"v": {"kind": "voc", "root": "x", "classes": "auto", "splits": SPLITS}}
    with pytest.raises(cfgmod.ConfigError, match="'datasets.v.classes': 'auto' applies to kind 'tags' only"):
        cfgmod.validate(base)
    base["datasets"] = {"t": {"kind": "tags", "root": "x", "classes": "auto", "holdout": 1.5, "splits": SPLITS}}
    with pytest.raises(cfgmod.ConfigError, match="datasets.t.holdout"):
        cfgmod.validate(base)


# ---------------------------------------------------------------- the DAG


def test_the_scoring_rules_follow_the_masks_in_the_dry_run(tiny_voc, tmp_path):
    """No mask: no scoring rule, no miou.json; val masks only: miou.json on the masked val images,
    no seed scores; all masks: every score and the fully-supervised reference."""
    datasets = {}
    for masks in ("none", "val", "all"):
        tags.export(tiny_voc, tmp_path / masks, DEMO_CLASSES, masks=masks)
        datasets[masks] = {"kind": "tags", "root": str(tmp_path / masks), "classes": DEMO_CLASSES,
                           "splits": {"classifier": "train", "classifier_val": "val", "cams": "train",
                                      "seeds": "train", "val": "val"}, "overrides": SMALL}
    cfg = write_config(tmp_path / "cfg.yaml", datasets)
    jobs = {}
    for masks in datasets:
        run = snakemake("-n", "--cores", "1", "--configfile", str(cfg), "--", f"results/{masks}/all",
                        cwd=tmp_path, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        jobs[masks] = run.stdout
    assert "miou.json" not in jobs["none"] and "rule evaluate" not in jobs["none"]
    assert "rule evaluate_seeds" not in jobs["none"] and "miou_full" not in jobs["none"]
    assert "results/none/pseudo/cam" in jobs["none"] and "results/none/pred/cam" in jobs["none"]
    assert "results/val/miou.json" in jobs["val"] and "rule evaluate_seeds" not in jobs["val"]
    assert "miou_full" not in jobs["val"]
    assert "rule evaluate_seeds" in jobs["all"] and "results/all/miou_full.json" in jobs["all"]
    assert "--eval-split 'train:tagged:masked'" in jobs["all"] or "train:tagged:masked" in jobs["all"]


SMALL = {"classifier": {"epochs": 1, "batch_size": 4, "crop_size": 48, "workers": 0},
         "cams": {"methods": ["cam"], "scales": [1.0, 0.5]},
         "affinity": {"levels": [1, 2], "dims": [8, 8], "stride": 4, "crop_size": 48, "epochs": 1,
                      "batch_size": 4, "workers": 0},
         "segmentation": {"feature_level": 3, "channels": 32, "epochs": 1, "batch_size": 4,
                          "crop_size": 48, "workers": 0, "test_scales": [1.0], "test_crf": False}}


@pytest.mark.slow
def test_the_demo_in_the_tags_layout_runs_as_the_voc_layout_and_without_masks(tiny_voc, tmp_path):
    """With masks for all images the classifier, the CAMs and the pseudo-labels equal the VOC layout's;
    with masks for val only miou.json scores val alone; with none, results/{dataset}/all builds the
    pseudo-label PNGs, the network, its predictions (and root/unlabelled/'s labels), and no score."""
    from pipeline.core.store import ArtifactReader

    splits = {"classifier": "train", "classifier_val": "val", "cams": "train", "seeds": "train", "val": "val"}
    from_cams = {**SMALL, "refine": {"source": "cams"}}    # the random walk runs once, on tags_none
    datasets = {"voc": {"kind": "voc", "root": str(tiny_voc), "classes": DEMO_CLASSES, "splits": splits,
                        "overrides": from_cams}}
    for masks in ("all", "val", "none"):
        tags.export(tiny_voc, tmp_path / masks, DEMO_CLASSES, masks=masks)
        datasets[f"tags_{masks}"] = {"kind": "tags", "root": str(tmp_path / masks), "classes": DEMO_CLASSES,
                                     "splits": splits, "overrides": SMALL if masks == "none" else from_cams}
    negative = tmp_path / "none" / "images" / "negatives" / "n1.jpg"      # no tags, in a subfolder
    negative.parent.mkdir()
    negative.write_bytes((tiny_voc / "JPEGImages" / "val_0002.jpg").read_bytes())
    with open(tmp_path / "none" / "tags.csv", "a") as fh:
        fh.write("negatives/n1.jpg,\n")
    with open(tmp_path / "none" / "splits" / "train.txt", "a") as fh:
        fh.write("negatives/n1\n")
    (tmp_path / "none" / "unlabelled").mkdir()
    for image_id in ("val_0000", "val_0001"):
        (tmp_path / "none" / "unlabelled" / f"{image_id}.jpg").write_bytes(
            (tiny_voc / "JPEGImages" / f"{image_id}.jpg").read_bytes())
    cfg = write_config(tmp_path / "cfg.yaml", datasets)
    run = snakemake("--cores", "2", "-p", "--configfile", str(cfg), "--", "results/voc/pseudo/cam.h5",
                    "results/tags_all/pseudo/cam.h5", "results/tags_val/miou.json", "results/tags_none/all",
                    cwd=tmp_path, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    res = tmp_path / "results"

    voc_ckpt, tags_ckpt = (torch.load(res / d / "classifier.pt", weights_only=True) for d in ("voc", "tags_all"))
    state = voc_ckpt.get("state_dict", voc_ckpt)
    for key, value in state.items():
        if torch.is_tensor(value):
            assert torch.equal(value, tags_ckpt.get("state_dict", tags_ckpt)[key]), key
    for artifact in ("cams/cam.h5", "pseudo/cam.h5"):
        with ArtifactReader(res / "voc" / artifact) as voc, ArtifactReader(res / "tags_all" / artifact) as mine:
            assert sorted(voc.keys()) == sorted(mine.keys()) and len(voc) == 10
            for key in voc.keys():
                np.testing.assert_array_equal(voc[key], mine[key], err_msg=f"{artifact} {key}")
    voc_pseudo, all_pseudo = (json.loads((res / d / "pseudo/cam.json").read_text()) for d in ("voc", "tags_all"))
    assert all_pseudo["miou"] == pytest.approx(voc_pseudo["miou"], abs=1e-9) and all_pseudo["eval_images"] == 10

    scored = json.loads((res / "tags_val/miou.json").read_text())
    assert scored["images"] == 6 and scored["split"] == "val:masked"
    assert [row["stage"] for row in scored["ladder"]] == ["classifier", "segmentation (weak)"]
    assert json.loads((res / "tags_val/pseudo/cam.json").read_text())["eval_images"] == 0

    none = res / "tags_none"
    # the negative trains the classifier (split train: 11 images) and gets no CAM (train:tagged: 10)
    assert len(tags.TagsDataset(tmp_path / "none", DEMO_CLASSES, "train")) == 11
    commands = [line for line in (run.stdout + run.stderr).splitlines() if "--root " + str(tmp_path / "none") in line]
    assert any("stages.train_classifier" in c and "--train-split train " in c for c in commands)
    assert any("stages.extract_cams" in c and "--split train:tagged " in c for c in commands)
    assert not (none / "miou.json").exists() and not list(none.rglob("seeds/*.json"))
    assert sorted(p.stem for p in (none / "pseudo/cam").glob("*.png")) == [f"train_{i:04d}" for i in range(10)]
    assert sorted(p.stem for p in (none / "pred/cam").glob("*.png")) == [f"val_{i:04d}" for i in range(6)]
    assert (none / "segnet/cam.pt").is_file() and (none / "report.html").is_file()
    assert sorted(p.name for p in (none / "unlabelled").glob("*.png")) == \
        ["val_0000.png", "val_0000_overlay.png", "val_0001.png", "val_0001_overlay.png"]
    manifest = json.loads((none / "all").read_text())
    assert manifest["pseudo_png"]["images"] == 10 and manifest["pred_png"]["images"] == 6
    assert "miou" not in manifest and manifest["unlabelled"]["images"] == 2
    page = (none / "report.html").read_text()
    assert "Per-class pixel shares" in page and "nothing is scored" in page and "ground truth" not in page
    assert not list(res.rglob("*.partial"))


def test_make_demo_writes_the_demo_in_the_tags_layout_as_the_export_of_the_voc_demo(tiny_voc, tmp_path):
    from conftest import TINY

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "stages.make_demo", "--out", str(tmp_path / "demo"),
                          "--classes", json.dumps(DEMO_CLASSES),
                          "--generator", json.dumps({**TINY, "format": "tags", "masks": "val"})],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    tags.export(tiny_voc, tmp_path / "reference", DEMO_CLASSES, masks="val")
    made = sorted(p.relative_to(tmp_path / "demo") for p in (tmp_path / "demo").rglob("*") if p.is_file())
    ref = sorted(p.relative_to(tmp_path / "reference") for p in (tmp_path / "reference").rglob("*") if p.is_file())
    assert made == ref and not any(p.parts[0] == "masks" and p.name.startswith("train") for p in made)
    for rel in made:
        assert (tmp_path / "demo" / rel).read_bytes() == (tmp_path / "reference" / rel).read_bytes(), rel
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "reference"]


# ---------------------------------------------------------------- the report and the ladder without masks


def test_pixel_shares_count_the_labelled_pixels_of_every_map():
    from pipeline.evaluation import report

    maps = {"x": np.array([[0, 1], [1, 255]], np.uint8), "y": np.array([[2, 2], [0, 0]], np.uint8)}
    shares = report.pixel_shares(maps, ["background", "cat", "dog"])
    assert shares == pytest.approx({"background": 3 / 7, "cat": 2 / 7, "dog": 2 / 7})
    page = report.pixel_shares_section({"pseudo-labels": maps}, ["background", "cat", "dog"])
    assert "<td>pseudo-labels (2 images)</td><td>42.9</td><td>28.6</td><td>28.6</td>" in page


def test_the_ladder_leaves_out_the_stages_scored_on_no_image(tmp_path):
    from pipeline.evaluation.evaluate import ladder

    (tmp_path / "clf.json").write_text(json.dumps({"val_split": "val", "val_map": 0.5}))
    (tmp_path / "pseudo.json").write_text(json.dumps({"eval_split": "train:tagged:masked", "eval_images": 0,
                                                      "ladder": [{"step": "rw", "miou": None, "iou": {}}]}))
    segmentation = {"split": "val:masked", "miou": 0.4, "iou": {"background": 0.8, "cat": 0.0}}
    rows = ladder(tmp_path / "clf.json", None, tmp_path / "pseudo.json", segmentation, None)
    assert [(r["stage"], r["split"], r["value"]) for r in rows] == [("classifier", "val", 0.5),
                                                                    ("segmentation (weak)", "val:masked", 0.4)]


def test_the_manifest_counts_label_pngs_and_reads_the_score(tmp_path):
    from pipeline.evaluation.deliverables import manifest

    (tmp_path / "pngs" / "sub").mkdir(parents=True)
    for name in ("a.png", "a_overlay.png", "sub/b.png"):
        picture(tmp_path / "pngs" / name, size=(2, 2))
    (tmp_path / "miou.json").write_text(json.dumps({"miou": 0.25, "images": 3}))
    result = manifest({"pred_png": str(tmp_path / "pngs"), "miou": str(tmp_path / "miou.json")})
    assert result["pred_png"]["images"] == 2 and result["miou"]["miou"] == 0.25 and result["miou"]["images"] == 3
    with pytest.raises(FileNotFoundError, match="deliverable .*nothing.pt does not exist"):
        manifest({"segnet": str(tmp_path / "nothing.pt")})


@pytest.mark.parametrize("tags_text, split_list, message", [
    ("image,tags\na.jpg,cat;background\n", None, r"tags.csv line 2: tag 'background' is the background class"),
    ("image,tags\na.jpg,cat,dog\n", None, r"tags.csv line 2 has 3 fields; expected `image,tags`"),
    ("image,tags\na.jpg,cat\nb,dog\n", "a\nzzz\n", r"splits/mine.txt line 2: image 'zzz' is not listed in the tags"),
    ("image,tags\na.jpg,cat\nb,dog\n", "a\nb\na.jpg\n", r"splits/mine.txt line 3 lists image 'a' again \(first on line 1\)"),
])
def test_more_bad_input_named_by_file_and_line(tmp_path, tags_text, split_list, message):
    root = folder(tmp_path, tags_text)
    if split_list is not None:
        (root / "splits").mkdir()
        (root / "splits" / "mine.txt").write_text(split_list)
    with pytest.raises(DatasetError, match=message):
        tags.check_dataset(root, "tags.csv", CLASSES, {**SPLITS, "classifier": "mine"})


def test_json_tags_name_the_key(tmp_path):
    root = folder(tmp_path)
    (root / "tags.json").write_text(json.dumps({"a.jpg": ["cat"], "b.png": 3}))
    with pytest.raises(DatasetError, match=r"tags.json key 'b.png': expected a list of tag names"):
        tags.check_dataset(root, "tags.json", CLASSES, SPLITS)
    (root / "tags.json").write_text(json.dumps({"a.jpg": ["cat"], "a.png": ["dog"]}))
    with pytest.raises(DatasetError, match=r"keys 'a.jpg' and 'a.png' both name image 'a'"):
        tags.check_dataset(root, "tags.json", CLASSES, SPLITS)
