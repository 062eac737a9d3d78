#!/usr/bin/env bash
# Start a real one-node SLURM cluster (Slurm 22.05, Debian bookworm) on this
# machine, with job accounting (slurmdbd + MariaDB, so `sacct` works) and one
# fake GPU as a generic resource.  No systemd needed: every daemon is started
# directly in the background.
#
# Idempotent: packages are installed only when missing, config files are
# rewritten only when their content changes, and daemons already running are
# left alone.  If the cluster is already up, the script only prints its status.
#
# Config lives at the default paths (/etc/slurm/slurm.conf, gres.conf,
# slurmdbd.conf), so no SLURM_CONF variable is needed by sbatch/sacct or by
# Snakemake's SLURM executor plugin.
#
# Tunables (environment):
#   SLURM_CLUSTER_NAME  cluster name registered in slurmdbd   (default: localcluster)
#   SLURM_ACCOUNT_NAME  account created for root (and $SUDO_USER) (default: wsss, as in profiles/slurm)
#   SLURM_FAKE_GPUS     number of fake GPUs on the node, 0 = none (default: 1)
#   SLURM_START_TIMEOUT seconds to wait for each daemon / the node (default: 60)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    exec sudo -E bash "$0" "$@"
fi

CLUSTER=${SLURM_CLUSTER_NAME:-localcluster}
ACCOUNT=${SLURM_ACCOUNT_NAME:-wsss}
GPUS=${SLURM_FAKE_GPUS:-1}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
HOST=$(hostname -s)

ETC=/etc/slurm
RUN=/run/slurm
LOG=/var/log/slurm
STATE=/var/lib/slurm
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=slurm-local-test     # reachable only through the local socket (mariadbd --skip-networking)
MARKER="# Written by tests/slurm/start_cluster.sh (one-node test cluster)"

log() { echo "[start_cluster] $*"; }
die() { echo "[start_cluster] ERROR: $*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds.
wait_for() {
    local secs=$1 what=$2; shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || die "timed out after ${secs}s waiting for $what"
        sleep 0.5
    done
}

pid_alive() {   # pid_alive PIDFILE
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# ---------------------------------------------------------------- packages --
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    # Keep the packages' maintainer scripts from starting daemons (no init here).
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    [ "$own_policy" -eq 0 ] || rm -f /usr/sbin/policy-rc.d
fi

mkdir -p "$RUN" "$LOG" "$STATE/slurmctld" "$STATE/slurmd" "$ETC"

# ------------------------------------------------------------ config files --
# write_if_changed PATH MODE: write stdin to PATH if different; return 0 if changed.
write_if_changed() {
    local path=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat > "$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"; return 1
    fi
    if [ -f "$path" ] && ! grep -qF "$MARKER" "$path" && [ ! -e "$path.orig" ]; then
        cp -p "$path" "$path.orig"     # keep a config we did not write
    fi
    install -m "$mode" -o root -g root "$tmp" "$path" || die "cannot write $path"
    rm -f "$tmp"
    log "wrote $path"
    return 0
}

NCPU=$(nproc --all)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MB=$((MEM_MB * 95 / 100))            # a bit under MemTotal, or slurmd drains the node
DEF_MB=$((REAL_MB / NCPU))                # default memory per CPU, so jobs share the node
NODE_GRES=""
GRES_TYPES=""
if [ "$GPUS" -gt 0 ]; then
    NODE_GRES=" Gres=gpu:$GPUS"
    GRES_TYPES="GresTypes=gpu"
fi

conf_changed=0
write_if_changed "$ETC/slurm.conf" 644 <<EOF && conf_changed=1 || true
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
# No cgroups in this container: plain /proc process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
ReturnToService=2
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MB
InactiveLimit=0
KillWait=30
MinJobAge=300
Waittime=0
$GRES_TYPES
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$REAL_MB$NODE_GRES State=UNKNOWN
# the partitions profiles/slurm names: CPU jobs to cpu, GPU jobs to gpu (one node serves both here)
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
EOF

# Fake GPUs: slurmd drops a GPU that has no device file ("Removing file-less
# GPU", node then goes INVAL), so each fake GPU gets a character device that
# behaves like /dev/null.  Jobs that ask for GPUs are scheduled, accounted
# (gres/gpu TRES) and get CUDA_VISIBLE_DEVICES, but there is no real device.
# Where mknod is not allowed (a container without CAP_MKNOD), one fake GPU is /dev/null itself.
FAKE_GPU_DIR=$STATE/fake-gpu
if [ "$GPUS" -gt 0 ]; then
    mkdir -p "$FAKE_GPU_DIR"
    for ((i = 0; i < GPUS; i++)); do
        [ -c "$FAKE_GPU_DIR/gpu$i" ] || mknod -m 666 "$FAKE_GPU_DIR/gpu$i" c 1 3 2>/dev/null \
            || { [ "$GPUS" -eq 1 ] || die "mknod not allowed here: set SLURM_FAKE_GPUS=1 (uses /dev/null)"; }
    done
fi
GPU0=$FAKE_GPU_DIR/gpu0
[ -c "$GPU0" ] || GPU0=/dev/null
{
    echo "$MARKER"
    echo "AutoDetect=off"
    if [ "$GPUS" -eq 1 ]; then
        echo "NodeName=$HOST Name=gpu Count=1 File=$GPU0"
    elif [ "$GPUS" -gt 1 ]; then
        echo "NodeName=$HOST Name=gpu Count=$GPUS File=$FAKE_GPU_DIR/gpu[0-$((GPUS - 1))]"
    fi
    true
} | write_if_changed "$ETC/gres.conf" 644 && conf_changed=1 || true

dbd_changed=0
write_if_changed "$ETC/slurmdbd.conf" 600 <<EOF && dbd_changed=1 || true
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF

# ------------------------------------------------------------------- munge --
if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for "$TIMEOUT" munged bash -c 'munge -n | unmunge'
fi

# ----------------------------------------------------------------- mariadb --
if ! mysqladmin --protocol=socket ping >/dev/null 2>&1; then
    if [ ! -d /var/lib/mysql/mysql ]; then
        log "initialising MariaDB data directory"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    log "starting mariadbd"
    install -d -o mysql -g mysql -m 755 /run/mysqld
    # setsid + nohup: keeps running after this script (and its shell) exits.
    setsid nohup /usr/sbin/mariadbd --user=mysql --skip-networking \
        --pid-file=/run/mysqld/mysqld.pid --socket=/run/mysqld/mysqld.sock \
        --log-error="$LOG/mariadb.log" </dev/null >/dev/null 2>&1 &
    wait_for "$TIMEOUT" mariadbd mysqladmin --protocol=socket ping
fi
mysql --protocol=socket -u root <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'localhost';
EOF

# ---------------------------------------------------------------- slurmdbd --
if [ "$dbd_changed" -eq 1 ] && pid_alive "$RUN/slurmdbd.pid"; then
    log "slurmdbd.conf changed: restarting slurmdbd"
    kill "$(cat "$RUN/slurmdbd.pid")"
    wait_for 30 "slurmdbd to stop" bash -c "! kill -0 $(cat "$RUN/slurmdbd.pid")"
fi
if ! pid_alive "$RUN/slurmdbd.pid"; then
    log "starting slurmdbd"
    slurmdbd
fi
wait_for "$TIMEOUT" "slurmdbd (sacctmgr)" sacctmgr -n list cluster

# Register cluster, account and users (sacctmgr -i fails if they already exist).
sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" \
    || sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" \
    || sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="test account" Organization=wsss >/dev/null
for u in root ${SUDO_USER:-}; do
    sacctmgr -n -P list association user="$u" account="$ACCOUNT" format=user | grep -qx "$u" \
        || sacctmgr -i add user "$u" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null
done

# --------------------------------------------------------- slurmctld/slurmd --
if [ "$conf_changed" -eq 1 ]; then
    for d in slurmd slurmctld; do
        if pid_alive "$RUN/$d.pid"; then
            log "slurm config changed: restarting $d"
            pid=$(cat "$RUN/$d.pid")
            kill "$pid"
            wait_for 30 "$d to stop" bash -c "! kill -0 $pid"
        fi
    done
fi
if ! pid_alive "$RUN/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld
fi
wait_for "$TIMEOUT" slurmctld scontrol ping
if ! pid_alive "$RUN/slurmd.pid"; then
    log "starting slurmd"
    slurmd -N "$HOST"
fi

node_state() { sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n1; }
end=$((SECONDS + TIMEOUT))
while :; do
    state=$(node_state)
    case "$state" in
        idle|mix|alloc|comp) break ;;
        drain*|drng|down*) # left over from an earlier run (e.g. config changed)
            scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
        inval)
            die "node $HOST is INVAL: $(sinfo -h -N -n "$HOST" -o %E) (see $LOG/slurmd.log)" ;;
    esac
    [ "$SECONDS" -lt "$end" ] || die "node $HOST is '$state' after ${TIMEOUT}s: $(sinfo -h -N -n "$HOST" -o %E) (see $LOG/slurmd.log, $LOG/slurmctld.log)"
    sleep 0.5
done

log "cluster '$CLUSTER' is up (account '$ACCOUNT', partitions 'cpu' and 'gpu', fake GPUs: $GPUS)"
sinfo -o "%P %a %l %D %t %N %C %m %G"
