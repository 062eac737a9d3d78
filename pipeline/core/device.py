"""Device and CPU-thread choices shared by every stage."""
from __future__ import annotations

import os

import cv2
import torch


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for, but torch sees no CUDA device "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """A job's CPU threads, set once from its `threads`: torch's intra-op pool (OpenMP and MKL)
    and OpenCV's pool get `threads` each, torch's inter-op pool one (no stage runs inter-op work:
    an idle pool of `cores` threads only adds to the count). None leaves the libraries' defaults.
    OpenMP's waiting policy is set when the package loads (pipeline/__init__.py)."""
    if not threads:
        return
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:   # torch allows it once, before any inter-op work: already settled
            pass


def loader_workers(configured: int, threads: int | None) -> int:
    """DataLoader workers within the job's CPUs: a cluster job that spawns more processes than
    the threads it asked for slows down its neighbours."""
    return min(configured, threads) if threads else configured
