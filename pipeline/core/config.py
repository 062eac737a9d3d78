"""Load and validate config.yaml; merge per-dataset overrides into stage sections."""
from __future__ import annotations

import copy
import functools
import importlib.metadata
import os
from pathlib import Path

import jsonschema
import yaml

from pipeline.core.cam_methods import ALL_METHODS
from pipeline.maps.calibration import check_calibration_split

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
DEFAULTS_PATH = Path(__file__).resolve().parents[2] / "config.yaml"   # the checkout's defaults
# the sections whose `backbone` is a timm model name (vit_classifier's, laid over classifier's)
BACKBONE_SECTIONS = ("classifier", "vit_classifier", "mct_classifier", "affinity", "irn", "segmentation")
# keys of `weights` that are not a checkpoint path (pipeline.models.weights)
NAMED_WEIGHTS = ("offline", "none", "timm")


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


@functools.cache
def _schema() -> dict:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    schema["$defs"]["cams"]["properties"]["methods"]["items"] = {"enum": list(ALL_METHODS)}
    return schema


def schema() -> dict:
    """config.schema.yaml, with the CAM method names from the registry (pipeline/core/cam_methods.py)."""
    return copy.deepcopy(_schema())


def defaults(section: str) -> dict:
    """A section of config.yaml's defaults (empty when the package runs without its checkout)."""
    if not DEFAULTS_PATH.exists():
        return {}
    return yaml.safe_load(DEFAULTS_PATH.read_text()).get(section, {})


def validate(config: dict) -> dict:
    """Raise ConfigError naming the first offending key; return the config unchanged."""
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        # allOf/$ref nest the real cause; report the deepest one.
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_describe(best))
    for name, ds in config["datasets"].items():
        gen = ds.get("generator", {})
        if gen.get("min_size", 0) > gen.get("max_size", 1 << 30):
            raise ConfigError(f"config key 'datasets.{name}.generator': min_size > max_size")
        if ds["kind"] in ("voc", "coco", "tags") and "root" not in ds:
            raise ConfigError(f"config key 'datasets.{name}.root' is required for kind '{ds['kind']}'")
        for key in ("images", "annotations"):
            if key in ds and not is_coco(ds):
                raise ConfigError(f"config key 'datasets.{name}.{key}' applies to COCO-format datasets only")
        for key in ("tags", "holdout"):
            if key in ds and ds["kind"] != "tags":
                raise ConfigError(f"config key 'datasets.{name}.{key}' applies to kind 'tags' only")
        if "masks" in ds.get("generator", {}) and not is_tags(ds):
            raise ConfigError(f"config key 'datasets.{name}.generator.masks' applies to format 'tags' only")
        if ds["classes"] == "auto":
            if ds["kind"] != "tags":
                raise ConfigError(f"config key 'datasets.{name}.classes': 'auto' applies to kind 'tags' only "
                                  "(it reads the classes from the tags file)")
        elif len(set(ds["classes"])) != len(ds["classes"]):
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
        for section in ("seeds", "boxes"):
            start, stop, step = stage_config(config, name, section)["sweep"]
            if step <= 0 or start > stop:
                raise ConfigError(f"config key '{section}.sweep' [{start}, {stop}, {step}] (dataset '{name}'): "
                                  "expected [start, stop, step] with start <= stop and step > 0")
        try:
            check_calibration_split(name, ds["splits"])
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if ds["kind"] == "demo" and "calibration" in ds["splits"] and (
                ds["splits"]["calibration"] != "calibration" or not gen.get("n_calibration")):
            raise ConfigError(f"config key 'datasets.{name}.splits.calibration': the demo's calibration split is "
                              "'calibration', drawn when 'generator.n_calibration' is above 0 "
                              f"(got '{ds['splits']['calibration']}', n_calibration {gen.get('n_calibration', 0)})")
        seeds = stage_config(config, name, "seeds")
        if seeds.get("per_class") and seeds["bg_threshold"] != "auto":
            raise ConfigError(f"config key 'seeds.per_class' (dataset '{name}'): per-class thresholds are chosen "
                              f"on the calibration split, so they need bg_threshold auto (got {seeds['bg_threshold']})")
        if stage_config(config, name, "irn")["logt"] == "auto" and "calibration" not in ds["splits"]:
            raise ConfigError(f"config key 'irn.logt' (dataset '{name}'): auto chooses the walk's length on the "
                              f"calibration split, and 'datasets.{name}.splits.calibration' is not set "
                              "(no label-free rule picks it)")
        _check_backbones(config, name)
    return config


def _check_backbones(config: dict, dataset: str) -> None:
    """Each backbone is a model timm knows, each weights path exists: found by a dry run, not
    after hours of the stages before."""
    known = timm_model_names()
    for section in BACKBONE_SECTIONS:
        cfg = stage_config(config, dataset, section)
        if cfg["backbone"].split(".")[0] not in known:   # timm accepts 'name.pretrained_tag'
            raise ConfigError(f"config key '{section}.backbone' (dataset '{dataset}'): '{cfg['backbone']}' is not "
                              f"a timm model name (timm {importlib.metadata.version('timm')}; see "
                              "timm.list_models())")
        weights = cfg.get("weights", "none")
        if weights not in NAMED_WEIGHTS and not Path(weights).is_file():
            raise ConfigError(f"config key '{section}.weights' (dataset '{dataset}'): '{weights}' is neither one "
                              f"of {', '.join(NAMED_WEIGHTS)} nor an existing checkpoint file")


def timm_model_names() -> frozenset[str]:
    """Every model name the installed timm registers. The list is cached per timm version under
    ~/.cache (XDG_CACHE_HOME): building it imports torch, seconds that every dry run would pay."""
    version = importlib.metadata.version("timm")
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wsss-pipeline"
    cache = cache_dir / f"timm-{version}-models.txt"
    if cache.is_file():
        return frozenset(cache.read_text().split())
    import timm   # noqa: PLC0415  (only when the cache is missing)
    names = timm.list_models()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text("\n".join(names) + "\n")
        tmp.replace(cache)
    except OSError:
        pass   # a read-only home: the check still works, only slower
    return frozenset(names)


def is_coco(dataset: dict) -> bool:
    """A dataset read in COCO format: kind coco, or a demo written in that layout."""
    return dataset["kind"] == "coco" or dataset.get("generator", {}).get("format") == "coco"


def is_tags(dataset: dict) -> bool:
    """A dataset read as images with tags: kind tags, or a demo written in that layout."""
    return dataset["kind"] == "tags" or dataset.get("generator", {}).get("format") == "tags"


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
    trains like the CNN one: its section is laid over the (overridden) classifier section, and the
    class-token ViT's over the (overridden) ViT's."""
    below = {"vit_classifier": "classifier", "mct_classifier": "vit_classifier"}.get(section)
    merged = stage_config(config, dataset, below) if below else {}
    merged.update(copy.deepcopy(config[section]))
    merged.update(dataset_config(config, dataset).get("overrides", {}).get(section, {}))
    return merged
