#!/usr/bin/env bash
# The demo DAG through profiles/slurm on the one-node test cluster, checked against a local run:
#
#   bash tests/slurm/run_demo.sh [LOCAL_RESULTS]
#
# LOCAL_RESULTS is the results/ directory of a finished local `results/demo/miou.json` run; without
# it the local run is made first. Prints both wall times, the jobs' sacct rows, and the comparison
# of every artifact (tests/slurm/compare_results.py); exits non-zero if a job did not complete or
# an artifact differs. Uses the project's .venv (or $PYTHON).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
work=$(mktemp -d /tmp/wsss-slurm-demo.XXXXXX)
bash "$repo/tests/slurm/start_cluster.sh"

local_results=${1:-}
if [ -z "$local_results" ]; then
    mkdir -p "$work/local" && cd "$work/local"
    start=$SECONDS
    "$py" -m snakemake -s "$repo/Snakefile" --cores 2 -- results/demo/miou.json > snakemake.log 2>&1
    echo "local run: $((SECONDS - start)) s ($work/local)"
    local_results=$work/local/results
fi

mkdir -p "$work/slurm" && cd "$work/slurm"
start=$SECONDS
"$py" -m snakemake -s "$repo/Snakefile" --workflow-profile "$repo/profiles/slurm" -- results/demo/miou.json \
    > snakemake.log 2>&1 || { tail -50 snakemake.log; exit 1; }
echo "SLURM run: $((SECONDS - start)) s ($work/slurm)"

ids=$(grep -oP 'submitted with SLURM jobid \K[0-9]+' snakemake.log | paste -sd, -)
planned=$(grep -oP '^total\s+\K[0-9]+' snakemake.log | head -1)
echo "jobs planned: $planned, submitted through sbatch: $(echo "$ids" | tr ',' '\n' | wc -l)"
sacct -X -j "$ids" --format=JobID,JobName%10,Partition,State,Elapsed,AllocTRES%50
not_done=$(sacct -X -n -P -j "$ids" --format=State | grep -vc '^COMPLETED$' || true)
[ "$not_done" -eq 0 ] || { echo "$not_done jobs did not complete"; exit 1; }
"$py" "$repo/tests/slurm/compare_results.py" "$local_results" results
