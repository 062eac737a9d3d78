"""The configuration reference (docs/config.md), generated from the config schema's descriptions and
config.yaml's defaults, so that the page cannot drift from what the Snakefile validates:

    python -m pipeline.core.config_docs > docs/config.md

tests/test_config_docs.py fails when docs/config.md differs from this module's output, and names
every schema key without a `description:`.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from pipeline.core import config as cfgmod

CONFIG_PATH = Path(__file__).resolve().parents[2] / "config.yaml"
COMMAND = "python -m pipeline.core.config_docs > docs/config.md"

INTRO = f"""# Configuration reference

Every key of `config.yaml`, with its allowed values, its default and what it does. The Snakefile
validates the configuration against `pipeline/core/config.schema.yaml` when it loads: an unknown
key, a wrong type or a value out of range stops the run at once (also under `snakemake -n`),
naming the key and what was expected.

Ways to change a setting, from the narrowest:

- `--config KEY=VALUE` on the Snakemake command line, for top-level keys (`--config shards=4`);
- a file of overrides on top of `config.yaml`: `snakemake --configfile my.yaml -- TARGET`
  (Snakemake merges it key by key; `configs/*.yaml` are examples), validated the same way;
- a dataset's own stage settings under `datasets.<name>.overrides.<section>` (the demo's
  smaller crops and grid are set there); a dataset's value wins over the section's;
- `config.yaml` itself.

A stage run by hand (`python -m stages.NAME --help`) takes the same keys of its section as
named options (`--logt 5`), with `config.yaml`'s values as defaults.

Changing a value reruns exactly the stages that read it and the stages after them
(`snakemake -n TARGET` lists them first).

This page is generated; do not edit it by hand. After a change to the schema or to
`config.yaml`, regenerate it with

    {COMMAND}

"""

UNDESCRIBED = "(no description in the schema)"


def _definition(spec: dict, defs: dict) -> tuple[str | None, dict]:
    """The $defs name a spec refers to (directly or as allOf's first item) and the spec it resolves to."""
    ref = spec.get("$ref") or next((s["$ref"] for s in spec.get("allOf", []) if "$ref" in s), None)
    if ref is None:
        return None, spec
    name = ref.rsplit("/", 1)[1]
    return name, defs[name]


def _number_bounds(spec: dict) -> str:
    bounds = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in spec:
            bounds.append(f"{sign} {spec[key]}")
    if "multipleOf" in spec:
        bounds.append(f"multiple of {spec['multipleOf']}")
    return ", ".join(bounds)


def allowed(spec: dict, defs: dict) -> str:
    """What a key accepts, in words."""
    name, target = _definition(spec, defs)
    if name is not None and name != "dataset":
        return f"mapping ([{name}](#{name.replace('_', '-')}))"
    if "enum" in spec:
        return "one of " + ", ".join(f"`{v}`" if v is not None else "`null`" for v in spec["enum"])
    if "const" in spec:
        return f"`{spec['const']}`"
    for alternative in ("oneOf", "anyOf"):
        if alternative in spec:
            return " or ".join(allowed(s, defs) for s in spec[alternative])
    kind = spec.get("type")
    if isinstance(kind, list):
        return " or ".join("`null`" if k == "null" else k for k in kind)
    if kind == "array":
        items = spec.get("items", {})
        size = ""
        if spec.get("minItems") is not None and spec.get("minItems") == spec.get("maxItems"):
            size = f"{spec['minItems']} "
        elif spec.get("minItems"):
            size = f"at least {spec['minItems']} "
        what = allowed(items, defs) if items else "values"
        return f"list of {size}({what})"
    if kind in ("integer", "number"):
        bounds = _number_bounds(spec)
        return f"{kind} {bounds}".strip()
    if kind == "object":
        return "mapping"
    return kind or "any"


def _rows(properties: dict, defs: dict, prefix: str) -> Iterator[tuple[str, dict]]:
    """(dotted key, spec) of each property, nested mappings (without a $ref) flattened."""
    for key, spec in properties.items():
        path = f"{prefix}{key}"
        yield path, spec
        if spec.get("type") == "object" and "properties" in spec and "$ref" not in spec:
            yield from _rows(spec["properties"], defs, f"{path}.")


def _lookup(values, dotted: str):
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return None
        values = values[part]
    return values


def _value(value) -> str:
    if value is None:
        return "`null`"
    return f"`{json.dumps(value)}`" if not isinstance(value, str) else f"`{value}`"


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    out = ["| key | allowed | default | description |", "|---|---|---|---|"]
    for key, kind, default, text in rows:
        out.append(f"| `{key}` | {kind} | {default} | {text} |".replace("\n", " "))
    return out


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def undescribed(schema: dict | None = None) -> list[str]:
    """Every schema key without a description, as dotted paths (sections by their $defs name)."""
    schema = schema or cfgmod.schema()
    defs = schema["$defs"]
    missing = [key for key, spec in _rows(schema["properties"], defs, "") if not spec.get("description")]
    for name, definition in defs.items():
        missing += [f"{name}.{key}" for key, spec in _rows(definition.get("properties", {}), defs, "")
                    if not spec.get("description")]
    return missing


def generate(schema: dict | None = None, config: dict | None = None) -> str:
    """The Markdown page."""
    schema = schema or cfgmod.schema()
    config = config if config is not None else yaml.safe_load(CONFIG_PATH.read_text())
    defs = schema["$defs"]
    lines = [INTRO.rstrip("\n"), ""]

    def text(spec):
        return _escape(spec.get("description") or UNDESCRIBED)

    top = [(key, spec) for key, spec in schema["properties"].items() if _definition(spec, defs)[0] is None
           and key != "datasets"]
    lines += ["## Run-wide keys", ""]
    lines += _table([(key, _escape(allowed(spec, defs)), _value(config.get(key)), text(spec)) for key, spec in top])
    lines.append("")

    datasets = schema["properties"]["datasets"]
    lines += ["## datasets", "", _sentence(text(datasets)), ""]
    shipped = ", ".join(f"`{name}` ({values['kind']})" for name, values in config.get("datasets", {}).items())
    lines += [f"`config.yaml` defines {shipped}. Each entry takes these keys (`<name>` stands for the "
              "dataset's name; the defaults are the demo's where it sets the key):", ""]
    demo = next((values for values in config.get("datasets", {}).values() if values.get("kind") == "demo"), {})
    lines += _table([(f"datasets.<name>.{key}", _escape(allowed(spec, defs)),
                      _value(_lookup(demo, key)) if key != "overrides" and _lookup(demo, key) is not None
                      and not isinstance(_lookup(demo, key), dict) else "",
                      text(spec)) for key, spec in _rows(defs["dataset"]["properties"], defs, "")])
    lines.append("")

    for section, spec in schema["properties"].items():
        name, definition = _definition(spec, defs)
        if name is None or section == "datasets":
            continue
        lines += [f"## {section}", "", _sentence(text(spec)), ""]
        lines += _table([(f"{section}.{key}", _escape(allowed(sub, defs)), _value(_lookup(config.get(section), key)),
                          text(sub)) for key, sub in _rows(definition.get("properties", {}), defs, "")])
        lines.append("")

    referenced = sorted({_definition(sub, defs)[0] for definition in defs.values()
                         for _, sub in _rows(definition.get("properties", {}), defs, "")} - {None, "dataset"}
                        - set(schema["properties"]))
    for name in referenced:
        lines += [f"## {name}", "", f"The keys of every mapping marked [{name}](#{name.replace('_', '-')}) above "
                  "(each gives all of them; the defaults are in `config.yaml` beside the key that uses it).", ""]
        lines += _table([(key, _escape(allowed(sub, defs)), "", text(sub))
                         for key, sub in _rows(defs[name].get("properties", {}), defs, "")])
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.parse_args(argv)
    sys.stdout.write(generate())


if __name__ == "__main__":
    main()
