"""The stages as command-line programs: a main(argv) each, importable without side effects, and
settings that cross the command line as named options and come back as the config's values."""
import importlib
import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import stages
from pipeline.core import config as cfgmod
from stages._settings import STAGE_SETTINGS, add_settings, settings, stage_argv, stage_values
from stages._args import parser

ROOT = Path(__file__).resolve().parents[1]
# the stages the rules run and the diagnostics (stages/diagnostics/), as dotted names under stages
STAGE_MODULES = sorted(m.name.removeprefix("stages.") for m in pkgutil.walk_packages(stages.__path__, "stages.")
                       if not m.ispkg and not m.name.rpartition(".")[2].startswith("_"))


@pytest.mark.parametrize("name", STAGE_MODULES)
def test_every_stage_has_a_main_and_a_console_script(name, capsys):
    module = importlib.import_module(f"stages.{name}")   # importing runs nothing
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert f"stages.{name}:main" in scripts.values()


def _sections(stage: str) -> list[str]:
    section = STAGE_SETTINGS[stage][0]
    return ["classifier", "vit_classifier", "mct_classifier"] if stage == "train_classifier" else [section]


@pytest.mark.parametrize("dataset", ["demo", "voc"])
@pytest.mark.parametrize("stage", sorted(STAGE_SETTINGS))
def test_settings_cross_the_command_line_unchanged(stage, dataset):
    """What the Snakefile renders, the stage parses back to the same values, types and key order."""
    config = cfgmod.load(ROOT / "config.yaml")
    for section in _sections(stage):
        expected = stage_values(stage, cfgmod.stage_config(config, dataset, section))
        p = parser("test")
        add_settings(p, stage, defaults="classifier" if stage == "train_classifier" else None)
        got = settings(p.parse_args(stage_argv(stage, section, cfgmod.stage_config(config, dataset, section))))
        assert json.dumps(got) == json.dumps(expected, sort_keys=True)


def test_propagate_help_lists_the_random_walk_settings_with_their_defaults():
    out = subprocess.run([sys.executable, "-m", "stages.propagate", "--help"], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    defaults = cfgmod.defaults("random_walk")
    for key in ("beta", "logt", "alpha", "radius"):
        assert f"--{key}" in out and f"(default: {defaults[key]})" in out.replace("\n", " ").replace("  ", " ")


def test_named_options_override_the_json_section():
    p = parser("test")
    add_settings(p, "propagate")
    cfg = settings(p.parse_args(["--cfg", '{"radius": 5, "beta": 8, "logt": 8, "alpha": 16}', "--logt", "5"]))
    assert cfg == {"alpha": 16, "beta": 8, "logt": 5, "radius": 5}
    assert settings(p.parse_args([])) == dict(sorted(stage_values("propagate", cfgmod.defaults("random_walk")).items()))
