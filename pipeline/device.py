"""Device choice shared by every stage."""
from __future__ import annotations

import os

import torch


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for, but torch sees no CUDA device "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def loader_workers(configured: int, threads: int | None) -> int:
    """DataLoader workers within the job's CPUs: a cluster job that spawns more processes than
    the threads it asked for slows down its neighbours."""
    return min(configured, threads) if threads else configured
