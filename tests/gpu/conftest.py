"""tests/gpu: the stages and benchmarks on CUDA (marker `gpu`), skipped where torch sees no GPU.
Run them with `pytest tests/gpu` (benchmarks/gpu_check.sh does, on a GPU machine).

WSSS_GPU_TESTS_ON_CPU=1 runs the stage comparison without a GPU, its "GPU" side on the CPU in
bf16: a dry run of the tests' own logic on a CPU machine (slow; the benchmark's CUDA mode still
skips)."""
import os

import pytest
import torch

ON_CPU = os.environ.get("WSSS_GPU_TESTS_ON_CPU") == "1"


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="no CUDA device: tests/gpu runs on a GPU machine (benchmarks/gpu_check.sh)")
    for item in items:
        if "tests/gpu/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            dry_run = ON_CPU and "test_stages_on_cuda" in item.nodeid
            if not torch.cuda.is_available() and not dry_run:
                item.add_marker(skip)
