from pathlib import Path

import pytest

from benchmarks._voc_layout import listed_voc  # noqa: F401  (tests import it from here)
from pipeline.data import demo

REPO = Path(__file__).resolve().parents[1]
DEMO_CLASSES = ["background", "fox", "lynx", "frog", "newt", "tram", "barge"]
TINY = dict(seed=7, n_train=10, n_val=6, min_size=64, max_size=80)


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory) -> Path:
    """A tiny VOC-format dataset written by the demo generator (shared, read-only)."""
    root = tmp_path_factory.mktemp("tiny_voc") / "VOC2012"
    demo.generate(root, DEMO_CLASSES, **TINY)
    return root
