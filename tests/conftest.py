import os
from pathlib import Path

import pytest
import torch

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


# tests/gpu: the stages and benchmarks on CUDA (marker `gpu`), skipped where torch sees no GPU; run
# them with `pytest tests/gpu` (benchmarks/gpu_check.sh does, on a GPU machine).
# WSSS_GPU_TESTS_ON_CPU=1 runs the stage comparison without a GPU, its "GPU" side on the CPU in
# bf16: a dry run of the tests' own logic on a CPU machine (slow; the benchmark's CUDA mode still skips).
GPU_TESTS_ON_CPU = os.environ.get("WSSS_GPU_TESTS_ON_CPU") == "1"


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="no CUDA device: tests/gpu runs on a GPU machine (benchmarks/gpu_check.sh)")
    for item in items:
        if "tests/gpu/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("gpu/"):
            item.add_marker(pytest.mark.gpu)
            dry_run = GPU_TESTS_ON_CPU and "test_stages_on_cuda" in item.nodeid
            if not torch.cuda.is_available() and not dry_run:
                item.add_marker(skip)
