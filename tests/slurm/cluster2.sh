#!/usr/bin/env bash
# A throw-away two-node Slurm 22.05 cluster on one machine, each node its own Linux network namespace,
# for the multi-node tests (tests/slurm/test_two_nodes.py).
#
#   tests/slurm/cluster2.sh up       build the namespaces and start the daemons (idempotent)
#   tests/slurm/cluster2.sh status   sinfo / squeue, run inside the controller namespace
#   tests/slurm/cluster2.sh down     stop everything it started and remove what it made (idempotent)
#   tests/slurm/cluster2.sh run CMD  run CMD as a Slurm client: inside the controller namespace, SLURM_CONF set
#
# Layout (subnet 10.213.77.0/24, blackholed in the root namespace before anything starts, so that no
# packet to it can leave the machine even if a link is left behind):
#   dn2-ctl    bridge dn2br 10.213.77.1: slurmctld, slurmdbd, and every Slurm client call
#   dn2-node1  eth0 10.213.77.11 (veth dn2v1 in dn2-ctl, on the bridge): slurmd -N node1
#   dn2-node2  eth0 10.213.77.12 (veth dn2v2): slurmd -N node2
# The daemons enter a namespace with `nsenter --net` (not `ip netns exec`, which remounts /sys; slurmd
# 22.05 then dies for lack of cgroup mounts). Each slurmd runs in its own UTS and mount namespace: its
# hostname is its node name, and /etc/slurm and /etc/hosts are bind-mounted from this cluster's state
# directory, because the Snakemake Slurm plugin strips SLURM_CONF before a job step's srun runs, which
# then reads /etc/slurm/slurm.conf. Everywhere else SLURM_CONF names this cluster's config, so the
# Debian package's (or tests/slurm/cluster.sh's) /etc/slurm never interferes. munged and MariaDB are
# shared through their sockets (the file system is shared); the accounting database is this cluster's own.
# Each node has 1 CPU: two ranks are two nodes.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${DIFFNET_SLURM2_STATE:-/var/lib/diffnet-slurm2}
# cluster.sh's helpers (install_packages, start_munge, wait_for, stop_pidfile, ...) on this cluster's state.
DIFFNET_SLURM_STATE=$STATE source "$HERE/cluster.sh"
CLUSTER=diffnet2
LOG=$STATE/log
RUN=$STATE/run
ETC2=$STATE/etc
export SLURM_CONF=$ETC2/slurm.conf
SUBNET=10.213.77.0/24
CTL_ADDR=10.213.77.1
NODES=(node1 node2)
node_addr() { echo "10.213.77.1${1#node}"; }
DB_NAME=slurm_acct_db2

in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }
client() { in_ns dn2-ctl env SLURM_CONF="$SLURM_CONF" "$@"; }

make_network() {
    # Safety first: nothing addressed to the subnet leaves the root namespace, whatever happens next.
    ip route replace blackhole "$SUBNET"
    ip netns list | grep -qw dn2-ctl || ip netns add dn2-ctl
    in_ns dn2-ctl ip link set lo up
    in_ns dn2-ctl ip link show dn2br >/dev/null 2>&1 || in_ns dn2-ctl ip link add dn2br type bridge
    in_ns dn2-ctl ip addr replace "$CTL_ADDR/24" dev dn2br
    in_ns dn2-ctl ip link set dn2br up
    for node in "${NODES[@]}"; do
        local ns=dn2-$node veth=dn2v${node#node}
        ip netns list | grep -qw "$ns" || ip netns add "$ns"
        in_ns "$ns" ip link set lo up
        if ! in_ns dn2-ctl ip link show "$veth" >/dev/null 2>&1; then
            ip -n dn2-ctl link add "$veth" type veth peer name eth0 netns "$ns"
        fi
        in_ns dn2-ctl ip link set "$veth" master dn2br up
        in_ns "$ns" ip addr replace "$(node_addr "$node")/24" dev eth0
        in_ns "$ns" ip link set eth0 up
    done
}

write_cluster_configs() {
    install -d -m 755 "$ETC2" "$STATE/slurmctld"
    local mem
    mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) / 4 ))
    cat > "$ETC2/slurmdbd.conf" <<EOF
# Written by tests/slurm/cluster2.sh
AuthType=auth/munge
DbdAddr=$CTL_ADDR
DbdHost=$(hostname -s)
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
    chmod 600 "$ETC2/slurmdbd.conf"
    cat > "$ETC2/slurm.conf" <<EOF
# Written by tests/slurm/cluster2.sh: two nodes in network namespaces (no systemd, no cgroups).
ClusterName=$CLUSTER
SlurmctldHost=$(hostname -s)($CTL_ADDR)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
$(slurm_conf_common)
AccountingStorageHost=$CTL_ADDR
NodeName=node[1-2] NodeHostname=node[1-2] NodeAddr=10.213.77.[11-12] CPUs=1 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    {
        echo "127.0.0.1 localhost"
        echo "$CTL_ADDR $(hostname -s) dn2-ctl"
        for node in "${NODES[@]}"; do echo "$(node_addr "$node") $node"; done
    } > "$STATE/hosts"
}

start_shared_services() {
    start_munge
    if ! mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1; then
        start_mariadb  # records its pid under this cluster's state: ours to stop
    fi
    mariadb --socket=/run/mysqld/mysqld.sock -e \
        "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
         GRANT ALL ON $DB_NAME.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

start_slurmd() {  # start_slurmd NODE: in its network namespace, with its own hostname and /etc view
    local node=$1
    pid_alive "$RUN/slurmd-$node.pid" && return 0
    install -d -m 755 "$STATE/slurmd-$node"
    in_ns "dn2-$node" unshare --uts --mount --propagation private bash -c "
        hostname $node
        mount --bind '$ETC2' /etc/slurm
        mount --bind '$STATE/hosts' /etc/hosts
        exec env SLURM_CONF=/etc/slurm/slurm.conf slurmd -N $node" >> "$LOG/slurmd-start.log" 2>&1
}

up() {
    need_root
    local t0=$SECONDS
    install -d -m 755 "$STATE" "$LOG" "$RUN"
    install_packages
    make_network
    write_cluster_configs
    start_shared_services
    # slurmdbd reads the slurmdbd.conf beside $SLURM_CONF.
    pid_alive "$RUN/slurmdbd.pid" || in_ns dn2-ctl env SLURM_CONF="$SLURM_CONF" slurmdbd
    wait_for 60 slurmdbd client sacctmgr -n list cluster
    if ! client sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        client sacctmgr -i add cluster "$CLUSTER" > /dev/null
    fi
    pid_alive "$RUN/slurmctld.pid" || in_ns dn2-ctl env SLURM_CONF="$SLURM_CONF" slurmctld
    wait_for 60 slurmctld client scontrol ping
    for node in "${NODES[@]}"; do start_slurmd "$node"; done
    wait_idle "${NODES[@]}"
    say "two-node cluster '$CLUSTER' up in $((SECONDS - t0)) s: ${NODES[*]} idle ($SUBNET, SLURM_CONF=$SLURM_CONF)"
}

down() {
    need_root
    if [[ -e /run/netns/dn2-ctl ]] && client scontrol ping >/dev/null 2>&1; then
        cancel_all_jobs
    fi
    for node in "${NODES[@]}"; do stop_pidfile "slurmd $node" "$RUN/slurmd-$node.pid"; done
    stop_pidfile slurmctld "$RUN/slurmctld.pid"
    stop_pidfile slurmdbd "$RUN/slurmdbd.pid"
    stop_shared_services
    # Anything still running inside the namespaces (a job step that outlived its slurmd) goes too.
    for ns in dn2-node1 dn2-node2 dn2-ctl; do
        if [[ -e /run/netns/$ns ]]; then
            local pids
            pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
            # shellcheck disable=SC2086
            [[ -n ${pids// } ]] && kill -9 $pids 2>/dev/null || true
            ip netns del "$ns"
        fi
    done
    ip route del blackhole "$SUBNET" 2>/dev/null || true
    say "two-node cluster '$CLUSTER' down: daemons stopped, namespaces, links and route removed"
}

status2() {
    if ! [[ -e /run/netns/dn2-ctl ]] || ! client scontrol ping >/dev/null 2>&1; then
        echo "the two-node cluster is not running"
        return 3
    fi
    client sinfo -N
    echo
    client squeue
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status2 ;;
    run) shift; client "$@" ;;
    *) echo "usage: $0 up|status|down|run CMD..." >&2; exit 2 ;;
esac
