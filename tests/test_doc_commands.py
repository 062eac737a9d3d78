"""Commands cannot rot: every command in README.md and docs/*.md that runs a Snakemake target or a
stage is run dry. Snakemake commands are parsed by Snakemake's own argument parser and their targets
built with `snakemake -n` against fixture datasets (commands that share their options share one dry
run); stage commands (`python -m stages.X`, `wsss-NAME`) are parsed by the stage's own parser, and
the class list a command passes must be the config's list for its dataset.

A command counts when it starts a line of a code block, or fills an inline code span, without
placeholders (`...`, `<file>`, `NAME`)."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from benchmarks._voc_layout import listed_voc
from coco_fixture import listed_coco

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# a word that stands for something: `...`, `<file>`, `[DIR]`, `NAME`, `stages.NAME`, `X.json`
PLACEHOLDER = re.compile(r"\.\.\.|…|<|>|^\[|(^|[.\-/])[A-Z][A-Z_]*($|[.\-/=])")
SEPARATORS = {"&&", "||", ";", "|"}
# options that say how to run, not what: a dry run sets its own
DROPPED = {"-n": 0, "--dry-run": 0, "-p": 0, "--printshellcmds": 0, "--cores": 1, "-c": 1, "-j": 1,
           "--jobs": 1, "--report": 1, "--sdm": 1, "--software-deployment-method": 1}


@dataclass
class Command:
    where: str          # file:line
    text: str
    argv: list[str] = field(default_factory=list)   # the program's own words, without the executable
    parse: bool = True   # False: a pattern in prose (`python -m stages.X ... --logt L`): only the program is checked

    def __str__(self):
        return f"{self.where}: `{self.text}`"


def _is_snakemake(word: str) -> bool:
    return Path(word).name == "snakemake"


def _stage_module(words: list[str]) -> str | None:
    """stages.X for `python -m stages.X ...`, or the module of a `wsss-NAME` console script."""
    if len(words) > 2 and Path(words[0]).name.startswith("python") and words[1] == "-m":
        return words[2]
    if Path(words[0]).name.startswith("wsss-"):
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        target = scripts.get(Path(words[0]).name)
        return target.split(":")[0] if target else f"(no console script {Path(words[0]).name} in pyproject.toml)"
    return None


def _segments(text: str) -> list[list[str]]:
    """The simple commands of a shell line, without comments and redirections."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return []
    segments, current = [], []
    for word in words:
        if word in SEPARATORS:
            segments.append(current)
            current = []
        elif word.startswith(">") or word.startswith("2>"):
            segments.append(current)
            current = None
            break
        else:
            current.append(word)
    if current:
        segments.append(current)
    return [s for s in segments if s]


def _candidates(path: Path) -> list[tuple[int, str, bool]]:
    """(line number, text, from a code block) of every code line and inline code span."""
    out, fence, lines = [], False, path.read_text().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fence = not fence
            i += 1
            continue
        if fence or line.startswith("    "):
            start, text = i + 1, line.strip()
            while text.endswith("\\") and i + 1 < len(lines):   # continuation lines
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            out.append((start, text.removeprefix("$ "), True))
        else:
            out += [(i + 1, span, False) for span in re.findall(r"`([^`]+)`", line)]
        i += 1
    return out


def doc_commands(paths=DOCS) -> tuple[list[Command], list[Command]]:
    """The Snakemake commands and the stage commands of the docs."""
    snakemake, stages = [], []
    for path in paths:
        for lineno, text, block in _candidates(path):
            for words in _segments(text):
                is_snakemake, module = _is_snakemake(words[0]), _stage_module(words)
                if not is_snakemake and not module:
                    continue
                program = 3 if words[1:2] == ["-m"] else 1   # the words that name the program
                if not block and (len(words) <= program or words[0].endswith("/")
                                  or any(PLACEHOLDER.search(w) for w in words[:program])):
                    continue   # in prose: a program's bare name, or a placeholder for it
                pattern = not block and any(PLACEHOLDER.search(w) for w in words[program:])
                if pattern and is_snakemake:
                    continue   # its targets or options are placeholders
                where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{lineno}"
                if is_snakemake:
                    snakemake.append(Command(where, text, words[1:]))
                elif module.startswith("stages.") or module.startswith("("):
                    stages.append(Command(where, text, [module, *words[program:]], parse=not pattern))
    return snakemake, stages


# --- Snakemake commands --------------------------------------------------------------------------

def _parse_snakemake(argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    from snakemake.cli import get_argument_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return get_argument_parser().parse_args(argv), ""
        except SystemExit:
            return None, err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "unparsable"


def _run_options(argv: list[str], targets: list[str], workdir: Path) -> tuple[str, ...]:
    """The options that decide what the dry run builds, with --directory moved under the fixture."""
    words, skip, out = [w for w in argv if w != "--"], 0, []
    for word in words:
        if skip:
            skip -= 1
            continue
        name = word.split("=", 1)[0]
        if name in DROPPED:
            skip = DROPPED[name] if "=" not in word else 0
            continue
        out.append(word)
    for target in targets:   # targets come last; options may repeat a word, so remove from the end
        for i in range(len(out) - 1, -1, -1):
            if out[i] == target:
                del out[i]
                break
    if "--directory" in out:
        i = out.index("--directory")
        out[i + 1] = str(workdir / "directories" / Path(out[i + 1]).name)
        Path(out[i + 1]).mkdir(parents=True, exist_ok=True)
    return tuple(out)


def _dry_run(options: tuple[str, ...], targets: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-n", "--cores", "1", *options,
                           "--", *targets], cwd=cwd, capture_output=True, text=True, timeout=300)


def _error_of(run: subprocess.CompletedProcess) -> str:
    out = (run.stdout + run.stderr).strip().splitlines()
    useful = [l for l in out if re.search(r"Error|error|Exception|No rule|not|unknown|invalid", l)]
    return " | ".join((useful or out)[-4:])


def tagged_folder(root: Path, n: int) -> None:
    """A folder of n small photos and their tags.csv, as docs/your-data.md lays one out."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rows = ["image,tags"]
    for i in range(n):
        Image.new("RGB", (24, 16), (40 * (i % 5), 90, 160)).save(root / "images" / f"{i:04d}.jpg")
        rows.append(f"{i:04d}.jpg,{['cat', 'dog', 'cat;dog'][i % 3]}")
    (root / "tags.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A results directory with fixture datasets where config.yaml expects VOC and COCO, and the
    overlays and profiles the commands name, as in the repository."""
    work = tmp_path_factory.mktemp("doc_commands")
    listed_voc(work / "data/VOCdevkit/VOC2012", train_aug=40, train=20, val=10)   # IRN's batch is 32
    listed_coco(work / "data/coco", train=5, val=3)
    tagged_folder(work / "data/mine", 24)   # configs/tags-mine.yaml's folder
    for name in ("configs", "profiles"):
        (work / name).symlink_to(ROOT / name)
    return work


def check_snakemake(commands: list[Command], workdir: Path) -> list[str]:
    failures, groups = [], {}
    for command in commands:
        args, error = _parse_snakemake(command.argv)
        if args is None:
            failures.append(f"{command}: snakemake does not accept it: {error}")
            continue
        if args.lint or not args.targets:
            continue   # lint is tests/test_workflow.py's; a command without targets names no target
        groups.setdefault(_run_options(command.argv, args.targets, workdir), []).append((command, args.targets))
    for options, members in groups.items():
        targets = list(dict.fromkeys(t for _, ts in members for t in ts))
        if _dry_run(options, targets, workdir).returncode == 0:
            continue
        for command, own in members:   # find which command(s) of the group fail
            run = _dry_run(options, own, workdir)
            if run.returncode != 0:
                failures.append(f"{command}: `snakemake -n` fails: {_error_of(run)}")
    return failures


# --- stage commands ------------------------------------------------------------------------------

def _in_repository(module: str) -> bool:
    """The module exists in this checkout (an editable install elsewhere may map names of its own)."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return False
    return spec is not None and spec.origin is not None and Path(spec.origin).resolve().is_relative_to(ROOT)


class _Parsed(Exception):
    def __init__(self, namespace):
        self.namespace = namespace


def _parse_stage(module_name: str, argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    """The stage's own parser applied to argv; nothing after the parse runs."""
    if module_name.startswith("("):
        return None, module_name.strip("()")
    if not _in_repository(module_name):
        return None, f"no module {module_name}"
    module = importlib.import_module(module_name)
    original = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    err = io.StringIO()
    argparse.ArgumentParser.parse_args = parse_only
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            module.main(argv)
    except _Parsed as parsed:
        return parsed.namespace, ""
    except SystemExit as done:
        if done.code in (0, None):
            return argparse.Namespace(), ""   # --help
        lines = err.getvalue().strip().splitlines()
        return None, lines[-1] if lines else f"exit status {done.code}"
    finally:
        argparse.ArgumentParser.parse_args = original
    return None, "main() returned without parsing its arguments"


def _dataset_classes(namespace: argparse.Namespace, config: dict) -> tuple[str, list[str]] | None:
    """The dataset a stage command reads (by its --root), or None when the root names none."""
    root = getattr(namespace, "root", None)
    for name, dataset in config["datasets"].items():
        if root in (f"results/{name}/data", dataset.get("root")):
            return name, dataset["classes"]
    return None


def check_stages(commands: list[Command]) -> list[str]:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    failures = []
    for command in commands:
        if not command.parse:
            module = command.argv[0]
            if module.startswith("(") or not _in_repository(module):
                failures.append(f"{command}: " + (module.strip("()") if module.startswith("(") else f"no module {module}"))
            continue
        namespace, error = _parse_stage(command.argv[0], command.argv[1:])
        if namespace is None:
            failures.append(f"{command}: {error}")
            continue
        classes = getattr(namespace, "classes", None)
        if classes is None:
            continue
        classes = json.loads(classes) if isinstance(classes, str) else classes
        known = _dataset_classes(namespace, config)
        if known is not None and classes != known[1]:
            failures.append(f"{command}: --classes {classes} are not dataset '{known[0]}''s classes in "
                            f"config.yaml, {known[1]}")
        elif known is None and classes not in [d["classes"] for d in config["datasets"].values()]:
            unknown = sorted(set(classes) - {c for d in config["datasets"].values() for c in d["classes"]})
            failures.append(f"{command}: --classes {classes} are no dataset's classes in config.yaml"
                            + (f" (unknown: {unknown})" if unknown else ""))
    return failures


# --- the tests -----------------------------------------------------------------------------------

def test_the_docs_hold_commands_of_both_kinds():
    snakemake, stages = doc_commands()
    assert len(snakemake) >= 10 and len(stages) >= 4, (len(snakemake), len(stages))
    assert any("results/demo/miou.json" in c.argv for c in snakemake)


def test_every_snakemake_command_in_the_docs_builds_its_targets_dry(workdir):
    snakemake, _ = doc_commands()
    failures = check_snakemake(snakemake, workdir)
    assert not failures, "commands in the docs that do not run:\n" + "\n".join(failures)


def test_every_stage_command_in_the_docs_parses_with_the_configs_classes():
    _, stages = doc_commands()
    failures = check_stages(stages)
    assert not failures, "commands in the docs that do not run:\n" + "\n".join(failures)


def test_a_rotten_command_is_caught(tmp_path, workdir):
    """The checks themselves, on a page of rotten commands: an unknown target, Snakemake option,
    stage option, stage and class each fail, naming the command."""
    page = tmp_path / "rotten.md"
    page.write_text("\n".join([
        "    .venv/bin/snakemake --cores 2 results/demo/seeds/no_such_method.json",
        "    .venv/bin/snakemake --cores 2 --no-such-option results/demo/miou.json",
        "    .venv/bin/python -m stages.export_png --maps x.h5 --out pngs --no-such-option 3",
        "    .venv/bin/python -m stages.no_such_stage --help",
        "    .venv/bin/wsss-walk-ceiling --root results/demo/data --classes '[\"background\", \"ruby\"]' "
        "--split train --cams c.h5 --stride 4 --out o.json",
        "Prose with `snakemake --cores 2 results/demo/miou.json` and `python -m stages.NAME --help`.",
        "A pattern: `python -m stages.demo_anatomy --cams ... --classes ...`.",
    ]))
    snakemake, stages = doc_commands([page])
    assert len(snakemake) == 3 and len(stages) == 4   # the placeholder for a stage's name is no command
    failures = check_snakemake(snakemake, workdir)
    assert len(failures) == 2
    target = next(f for f in failures if "no_such_method.json" in f)
    assert "`snakemake -n` fails" in target and "MissingRule" in target or "No rule" in target, target
    option = next(f for f in failures if "--no-such-option" in f)
    assert "does not accept it" in option and "unrecognized arguments: --no-such-option" in option
    failures = check_stages(stages)
    assert len(failures) == 4
    assert "no module stages.demo_anatomy" in failures[3]
    assert "unrecognized arguments: --no-such-option" in failures[0]
    assert "no module stages.no_such_stage" in failures[1]
    assert "'demo''s classes" in failures[2] and "ruby" in failures[2]
