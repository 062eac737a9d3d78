"""docs/config.md is the generated configuration reference: it equals what pipeline.core.config_docs
writes now, every schema key has a description, and every key config.yaml sets has its row."""
from pathlib import Path

import yaml

from pipeline.core import config_docs

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "config.md"


def test_docs_config_md_is_the_generated_page():
    assert PAGE.read_text() == config_docs.generate(), (
        f"docs/config.md differs from the schema's reference; regenerate it: {config_docs.COMMAND}")


def test_every_schema_key_has_a_description():
    missing = config_docs.undescribed()
    assert not missing, ("keys of pipeline/core/config.schema.yaml without a description: "
                         + ", ".join(missing))


def _leaf_keys(values: dict, prefix: str = ""):
    """Dotted keys of config.yaml down to the stage sections' keys and their nested mappings."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and "crf" not in key:   # CRF mappings are documented once, by their keys
            yield from _leaf_keys(value, f"{path}.")


def test_every_key_of_config_yaml_has_a_row():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    page = PAGE.read_text()
    keys = [k for k in _leaf_keys({s: v for s, v in config.items() if s != "datasets"})]
    for name, dataset in config["datasets"].items():
        keys += [f"datasets.<name>.{k}" for k in _leaf_keys(dataset) if not k.startswith("overrides.")]
    sections = [s for s, v in config.items() if isinstance(v, dict)]
    missing = [k for k in keys if k not in sections and f"| `{k}` |" not in page]
    missing += [s for s in sections if f"\n## {s}\n" not in page]
    assert not missing, f"config.yaml keys without a row in docs/config.md: {missing}"


def test_allowed_values_in_words():
    defs = {"crf": {"type": "object"}}
    assert config_docs.allowed({"type": "integer", "minimum": 1}, defs) == "integer >= 1"
    assert config_docs.allowed({"type": "number", "exclusiveMinimum": 0, "maximum": 1}, defs) == "number > 0, <= 1"
    assert config_docs.allowed({"enum": ["a", None]}, defs) == "one of `a`, `null`"
    assert config_docs.allowed({"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}},
                               defs) == "list of 2 (number)"
    assert config_docs.allowed({"$ref": "#/$defs/crf"}, defs) == "mapping ([crf](#crf))"
    assert config_docs.allowed({"oneOf": [{"const": "last"}, {"type": "integer"}]}, defs) == "`last` or integer"
