"""Passing an interrupt on to the running stages.

On SIGINT to Snakemake alone (`kill -INT`, a batch system's signal), Snakemake waits for the
running jobs to finish before it stops, then counts them as failed and deletes their outputs:
hours of training done for nothing and redone from scratch. Sent on to
the stage processes instead, the SIGINT stops them at once as a KeyboardInterrupt, which keeps
their `.partial` (training resumes from the last epoch, a per-image stage from its last key)."""
from __future__ import annotations

import signal

import psutil


def interrupt_stages(shell_pids) -> int:
    """SIGINT to every stage process (`python -m stages.*`) below the given job shells; returns
    how many were signalled. The shells and `tee` are left alone, so the stage's last words still
    reach its log."""
    signalled = 0
    for pid in shell_pids:
        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.Error:   # the job ended meanwhile
            continue
        for child in children:
            try:
                if "stages." in " ".join(child.cmdline()):
                    child.send_signal(signal.SIGINT)
                    signalled += 1
            except psutil.Error:
                continue
    return signalled
