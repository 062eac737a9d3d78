"""Timing shared by the benchmarks: the median of repeated runs after one warm-up run."""
from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm-up: first-call allocations and lazy initialisation are not the method's cost
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
