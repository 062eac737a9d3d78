"""Backbone weights given as a checkpoint path, checked against the network they are for before
anything trains (the dataset check, rules/common.smk): another backbone's checkpoint is a
WeightsError naming the file and the first key that does not fit, not a failure hours later."""
from __future__ import annotations

import json
import os
from pathlib import Path

NAMED = ("offline", "none", "timm")   # weights that are not a checkpoint path (pipeline/core/config.py)


def build(section: str, cfg: dict, classes: list[str]) -> None:
    """The network a config section configures, its backbone weights loaded."""
    if section == "affinity":
        from .affinity_net import AffinityNet
        AffinityNet(cfg["backbone"], cfg["levels"], cfg["dims"], cfg["stride"], cfg["output_stride"], cfg["weights"])
    elif section == "segmentation":
        from .segnet import build_segnet
        build_segnet(cfg, len(classes))
    else:   # the classifiers (classifier, classifier_vit)
        from .classifier import build_classifier
        build_classifier(cfg, len(classes) - 1, cfg["weights"])


def _stamp(section: str, cfg: dict) -> str:
    stat = os.stat(cfg["weights"])
    return json.dumps([section, cfg, stat.st_size, stat.st_mtime_ns], sort_keys=True)


def check_weights(sections: dict, classes: list[str], cache=None) -> list[str]:
    """Build each network of `sections` ({section: config}) whose `weights` is a checkpoint path;
    returns their names. With `cache` (a JSON file), a network that passed with the same settings
    and the same checkpoint file (size, modification time) is not built again."""
    cache = Path(cache) if cache else None
    passed = set()
    if cache is not None and cache.is_file():
        try:
            passed = set(json.loads(cache.read_text()))
        except ValueError:
            passed = set()
    checked = []
    for name, cfg in sorted(sections.items()):
        if cfg.get("weights", "none") in NAMED:
            continue
        stamp = _stamp(name, cfg)
        if stamp not in passed:
            build(name, cfg, classes)
            passed.add(stamp)
        checked.append(name)
    if cache is not None and checked:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sorted(passed)))
        tmp.replace(cache)
    return checked
