"""The package layout follows the DAG: no stage family imports another one, only the shared packages;
the diagnostics stand apart (they may read the families they measure, no product package reads them);
and the README's drawing of pipeline/ names exactly the packages on disk."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipeline"

SHARED = {"core", "data", "models", "maps"}
FAMILIES = {"classifier", "cams", "affinity", "refine", "segmentation", "evaluation"}
# Measurements of the product against ground truth, run by hand (docs/diagnostics.md): never by the DAG.
DIAGNOSTICS = "diagnostics"

# Every arrow between packages that the code may draw (a package may always import itself).
ALLOWED = {
    **{family: SHARED for family in FAMILIES},
    "core": {"data", "maps"},     # provenance names a split's files; gather sums confusion matrices
    "data": {"core"},             # cached COCO masks and PNG export go through the artifact store
    "maps": {"core", "data"},     # maps are read from artifacts beside the split's images
    "models": set(),
    DIAGNOSTICS: SHARED | {"cams", "affinity"},   # the attention fusion, the random walk it measures
}


def _package(path: Path) -> str | None:
    parts = path.relative_to(PIPELINE).parts
    return parts[0] if len(parts) > 1 else None


def _imported_packages(path: Path) -> set[str]:
    """The pipeline packages a module imports, relative imports resolved."""
    here = path.relative_to(ROOT).with_suffix("").parts[:-1]   # the module's package, as parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(here[:len(here) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "pipeline" and len(parts) > 1 and (PIPELINE / parts[1]).is_dir():
                found.add(parts[1])
    return found


def test_every_package_is_a_family_or_shared():
    on_disk = {p.name for p in PIPELINE.iterdir() if (p / "__init__.py").exists()}
    assert on_disk == SHARED | FAMILIES | {DIAGNOSTICS}
    assert not [p.name for p in PIPELINE.glob("*.py") if p.name != "__init__.py"], "modules belong in a package"


def test_no_stage_family_imports_another():
    sideways = []
    for path in sorted(PIPELINE.rglob("*.py")):
        package = _package(path)
        if package is None:
            continue
        for target in _imported_packages(path) - {package} - ALLOWED[package]:
            sideways.append(f"{path.relative_to(ROOT)} -> pipeline.{target}")
    assert not sideways, "imports across stage families:\n" + "\n".join(sideways)


def test_no_product_code_imports_the_diagnostics():
    """Neither a product package nor a stage the DAG runs reads pipeline.diagnostics (or stages.diagnostics)."""
    readers = []
    for path in sorted([*PIPELINE.rglob("*.py"), *(ROOT / "stages").rglob("*.py")]):
        if DIAGNOSTICS in path.relative_to(ROOT).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:   # both `from a.b import c` forms
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            if any(n.split(".")[:2] in (["pipeline", DIAGNOSTICS], ["stages", DIAGNOSTICS]) for n in names):
                readers.append(str(path.relative_to(ROOT)))
    assert not readers, "product code importing the diagnostics: " + ", ".join(readers)


def test_the_readme_draws_the_packages_on_disk():
    """The drawing in the README's Layout section: the lines under `pipeline/`, one per package."""
    lines = (ROOT / "README.md").read_text().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("    pipeline/ "))
    drawn = set()
    for line in lines[start + 1:]:
        if re.match(r"^    \S", line) or not line.strip():
            break
        if match := re.match(r"^      (\w+)/\s", line):
            drawn.add(match[1])
    assert drawn == SHARED | FAMILIES | {DIAGNOSTICS}
