"""envs/: the conda environment of the rules (`snakemake --sdm conda`) installs the dependencies at
exactly pyproject.toml's pins, and every rule names it (tests/test_workflow.py: `snakemake --lint` finds nothing)."""
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


def _pins(requirements) -> dict[str, SpecifierSet]:
    pins = {}
    for text in requirements:
        req = Requirement(text)
        pins[req.name.lower().replace("_", "-")] = req.specifier
    return pins


def test_every_environment_installs_pyprojects_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"])
    assert ENV_FILES, "envs/ holds no environment file"
    for path in ENV_FILES:
        env = yaml.safe_load(path.read_text())
        deps = env["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        assert _pins(pip) == wanted, f"{path.name}: the pip section differs from pyproject.toml's dependencies"
        python = next(d for d in deps if isinstance(d, str) and re.match(r"python\b", d))
        version = re.match(r"python\s*=+\s*([\d.]+)", python)[1]
        assert version in SpecifierSet(project["requires-python"]), (
            f"{path.name}: python {version} is outside requires-python {project['requires-python']}")
        assert "pip" in deps


def test_every_rule_names_an_environment_that_exists():
    common = (ROOT / "rules" / "common.smk").read_text()
    env = re.search(r'^ENV = "([^"]+)"', common, re.M)[1]
    assert (ROOT / "rules" / env).resolve() in [p.resolve() for p in ENV_FILES]
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        rules = re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]
        for body in rules:
            name = body.split(":", 1)[0]
            assert re.search(r"^    conda:\n        ENV\n", body, re.M), f"rule {name} ({smk.name}) has no `conda: ENV`"

