"""Every benchmark's --quick mode runs and prints its ratio line, so an import error or an API
change fails here instead of rotting unseen. Each runs as docs/benchmarks.md runs it, in a fresh process,
with an import of pytest made to fail: the benchmarks need only the demo install."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.name for p in (REPO / "benchmarks").glob("bench_*.py"))
RATIO_LINE = re.compile(r"^ratio .*\(target [<>]= [\d.]+x?: (OK|MISSED)\)$", re.M)


def test_every_benchmark_is_listed_in_the_docs():
    page = (REPO / "docs" / "benchmarks.md").read_text()
    assert BENCHMARKS and [b for b in BENCHMARKS if f"benchmarks/{b}" not in page] == []


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_quick_mode_runs_and_prints_its_ratio_against_the_target(bench, tmp_path):
    (tmp_path / "pytest.py").write_text("raise ImportError('benchmarks must not need pytest')\n")
    run = subprocess.run([sys.executable, f"benchmarks/{bench}", "--quick"], cwd=REPO, capture_output=True,
                         text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert RATIO_LINE.search(run.stdout), run.stdout
