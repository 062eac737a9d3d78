"""Per-image jobs over worker processes, results back in order, or in this process for 1 worker."""
from __future__ import annotations

import contextlib
from multiprocessing import get_context


@contextlib.contextmanager
def image_pool(workers: int):
    """Yields an object with imap(fn, items, chunksize). Workers are forked, so HDF5 readers
    passed in `fn` reopen in each worker (ArtifactReader does so lazily)."""
    if workers <= 1:
        yield _Serial()
        return
    with get_context("fork").Pool(workers) as pool:
        yield pool


class _Serial:
    def imap(self, fn, items, chunksize=1):
        return map(fn, items)
