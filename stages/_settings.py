"""A stage's settings as named command-line options, generated from the config schema.

The Snakefile renders a config section as options (`settings_argv`); the stage parses them back
(`add_settings`, `settings`) into the very dict the section holds. Numbers, lists and mappings
cross as JSON (a list as one word per item), strings as they are, booleans as --key / --no-key,
so 4 stays the integer 4 and what a stage records as its settings does not change. Run by hand,
a stage takes config.yaml's defaults for the options not given; `--cfg` still takes the whole
section as one JSON object, which named options then override.
"""
from __future__ import annotations

import argparse
import json

from pipeline.core import config as cfgmod

# The config keys each stage reads: (section, keys or None for all, keys left out). The Snakefile
# passes exactly these, so a change elsewhere in the section does not rerun the stage.
AFFINITY_LABEL_KEYS = ("alpha_low", "alpha_high", "crf")
IR_LABEL_KEYS = ("fg_threshold", "bg_threshold", "crf")
IRN_WALK_KEYS = ("walk_radius", "beta", "logt", "walk_bg")
IRN_WALK_GRIDS = ("logt_grid", "walk_bg_grid")
SEGMENTATION_TEST_KEYS = ("test_scales", "test_flip", "test_crf", "crf")
STAGE_SETTINGS = {
    "train_classifier": ("mct_classifier", None, ()),   # the CNN's are classifier's keys alone, the ViT's lack mct's
    "train_recam": ("recam", None, ()),
    "extract_cams": ("cams", ("scales", "flip", "fullycam_levels", "vit_protocol", "max_side"), ()),
    # what the rule passes of it: a CNN method's maps do not depend on vit_protocol, a ViT's not on fullycam_levels
    "extract_cnn_cams": ("cams", ("scales", "flip", "fullycam_levels", "max_side"), ()),
    "extract_vit_cams": ("cams", ("scales", "flip", "vit_protocol", "max_side"), ()),
    "evaluate_seeds": ("seeds", None, ()),
    "calibrate_seeds": ("seeds", ("sweep", "per_class"), ()),
    "evaluate_boxes": ("boxes", None, ()),
    "affinity_labels": ("affinity", AFFINITY_LABEL_KEYS, ()),
    "train_affinity": ("affinity", None, (*AFFINITY_LABEL_KEYS, "kind")),
    "ir_labels": ("irn", IR_LABEL_KEYS, ()),
    "train_irn": ("irn", None, (*IR_LABEL_KEYS, *IRN_WALK_KEYS, *IRN_WALK_GRIDS)),
    "calibrate_irn_walk": ("irn", (*IRN_WALK_KEYS, *IRN_WALK_GRIDS), ()),
    "propagate_irn": ("irn", IRN_WALK_KEYS, ()),
    "propagate": ("random_walk", None, ("alpha_grid",)),
    "calibrate_walk": ("random_walk", None, ()),
    "refine": ("refine", None, ()),
    "train_segmentation": ("segmentation", None, (*SEGMENTATION_TEST_KEYS, "labels_from")),
    "predict": ("segmentation", SEGMENTATION_TEST_KEYS, ()),
}


def stage_values(stage: str, section_values: dict) -> dict:
    """What the stage reads of its (merged) config section."""
    _, keys, exclude = STAGE_SETTINGS[stage]
    if keys:
        return {k: section_values[k] for k in keys}
    return {k: v for k, v in section_values.items() if k not in exclude}


def stage_argv(stage: str, section: str, section_values: dict) -> list[str]:
    """The stage's settings as argv words (the Snakefile's params)."""
    return settings_argv(section, stage_values(stage, section_values))


def section_properties(section: str) -> dict:
    """The schema's properties of a stage section; vit_classifier's lie over classifier's, and
    mct_classifier's over both."""
    defs = cfgmod.schema()["$defs"]
    if section == "vit_classifier":
        return {**defs["classifier"]["properties"], **defs["vit_classifier"]["properties"]}
    if section == "mct_classifier":
        return {**section_properties("vit_classifier"), **defs["mct_classifier"]["properties"]}
    return defs[section]["properties"]


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _is_text(spec: dict) -> bool:
    """A string, or an enum of strings: taken as typed, not as JSON."""
    return spec.get("type") == "string" or ("enum" in spec and all(isinstance(v, str) for v in spec["enum"]))


def _value(text: str):
    """JSON, or the plain word (`--feature-level last`)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _word(value, spec: dict) -> str:
    return value if _is_text(spec) and isinstance(value, str) else json.dumps(value, sort_keys=True)


def settings_argv(section: str, values: dict) -> list[str]:
    """A section's values as argv words, keys in sorted order (the Snakefile shell-quotes each)."""
    properties = section_properties(section)
    argv = []
    for key in sorted(values):
        spec, value = properties[key], values[key]
        if spec.get("type") == "boolean":
            argv.append(_flag(key) if value else "--no-" + key.replace("_", "-"))
        elif spec.get("type") == "array":
            argv += [_flag(key), *(_word(item, spec.get("items", {})) for item in value)]
        else:
            argv += [_flag(key), _word(value, spec)]
    return argv


def add_settings(p: argparse.ArgumentParser, stage: str, defaults: str | None = None) -> None:
    """One option per key the stage reads (STAGE_SETTINGS), typed and described by the schema.
    Options not given take config.yaml's `defaults` section (default: the stage's section); a key
    that section lacks is left out unless given."""
    section, keys, exclude = STAGE_SETTINGS[stage]
    properties = section_properties(section)
    keys = tuple(keys or [k for k in properties if k not in exclude])
    base_section = defaults or section
    base = cfgmod.defaults(base_section)
    title = f"settings: config section '{base_section}'"
    if base_section != section:
        title += f", with '{section}' on top for the keys it sets"
    base_keys = section_properties(base_section)
    group = p.add_argument_group(title)
    group.add_argument("--cfg", type=json.loads, default=None,
                       help="the whole section as one JSON object (named options override it)")
    for key in keys:
        spec = properties[key]
        owner = base_section if key in base_keys else section
        help_text = spec.get("description", f"{owner}.{key}")
        if ("$ref" in spec or spec.get("type") == "object") and "JSON" not in help_text:
            help_text += " (JSON object)"
        if key in base:
            help_text += f" (default: {json.dumps(base[key])})"
        if spec.get("type") == "boolean":
            group.add_argument(_flag(key), dest=key, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
            continue
        is_list = spec.get("type") == "array"
        item = spec.get("items", {}) if is_list else spec
        group.add_argument(_flag(key), dest=key, nargs="*" if is_list else None, metavar=key.upper(),
                           type=str if _is_text(item) else _value, default=argparse.SUPPRESS,
                           choices=item.get("enum") if _is_text(item) else None, help=help_text)
    p.set_defaults(settings_keys=keys, settings_base={k: base[k] for k in keys if k in base})


def settings(args: argparse.Namespace) -> dict:
    """The section's dict: config.yaml's defaults (or --cfg), then the options given, keys sorted."""
    values = dict(args.settings_base if args.cfg is None else args.cfg)
    values.update({key: getattr(args, key) for key in args.settings_keys if hasattr(args, key)})
    return {key: values[key] for key in sorted(values)}
