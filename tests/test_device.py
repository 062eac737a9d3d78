"""Device and thread choices of the stages."""
import os
import platform
import subprocess
import sys

import pytest
import torch

from pipeline.core.device import loader_workers, resolve_device


def test_auto_takes_the_gpu_only_when_torch_sees_one():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_hidden_gpus_make_cuda_an_error_naming_cuda_visible_devices():
    """CUDA_VISIBLE_DEVICES="" hides every GPU (as a scheduler does for a CPU job): auto falls back
    to the CPU and an explicit cuda fails, naming the variable."""
    code = ("from pipeline.core.device import resolve_device\n"
            "print(resolve_device('auto'))\n"
            "resolve_device('cuda')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert run.stdout.strip() == "cpu"
    assert run.returncode != 0 and "CUDA_VISIBLE_DEVICES=''" in run.stderr


@pytest.mark.parametrize("configured, threads, expected", [(4, 2, 2), (1, 2, 1), (0, 2, 0), (3, None, 3)])
def test_dataloader_workers_stay_within_the_jobs_threads(configured, threads, expected):
    assert loader_workers(configured, threads) == expected


def test_set_threads_sets_torch_opencv_and_interop_threads_and_openmp_sleeps():
    """In a fresh process (the pools are per process): the job's threads everywhere, one inter-op
    thread, and OpenMP told to sleep, not spin, before torch loaded; an explicit policy is kept."""
    code = ("import pipeline.core.device, cv2, torch, os\n"
            "pipeline.core.device.set_threads(1)\n"
            "print(torch.get_num_threads(), cv2.getNumThreads(), torch.get_num_interop_threads(),"
            " os.environ['OMP_WAIT_POLICY'])\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert run.stdout.split() == ["1", "1", "1", "PASSIVE"]
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert run.stdout.split()[-1] == "ACTIVE"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt")
def test_freed_large_blocks_are_reused_without_faulting_their_pages_in_again():
    """A loop that makes and frees two 64 MiB tensors per pass, as a forward pass does its
    activations: with the pipeline loaded, once the heap has grown to hold them (a pass or
    three), the passes fault in few pages; with WSSS_KEEP_FREED_MEMORY=0 glibc unmaps each block
    when it is freed and every pass faults in all 2 x 16,384 pages again."""
    code = ("import resource, torch, pipeline\n"
            "x = torch.ones(2 ** 20)\n"
            "for settle in range(4):\n"
            "    y = x.repeat(16) * 2; del y\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for i in range(8):\n"
            "    y = x.repeat(16) * 2; del y\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    pages_per_pass = 2 * 2 ** 24 * 4 // 4096

    def faults(keep: str) -> int:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "WSSS_KEEP_FREED_MEMORY": keep})
        return int(run.stdout.split()[-1])

    assert faults("1") < 0.25 * 8 * pages_per_pass
    assert faults("0") > 0.9 * 8 * pages_per_pass
