"""How every stage runs: its main() is decorated with `stage_main` (so `python -m stages.NAME` and the
console scripts behave alike).

The project's own errors print one line, `stages.NAME: <kind> error: <message>`, and exit with the
status of their kind (STATUSES; docs/robustness.md has the table); anything else is unexpected and
keeps its traceback (exit 1). WSSS_DEBUG=1 in the environment prints the traceback of every error,
with the same status. Inside a run the artifacts a stage publishes keep a receipt until it ends
well (pipeline/core/store.py), so a kill after publishing loses no finished work.
"""
from __future__ import annotations

import functools
import os
import re
import sys
import traceback

from pipeline.core import store
from pipeline.core.config import ConfigError
from pipeline.core.training import TrainingDiverged
from pipeline.data.voc import DatasetError
from pipeline.models.checkpoint import CheckpointError
from pipeline.models.weights import WeightsError

# (error class, kind, exit status); the first class that matches wins. 1 is left to unexpected
# errors (Python's own status for an uncaught exception), 2 to bad arguments (argparse's).
STATUSES = (
    (ConfigError, "config", 3),
    (DatasetError, "dataset", 4),
    (CheckpointError, "checkpoint", 5),
    (WeightsError, "checkpoint", 5),
    (TrainingDiverged, "training", 6),
    (store.ArtifactCorrupt, "store", 7),
    (store.ArtifactWriteError, "disk", 8),
)


def debug() -> bool:
    return os.environ.get("WSSS_DEBUG", "") not in ("", "0")


def classify(exc: BaseException) -> tuple[str, int] | None:
    """(kind, exit status) of one of the project's errors; None for any other exception."""
    for cls, kind, status in STATUSES:
        if isinstance(exc, cls):
            return kind, status
    return None


def message(exc: BaseException) -> str:
    """The error's message; raised in a DataLoader worker, torch wraps it in the worker's traceback:
    then the message is that traceback's last line, without the class name."""
    text = str(exc)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+: ", "", last.strip())
    return text


def stage_main(main):
    """Decorates a stage's main(argv=None): the project's errors end it with one line and their exit
    status; the artifacts it publishes keep their receipt until it returns."""
    @functools.wraps(main)
    def run(argv=None):
        name = store.running_stage() if main.__module__ == "__main__" else main.__module__.rsplit(".", 1)[-1]
        store.hold_receipts(True)
        try:
            result = main(argv)
        except Exception as exc:  # noqa: BLE001  sorted below: the project's own, or unexpected
            known = classify(exc)
            if known is None:
                raise
            if debug():
                traceback.print_exc()
            kind, status = known
            print(f"stages.{name}: {kind} error: {message(exc)}", file=sys.stderr, flush=True)
            sys.exit(status)
        finally:
            store.hold_receipts(False)   # what it published before failing keeps its receipt
        store.release_receipts()
        return result
    return run
