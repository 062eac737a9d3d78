"""Scatter/gather for the per-image stages (CAMs, affinity labels, random walk, refinement,
prediction).

A stage run on shard k of n (1-based, "k-of-n") handles every n-th image of its split, from
the k-th on (interleaved, so every shard gets a like mix of images), and writes its own HDF5
artifact plus a *tally*: the additive part of its report. The gather step copies the shards'
datasets into one artifact (no recompute; store.merge_artifacts) and turns the summed tallies
into the stage's report. Everything in a tally either adds up over shards or is the same in
all of them, so the gathered report of n shards equals the one of a single shard:

images, computed_now, eval_images   counts
seconds                              time spent on the images computed now
pixels                               {name: count}, reported as {name}_fraction of their sum
confusion                            [[step, confusion matrix], ...] on the eval images of the
                                     shard, reported as a ladder of scores (the last one on top)
anything else                        must be equal in every shard
"""
from __future__ import annotations

import re

import numpy as np

from pipeline.core.store import merge_artifacts
from pipeline.data.voc import VOCDataset
from pipeline.maps.metrics import scores

SHARD_RE = re.compile(r"(\d+)-of-(\d+)")
COUNTS = ("images", "computed_now", "eval_images", "seconds")


def parse_shard(text: str) -> tuple[int, int]:
    """'2-of-4' -> (2, 4); anything else is an error naming the value."""
    match = SHARD_RE.fullmatch(text)
    number, count = (int(g) for g in match.groups()) if match else (0, 0)
    if not 1 <= number <= count:
        raise ValueError(f"shard {text!r}: expected 'k-of-n' with 1 <= k <= n, e.g. '1-of-4'")
    return number, count


def shard_ids(ids: list[str], number: int, count: int) -> list[str]:
    """Shard `number` of `count` (1-based): ids[number - 1], ids[number - 1 + count], ..."""
    return list(ids[number - 1::count])


def select_shard(voc: VOCDataset, shard: str, eval_voc: VOCDataset | None = None):
    """(the images of voc in this shard, the images of eval_voc among them). Each shard scores its
    own part of the eval split, which therefore must lie within voc's split."""
    number, count = parse_shard(shard)
    part = voc.subset(shard_ids(voc.ids, number, count))
    if eval_voc is None:
        return part, None
    eval_voc.require_within(voc)
    held = set(part.ids)
    return part, eval_voc.subset([i for i in eval_voc.ids if i in held])


def merge_tallies(tallies: list[dict], names: list[str]) -> dict:
    """Sum the shards' tallies (`names` name them in errors)."""
    if not tallies:
        raise ValueError("no shard tallies to merge")
    merged = {}
    for key, first in tallies[0].items():
        values = []
        for tally, name in zip(tallies, names):
            if key not in tally:
                raise KeyError(f"shard tally {name} has no '{key}' (the tally of {names[0]} has)")
            values.append(tally[key])
        if key in COUNTS:
            merged[key] = sum(values)
        elif key == "pixels":
            merged[key] = {k: sum(v[k] for v in values) for k in first}
        elif key == "confusion":
            merged[key] = _sum_confusions(values, names)
        elif any(v != first for v in values):
            bad = next(name for v, name in zip(values, names) if v != first)
            raise ValueError(f"shard tallies disagree on '{key}': {names[0]} has {first!r}, {bad} has "
                             f"{tallies[names.index(bad)][key]!r} (shards of different runs?)")
        else:
            merged[key] = first
    return merged


def _sum_confusions(values: list, names: list[str]) -> list:
    steps = [step for step, _ in values[0]]
    for value, name in zip(values, names):
        if [step for step, _ in value] != steps:
            raise ValueError(f"shard tally {name} scores steps {[s for s, _ in value]}, {names[0]} scores {steps}")
    return [[step, np.sum([np.asarray(v[i][1], np.int64) for v in values], axis=0).tolist()]
            for i, step in enumerate(steps)]


def tally_report(tally: dict, classes: list[str]) -> dict:
    """A stage's report from its (merged) tally."""
    report = {k: v for k, v in tally.items() if k not in ("seconds", "pixels", "confusion")}
    if "seconds" in tally:
        report["seconds_per_image"] = tally["seconds"] / tally["computed_now"] if tally["computed_now"] else None
    if "pixels" in tally:
        total = max(sum(tally["pixels"].values()), 1)
        report.update({f"{name}_fraction": n / total for name, n in tally["pixels"].items()})
    if tally.get("confusion"):
        ladder = [{"step": step, **scores(np.asarray(matrix), classes)} for step, matrix in tally["confusion"]]
        report.update({k: v for k, v in ladder[-1].items() if k != "step"})
        report["ladder"] = ladder
    return report


def gather(artifacts: list[str], tallies: list[dict], tally_names: list[str], out, classes: list[str]) -> dict:
    """Merge the shards' artifacts into `out` and return the stage's report."""
    tally = merge_tallies(tallies, tally_names)
    keys = merge_artifacts(artifacts, out)
    if keys != tally["images"]:
        raise ValueError(f"the shards {artifacts} hold {keys} images, their tallies count {tally['images']}")
    return {**tally_report(tally, classes), "shards": len(artifacts)}
