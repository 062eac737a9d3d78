"""Scatter/gather of the per-image stages: shard selection, merged artifacts and merged tallies."""
import h5py
import numpy as np
import pytest

from conftest import DEMO_CLASSES
from pipeline.core.shards import merge_tallies, parse_shard, select_shard, shard_ids, tally_report
from pipeline.core.store import ArtifactReader, ArtifactWriter, merge_artifacts
from pipeline.data.voc import VOCDataset


def test_parse_shard():
    assert parse_shard("1-of-1") == (1, 1) and parse_shard("3-of-4") == (3, 4)
    for bad in ("0-of-4", "5-of-4", "1of4", "a-of-b", ""):
        with pytest.raises(ValueError, match="k-of-n"):
            parse_shard(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 9])
def test_shards_partition_the_images(count):
    ids = [f"img{i}" for i in range(7)]
    parts = [shard_ids(ids, k, count) for k in range(1, count + 1)]
    assert sorted(sum(parts, [])) == sorted(ids)                       # every image once
    assert max(map(len, parts)) - min(map(len, parts)) <= 1             # balanced
    assert parts[0][:2] == ids[:count * 2:count]                        # interleaved


def test_each_shard_scores_its_part_of_the_eval_split(tiny_voc):
    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train")
    evaluated = VOCDataset(tiny_voc, DEMO_CLASSES, "train").subset(voc.ids[::2])
    parts = [select_shard(voc, f"{k}-of-3", evaluated) for k in (1, 2, 3)]
    assert sorted(i for _, e in parts for i in e.ids) == sorted(evaluated.ids)
    for part, scored in parts:
        assert set(scored.ids) <= set(part.ids) and part.split == voc.split
    with pytest.raises(KeyError, match="images of split 'val' are not in split 'train'"):
        select_shard(voc, "1-of-2", VOCDataset(tiny_voc, DEMO_CLASSES, "val"))


def write(path, items, meta):
    with ArtifactWriter(path, meta=meta) as writer:
        for key, (array, classes) in items.items():
            writer.write(key, array, classes=classes)


def test_merged_shards_equal_the_single_artifact(tmp_path):
    rng = np.random.default_rng(0)
    items = {f"2007_{i:06d}": (rng.random((2, 9 + i, 7)).astype(np.float32), np.asarray([i % 5 + 1, 3]))
             for i in range(7)}
    meta = {"method": "cam", "scales": [1.0, 0.5]}
    write(tmp_path / "whole.h5", items, meta)
    keys = sorted(items)
    shards = []
    for k in (1, 2, 3):
        path = tmp_path / f"s{k}.h5"
        write(path, {key: items[key] for key in shard_ids(keys, k, 3)}, meta)
        shards.append(path)
    assert merge_artifacts(shards, tmp_path / "merged.h5") == 7

    whole, merged = ArtifactReader(tmp_path / "whole.h5"), ArtifactReader(tmp_path / "merged.h5")
    assert merged.keys() == whole.keys() == keys and merged.meta == whole.meta == meta
    for key in keys:
        assert merged[key].dtype == np.float16 and np.array_equal(merged[key], whole[key])
        assert np.array_equal(merged.attrs(key)["classes"], whole.attrs(key)["classes"])
    with h5py.File(tmp_path / "merged.h5") as f:   # copied as stored: still compressed
        assert f[keys[0]].compression == "gzip"
    assert not (tmp_path / "merged.h5.partial").exists()


def test_merge_refuses_repeated_keys_and_other_parameters(tmp_path):
    a = {"x": (np.zeros((1, 2, 2), np.float32), np.asarray([1]))}
    write(tmp_path / "a.h5", a, {"scales": [1.0]})
    write(tmp_path / "b.h5", a, {"scales": [1.0]})
    write(tmp_path / "c.h5", {"y": a["x"]}, {"scales": [0.5]})
    with pytest.raises(ValueError, match=r"key 'x' is in both .*a\.h5 and .*b\.h5"):
        merge_artifacts([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "m.h5")
    with pytest.raises(ValueError, match=r"c\.h5 was written with other parameters"):
        merge_artifacts([tmp_path / "a.h5", tmp_path / "c.h5"], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / "m.h5.partial").exists()


def test_merged_tallies_give_the_report_of_the_summed_counts():
    t1 = {"split": "train", "images": 3, "computed_now": 1, "seconds": 2.0, "pixels": {"fg": 3, "bg": 1},
          "confusion": [["rw", [[2, 1], [0, 3]]]]}
    t2 = {"split": "train", "images": 2, "computed_now": 2, "seconds": 4.0, "pixels": {"fg": 1, "bg": 3},
          "confusion": [["rw", [[1, 0], [1, 2]]]]}
    report = tally_report(merge_tallies([t1, t2], ["a.json", "b.json"]), ["background", "cat"])
    # summed matrix [[3, 1], [1, 5]]: IoU background 3 / 5, cat 5 / 7
    assert report["iou"] == {"background": pytest.approx(0.6), "cat": pytest.approx(5 / 7)}
    assert report["miou"] == pytest.approx((0.6 + 5 / 7) / 2)
    assert report["ladder"][0]["step"] == "rw" and report["ladder"][0]["miou"] == report["miou"]
    assert report["images"] == 5 and report["seconds_per_image"] == pytest.approx(2.0)
    assert report["fg_fraction"] == report["bg_fraction"] == 0.5 and report["split"] == "train"


def test_tallies_of_different_runs_are_refused():
    t1 = {"split": "train", "images": 1}
    with pytest.raises(ValueError, match=r"disagree on 'split': a.json has 'train', b.json has 'val'"):
        merge_tallies([t1, {"split": "val", "images": 1}], ["a.json", "b.json"])
    with pytest.raises(KeyError, match="b.json has no 'split'"):
        merge_tallies([t1, {"images": 1}], ["a.json", "b.json"])
    with pytest.raises(ValueError, match="scores steps"):
        merge_tallies([{"confusion": [["rw", [[1]]]]}, {"confusion": [["cams", [[1]]]]}], ["a.json", "b.json"])
