"""Load and validate config.yaml; merge per-dataset overrides into stage sections."""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names the key."""


def _key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(f"'{_key_path([*error.absolute_path, k])}'" for k in extra)
        return f"unknown config key {keys} (allowed here: {', '.join(allowed)})"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return f"config key '{_key_path([*error.absolute_path, missing[0]])}' is missing"
    return f"config key '{where}': {error.message}"


def validate(config: dict) -> dict:
    """Raise ConfigError naming the first offending key; return the config unchanged."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        # allOf/$ref nest the real cause; report the deepest one.
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_describe(best))
    for name, ds in config["datasets"].items():
        gen = ds.get("generator", {})
        if gen.get("min_size", 0) > gen.get("max_size", 1 << 30):
            raise ConfigError(f"config key 'datasets.{name}.generator': min_size > max_size")
        if ds["kind"] in ("voc", "coco") and "root" not in ds:
            raise ConfigError(f"config key 'datasets.{name}.root' is required for kind '{ds['kind']}'")
        for key in ("images", "annotations"):
            if key in ds and not is_coco(ds):
                raise ConfigError(f"config key 'datasets.{name}.{key}' applies to COCO-format datasets only")
        if len(set(ds["classes"])) != len(ds["classes"]):
            raise ConfigError(f"config key 'datasets.{name}.classes' has duplicate names")
        affinity = stage_config(config, name, "affinity")
        if len(affinity["levels"]) != len(affinity["dims"]) or affinity["levels"] != sorted(set(affinity["levels"])):
            raise ConfigError(f"config keys 'affinity.levels' {affinity['levels']} and 'affinity.dims' "
                              f"{affinity['dims']} (dataset '{name}'): levels must increase, one dim per level")
        steps = stage_config(config, name, "refine")["steps"]
        if "saliency" in steps[:-1]:
            raise ConfigError(f"config key 'refine.steps' {steps} (dataset '{name}'): saliency gives labels, "
                              "not maps, so it must be the last step")
        segmentation = stage_config(config, name, "segmentation")
        methods = stage_config(config, name, "cams")["methods"]
        if segmentation["labels_from"] not in methods:
            raise ConfigError(f"config key 'segmentation.labels_from' (dataset '{name}'): "
                              f"'{segmentation['labels_from']}' is not one of cams.methods {methods}")
        if segmentation["scale_attention"] and segmentation["attention_scales"][0] != 1.0:
            raise ConfigError(f"config key 'segmentation.attention_scales' {segmentation['attention_scales']} "
                              f"(dataset '{name}'): the first scale must be 1.0, the input itself")
    return config


def is_coco(dataset: dict) -> bool:
    """A dataset read in COCO format: kind coco, or a demo written in that layout."""
    return dataset["kind"] == "coco" or dataset.get("generator", {}).get("format") == "coco"


def load(path: str | Path) -> dict:
    with open(path) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(config)


def dataset_config(config: dict, dataset: str) -> dict:
    if dataset not in config["datasets"]:
        raise ConfigError(f"dataset '{dataset}' is not in config key 'datasets' "
                          f"(known: {', '.join(config['datasets'])})")
    return config["datasets"][dataset]


def stage_config(config: dict, dataset: str, section: str) -> dict:
    """The section's defaults with the dataset's overrides applied on top. The ViT classifier
    trains like the CNN one: its section is laid over the (overridden) classifier section."""
    merged = stage_config(config, dataset, "classifier") if section == "vit_classifier" else {}
    merged.update(copy.deepcopy(config[section]))
    merged.update(dataset_config(config, dataset).get("overrides", {}).get(section, {}))
    return merged
