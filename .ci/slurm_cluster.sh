#!/usr/bin/env bash
# A real single-node SLURM cluster from Debian's packages, for tests/test_slurm.py and CI.
#
#   .ci/slurm_cluster.sh install        apt-get the packages (once; needs root and a mirror)
#   .ci/slurm_cluster.sh start STATE    write the configuration, start munged, mariadbd,
#                                       slurmdbd, slurmctld and slurmd, wait until the node
#                                       is idle; every daemon's PID goes to STATE/pids/
#   .ci/slurm_cluster.sh stop STATE     stop exactly those PIDs, remove the configuration
#
# Everything lives under STATE except /etc/slurm/slurm.conf and slurmdbd.conf: the job-step
# plugin drops SLURM_CONF, so job steps only find the configuration at the default path. An
# existing /etc/slurm/slurm.conf that this script did not write is never touched.
# Accounting goes through slurmdbd (MariaDB), so the executor plugin's sacct status checks
# work; DefMemPerCPU lets jobs share the node; the node offers one GPU GRES (backed by
# /dev/null: nothing runs on it) so that --gpus=1 jobs are scheduled as on a GPU cluster.
set -euo pipefail

MARK="# written by ccma .ci/slurm_cluster.sh"
CLUSTER=ccma
DB_PORT=${CCMA_SLURM_DB_PORT:-33061}
DBD_PORT=${CCMA_SLURM_DBD_PORT:-6819}
CTLD_PORT=${CCMA_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${CCMA_SLURM_SLURMD_PORT:-6818}
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)

die() { echo "slurm_cluster.sh: $*" >&2; exit 1; }

wait_for() {  # wait_for SECONDS DESCRIPTION LOG COMMAND...: poll until COMMAND succeeds
    local seconds=$1 what=$2 log=$3; shift 3
    local end=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then
            echo "slurm_cluster.sh: $what not ready after ${seconds}s; last lines of $log:" >&2
            tail -n 30 "$log" >&2 || true
            exit 1
        fi
        sleep 1
    done
}

daemon() {  # daemon NAME LOG COMMAND...: start in the foreground mode, in the background
    local name=$1 log=$2; shift 2
    "$@" >>"$log" 2>&1 &
    echo $! >"$STATE/pids/$name.pid"
    sleep 0.5
    kill -0 "$(cat "$STATE/pids/$name.pid")" 2>/dev/null || { tail -n 30 "$log" >&2; die "$name exited at once"; }
}

install() {
    [[ $(id -u) == 0 ]] || die "install: must run as root"
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

write_config() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
    mkdir -p /etc/slurm
    cat >/etc/slurm/slurm.conf <<EOF
$MARK (state: $STATE)
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStoreFlags=job_comment
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cat >/etc/slurm/gres.conf <<EOF
$MARK
NodeName=$host Name=gpu File=/dev/null Count=1
EOF
    cat >/etc/slurm/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=ccma
StorageLoc=slurm_acct_db
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
}

start() {
    [[ $(id -u) == 0 ]] || die "start: must run as root (the daemons run as root)"
    for conf in slurm.conf slurmdbd.conf gres.conf; do
        if [[ -e /etc/slurm/$conf ]] && ! grep -q "^$MARK" "/etc/slurm/$conf"; then
            die "/etc/slurm/$conf exists and is not ours; refusing to replace a real cluster's configuration"
        fi
    done
    mkdir -p "$STATE"/{pids,log,mysql,slurmctld,slurmd}
    STATE=$(cd "$STATE" && pwd)
    trap stop EXIT  # a start that fails stops what it started
    write_config

    # munge on its default socket (Slurm's clients only look there), with the key Debian's
    # package generated; a munged already answering there is used as it is
    if ! munge -n >/dev/null 2>&1; then
        mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
        # (munged keeps its files in the package's own directories: STATE may be private)
        daemon munged "$STATE/log/munged.log" setpriv --reuid=munge --regid=munge --init-groups \
            munged --foreground
        wait_for 20 munged "$STATE/log/munged.log" munge -n
    fi

    # MariaDB on a private data directory and port, with the accounting database's user
    mariadb-install-db --no-defaults --user=root --datadir="$STATE/mysql" --skip-test-db \
        --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 \
        || { tail -n 30 "$STATE/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    daemon mariadbd "$STATE/log/mariadbd.log" mariadbd --no-defaults --user=root --datadir="$STATE/mysql" \
        --socket="$STATE/mysql.sock" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$STATE/mysql.pid" --innodb-buffer-pool-size=64M
    wait_for 60 mariadbd "$STATE/log/mariadbd.log" mariadb --no-defaults -S "$STATE/mysql.sock" -u root -e "SELECT 1"
    mariadb --no-defaults -S "$STATE/mysql.sock" -u root -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'ccma';
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'ccma';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

    daemon slurmdbd "$STATE/log/slurmdbd.out" slurmdbd -D
    wait_for 60 slurmdbd "$STATE/log/slurmdbd.log" sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -i add account ccma Description=ccma Organization=ccma >/dev/null
    sacctmgr -i add user root Account=ccma DefaultAccount=ccma >/dev/null

    daemon slurmctld "$STATE/log/slurmctld.out" slurmctld -D -i
    wait_for 60 slurmctld "$STATE/log/slurmctld.log" scontrol ping
    daemon slurmd "$STATE/log/slurmd.out" slurmd -D
    wait_for 60 "the node" "$STATE/log/slurmd.log" node_idle
    trap - EXIT
    echo "slurm_cluster.sh: cluster $CLUSTER up on $(hostname -s) ($(nproc) CPUs, 1 GPU GRES); state in $STATE"
}

node_idle() { [[ $(sinfo -h -N -o %t | head -n1) == idle ]]; }

stop() {
    [[ -d "$STATE/pids" ]] || return 0
    local name pid
    # reverse order of start: clients of a daemon go first
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        [[ -f "$STATE/pids/$name.pid" ]] || continue
        pid=$(cat "$STATE/pids/$name.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$STATE/pids/$name.pid"
    done
    for conf in slurm.conf slurmdbd.conf gres.conf; do
        if [[ -e /etc/slurm/$conf ]] && grep -q "^$MARK" "/etc/slurm/$conf"; then rm -f "/etc/slurm/$conf"; fi
    done
}

case "${1:-}" in
    install) install ;;
    start) [[ -n "${2:-}" ]] || die "usage: $0 start STATE_DIR"; STATE=$2; start ;;
    stop) [[ -n "${2:-}" ]] || die "usage: $0 stop STATE_DIR"; STATE=$2; stop ;;
    *) die "usage: $0 install | start STATE_DIR | stop STATE_DIR" ;;
esac
