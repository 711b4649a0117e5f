#!/usr/bin/env bash
# A throw-away single-node Slurm cluster for the Slurm integration tests (tests/slurm/).
#
#   tests/slurm/cluster.sh start    install (once) and start munge, MariaDB, slurmdbd, slurmctld, slurmd
#   tests/slurm/cluster.sh stop     cancel the cluster's jobs and stop the daemons this script started
#   tests/slurm/cluster.sh status   sinfo / squeue / sacct
#
# Needs root and Debian 12 (slurm-wlm 22.05 from apt). No systemd and no cgroups: the daemons run as
# plain background processes, processes are tracked with proctrack/linuxproc. Accounting is real
# (slurmdbd + MariaDB), as on a production cluster, so the Snakemake plugin's default `sacct` status
# checks work. Configuration goes to the standard places (/etc/slurm, /etc/munge) so that every Slurm
# client, including srun inside a job whose SLURM_* variables were stripped, finds it.
# It only takes over what it created itself (recorded under $STATE): a slurm.conf or slurmdbd.conf it did
# not write, a munge key or MariaDB data directory that existed before it installed their packages, or a
# Slurm controller it did not start make it refuse, unless DIFFNET_TEST_CLUSTER_TAKEOVER=1 says that the
# machine is a disposable test box.
set -euo pipefail

CLUSTER=diffnet
STATE=${DIFFNET_SLURM_STATE:-/var/lib/diffnet-slurm}
LOG=$STATE/log
RUN=$STATE/run
ETC=/etc/slurm
DB_PASS=diffnet-slurmdbd    # local socket-only database of a test cluster
NODE_WAIT=${DIFFNET_SLURM_NODE_WAIT:-90}

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "error: $*"; exit 1; }

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"; }

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Where Slurm client commands run: here, directly; cluster2.sh runs them inside its controller namespace.
client() { "$@"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...   (WATCH_PID=pid: give up early if it dies)
    local limit=$1 what=$2; shift 2
    local t0=$SECONDS
    until "$@" >/dev/null 2>&1; do
        (( SECONDS - t0 < limit )) || die "$what not ready after ${limit}s (logs: $LOG)"
        if [[ -n ${WATCH_PID:-} ]] && ! kill -0 "$WATCH_PID" 2>/dev/null; then
            die "$what exited during start-up (logs: $LOG)"
        fi
        sleep 0.5
    done
}

install_packages() {
    local missing=()
    for exe in slurmctld:slurm-wlm slurmd:slurm-wlm sbatch:slurm-wlm slurmdbd:slurmdbd munged:munge \
               mariadbd:mariadb-server ip:iproute2; do
        command -v "${exe%%:*}" >/dev/null || missing+=("${exe##*:}")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian 12 only"
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    say "installing ${missing[*]} with apt-get"
    # Keep the packages' init scripts from starting daemons with their default configuration.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        > "$STATE/apt.log" 2>&1 || { ((own_policy)) && rm -f "$policy"; tail -20 "$STATE/apt.log" >&2;
                                     die "apt-get install failed (see $STATE/apt.log)"; }
    ((own_policy)) && rm -f "$policy"
    # What the packages brought (a munge key, an empty MariaDB) is this script's to configure.
    touch "$STATE/installed-packages"
    return 0
}

refuse_foreign() {  # never modify or submit to a Slurm/munge/MariaDB set-up this script did not create
    [[ ${DIFFNET_TEST_CLUSTER_TAKEOVER:-0} == 1 ]] && return 0
    local optin="(a disposable test machine opts in with DIFFNET_TEST_CLUSTER_TAKEOVER=1)"
    local conf
    for conf in "$ETC/slurm.conf" "$ETC/slurmdbd.conf"; do
        if [[ -e $conf ]] && ! head -1 "$conf" | grep -q '^# Written by tests/slurm/cluster.sh'; then
            die "$conf was not written by this script; refusing to overwrite a real Slurm set-up $optin"
        fi
    done
    if [[ ! -e $STATE/installed-packages ]]; then
        [[ -s /etc/munge/munge.key ]] && \
            die "/etc/munge/munge.key predates this script; refusing to use a real munge set-up $optin"
        [[ -d /var/lib/mysql/mysql ]] && \
            die "/var/lib/mysql holds a MariaDB this script did not create; refusing to use it $optin"
    fi
    if scontrol ping > /dev/null 2>&1 && ! pid_alive "$RUN/slurmctld.pid"; then
        die "a Slurm controller this script did not start answers; refusing to submit test jobs to it $optin"
    fi
    return 0
}

start_munge() {
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    if ! pid_alive /run/munge/munged.pid; then
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
        touch "$RUN/started-munged"  # a munged that was already running is not ours to stop
    fi
    wait_for 20 munge bash -c 'munge -n | unmunge'
}

start_mariadb() {
    install -d -o mysql -g mysql -m 755 /run/mysqld "$STATE/mariadb"
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql > "$LOG/mariadb-install.log" 2>&1
    fi
    local WATCH_PID=
    if ! pid_alive "$STATE/mariadb/mariadbd.pid"; then
        # Socket only (no TCP port); slurmdbd reaches it as 'localhost'.
        setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking \
            --socket=/run/mysqld/mysqld.sock --pid-file="$STATE/mariadb/mariadbd.pid" \
            --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
            --log-error="$STATE/mariadb/mariadb.log" < /dev/null > /dev/null 2>&1 &
        WATCH_PID=$!
    fi
    wait_for 60 MariaDB mariadb-admin --socket=/run/mysqld/mysqld.sock ping
    mariadb --socket=/run/mysqld/mysqld.sock -e \
        "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

slurm_conf_common() {  # the slurm.conf settings both test clusters share
    cat <<EOF
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# The pip MPICH wheel talks PMI-2 to srun.
MpiDefault=pmi2
ReturnToService=2
# squeue keeps finished jobs this long (the plugin's squeue status mode needs it).
MinJobAge=300
# Seconds between SIGTERM and SIGKILL at a time limit or scancel.
KillWait=30
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
JobCompType=jobcomp/none
EOF
}

write_configs() {
    install -d -m 755 "$ETC" "$STATE/slurmctld" "$STATE/slurmd"
    local node
    # `slurmd -C` describes this machine (name, CPUs, sockets/cores/threads, RealMemory).
    node=$(slurmd -C | head -1)
    [[ $node == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node"
    NODE_NAME=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<< "$node")
    cat > "$ETC/slurmdbd.conf" <<EOF
# Written by tests/slurm/cluster.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"
    cat > "$ETC/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a single-node test cluster (no systemd, no cgroups).
ClusterName=$CLUSTER
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
$(slurm_conf_common)
AccountingStorageHost=localhost
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_idle() {  # wait_idle NODE...: until every node is idle, resuming those that come up down or drained
    local t1=$SECONDS node state
    for node in "$@"; do
        until state=$(client sinfo -h -n "$node" -o %t 2>/dev/null); [[ $state == idle* ]]; do
            case $state in
                down*|drain*) client scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
            esac
            (( SECONDS - t1 < NODE_WAIT )) || { client sinfo -N -l >&2 || true; die "node $node not idle (logs: $LOG)"; }
            sleep 0.5
        done
    done
}

cancel_all_jobs() {  # and wait until none runs
    local jobs
    jobs=$(client squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    [[ -n ${jobs// } ]] || return 0
    say "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    client scancel --full $jobs 2>/dev/null || true
    for _ in $(seq 40); do [[ -z $(client squeue -h -t R,CG -o %i 2>/dev/null) ]] && break; sleep 0.5; done
}

stop_shared_services() {  # MariaDB and munged, if this cluster's start started them
    stop_pidfile mariadbd "$STATE/mariadb/mariadbd.pid"
    if [[ -e $RUN/started-munged ]]; then
        stop_pidfile munged /run/munge/munged.pid
        rm -f "$RUN/started-munged"
    fi
}

start() {
    need_root
    local t0=$SECONDS
    install -d -m 755 "$STATE" "$LOG" "$RUN"
    command -v scontrol > /dev/null && refuse_foreign  # before installing: what is there is someone else's
    install_packages
    refuse_foreign
    write_configs
    start_munge
    start_mariadb
    pid_alive "$RUN/slurmdbd.pid" || slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" > /dev/null
    fi
    pid_alive "$RUN/slurmctld.pid" || slurmctld
    wait_for 60 slurmctld scontrol ping
    pid_alive "$RUN/slurmd.pid" || slurmd
    wait_idle "$NODE_NAME"
    say "cluster '$CLUSTER' up in $((SECONDS - t0)) s: node $NODE_NAME idle, accounting via slurmdbd"
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM the daemon, wait, then KILL
    local name=$1 pidfile=$2 pid
    pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then say "$name did not stop on SIGTERM; killing"; kill -9 "$pid" || true; fi
    rm -f "$pidfile"
}

stop() {
    need_root
    if scontrol ping > /dev/null 2>&1; then
        cancel_all_jobs
    fi
    stop_pidfile slurmd "$RUN/slurmd.pid"
    stop_pidfile slurmctld "$RUN/slurmctld.pid"
    stop_pidfile slurmdbd "$RUN/slurmdbd.pid"
    stop_shared_services
    say "cluster '$CLUSTER' stopped"
}

status() {
    if ! scontrol ping > /dev/null 2>&1; then
        echo "slurmctld is not running"
        return 3
    fi
    sinfo
    echo
    squeue
    echo
    sacct -X -S now-1hour -o JobID,JobName%38,State,ExitCode,Elapsed 2>/dev/null | tail -n 20 || true
}

# Sourced (by cluster2.sh), this file only defines its functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    case ${1:-} in
        start) start ;;
        stop) stop ;;
        status) status ;;
        *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
    esac
fi
