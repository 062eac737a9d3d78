"""The pipeline's logic: stages/ wires command-line arguments to it, the Snakefile chains the stages."""
import os

# Set before anything imports torch (libgomp reads it once, when it loads): OpenMP threads
# waiting for work sleep instead of spinning. On a shared machine a spinning thread holds the
# core its sibling (or another job) needs, and every small op then waits for a scheduler slice:
# with 2 threads beside one busy process a loop of small ops ran 5-10x slower than with 1 thread
# (issue 18; benchmarks/bench_stages.py measures the stages idle and busy). An explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
