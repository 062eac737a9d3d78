"""The pipeline's logic: stages/ wires command-line arguments to it, the Snakefile chains the stages."""
import ctypes
import ctypes.util
import os

# Set before anything imports torch (libgomp reads it once, when it loads): OpenMP threads
# waiting for work sleep instead of spinning. On a shared machine a spinning thread holds the
# core its sibling (or another job) needs, and every small op then waits for a scheduler slice:
# with 2 threads beside one busy process a loop of small ops ran 5-10x slower than with 1 thread
# (benchmarks/bench_stages.py measures the stages idle and busy). An explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _keep_freed_memory() -> None:
    """glibc returns every freed block above 32 MiB to the kernel, so the next tensor of that size
    faults its pages in again, one by one: a CAM pass on an 880 px image spent most of its time in
    the kernel that way (1.10 s, 0.33 s with this; benchmarks/bench_heap.py). Large blocks come
    from the heap instead and stay there for reuse, so a process holds on to its peak memory
    until it exits (the stages are short-lived processes). WSSS_KEEP_FREED_MEMORY=0 leaves glibc's
    defaults; other C libraries have no mallopt and are left alone."""
    if os.environ.get("WSSS_KEEP_FREED_MEMORY", "1") == "0":
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_max = -1, -4          # glibc's malloc.h
    mallopt(m_mmap_max, 0)                        # no mmap: large blocks from the heap
    mallopt(m_trim_threshold, 2 ** 31 - 1)        # and the heap's top kept, not trimmed


_keep_freed_memory()
