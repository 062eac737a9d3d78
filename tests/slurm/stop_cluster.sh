#!/usr/bin/env bash
# Stop the one-node SLURM test cluster started by start_cluster.sh:
# slurmd, slurmctld, slurmdbd, mariadbd and munged, in that order.
# Only the daemons named by their pid files are signalled.  Safe to run twice.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    exec sudo -E bash "$0" "$@"
fi

log() { echo "[stop_cluster] $*"; }

# stop NAME PIDFILE: SIGTERM the pid in PIDFILE and wait for it to exit.
stop() {
    local name=$1 pidfile=$2 pid i
    if [ ! -s "$pidfile" ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "$name: not running"
        return 0
    fi
    pid=$(cat "$pidfile")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid"
    for i in $(seq 1 120); do            # up to 60 s
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.5
    done
    log "$name (pid $pid) did not stop after 60 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

stop slurmd    /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
stop slurmdbd  /run/slurm/slurmdbd.pid
stop mariadbd  /run/mysqld/mysqld.pid     # SIGTERM = clean shutdown
stop munged    /run/munge/munged.pid
