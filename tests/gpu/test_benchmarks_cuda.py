"""The throughput benchmark's CUDA mode at VOC sizes (500 x 375 images, batch 16 of 512 crops, the
published CAM scales): every stage reports images per second, and the GPU stages their peak GPU
memory, within the card's."""
import json
import subprocess
import sys

import torch

from tests.conftest import REPO


def test_cuda_mode_reports_images_per_second_and_peak_memory_per_stage(tmp_path):
    out = tmp_path / "rates.json"
    run = subprocess.run([sys.executable, "benchmarks/bench_throughput.py", "--device", "cuda", "--sizes", "voc",
                          "--images", "1", "--repeats", "1", "--methods", "cam", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rates = json.loads(out.read_text())
    assert rates["device"] == "cuda" and rates["sizes"] == "voc"
    total = torch.cuda.get_device_properties(0).total_memory / 2 ** 20
    for stage in ("train_classifier", "extract_cams/cam", "train_affinity", "propagate", "train_segmentation",
                  "predict"):
        row = rates["stages"][stage]
        assert row["device"] == "cuda" and row["images_per_second"] > 0, stage
        assert 0 < row["peak_gpu_mib"] < total, stage
