#!/usr/bin/env bash
# The Slurm half of `make test`: start a throw-away single-node cluster (tests/slurm/cluster.sh), run
# `pytest -m slurm tests/slurm`, and stop the cluster again, also when the tests fail or are interrupted;
# then the multi-node tests (`pytest -m multinode tests/multinode`) on a throw-away two-node cluster in
# network namespaces (tests/slurm/cluster2.sh, brought up and torn down by tests/multinode/conftest.py).
# Runs only where that is possible (root and apt-get, i.e. a disposable Debian 12 machine or container);
# elsewhere it says that it skipped them. SLURM_TESTS=0 skips them too; SLURM_TESTS=1 fails instead of
# skipping. A cluster that tests/slurm/cluster.sh started earlier is used and left running; any other
# running Slurm controller makes it refuse (see cluster.sh: DIFFNET_TEST_CLUSTER_TAKEOVER=1 opts in).
set -uo pipefail
cd "$(dirname "$0")/../.."

mode=${SLURM_TESTS:-auto}
if [[ $mode == 0 ]]; then
    echo "make test: SKIPPED the Slurm tests (tests/slurm): SLURM_TESTS=0"
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get > /dev/null; then
    echo "make test: SKIPPED the Slurm tests (tests/slurm): they install and start a local Slurm cluster," \
         "which needs root and apt-get (Debian 12). Run them elsewhere with: sudo tests/slurm/cluster.sh start;" \
         "pytest -m slurm tests/slurm; sudo tests/slurm/cluster.sh stop"
    [[ $mode == 1 ]] && exit 1
    exit 0
fi

t0=$SECONDS
STATE=${DIFFNET_SLURM_STATE:-/var/lib/diffnet-slurm}
if scontrol ping > /dev/null 2>&1; then
    if [[ ${DIFFNET_TEST_CLUSTER_TAKEOVER:-0} != 1 ]] && ! { [[ -f $STATE/run/slurmctld.pid ]] &&
            kill -0 "$(cat "$STATE/run/slurmctld.pid")" 2> /dev/null; }; then
        echo "make test: a Slurm cluster that tests/slurm/cluster.sh did not start answers; refusing to submit" \
             "test jobs to it (a disposable test machine opts in with DIFFNET_TEST_CLUSTER_TAKEOVER=1)"
        exit 1
    fi
    echo "make test: using the test cluster that tests/slurm/cluster.sh started earlier"
    trap 'echo "make test: Slurm tests took $((SECONDS - t0)) s"' EXIT
else
    trap 'bash tests/slurm/cluster.sh stop; echo "make test: Slurm tests took $((SECONDS - t0)) s (cluster start, tests, stop)"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    bash tests/slurm/cluster.sh start || exit 1
fi
pytest -q -rs --timeout=1800 -m slurm tests/slurm "$@"
single=$?
# The two-node cluster shares munged and MariaDB with the single-node one (through their sockets); they
# are stopped with it, by the EXIT trap above.
t1=$SECONDS
pytest -q -rs --timeout=1800 -m multinode tests/multinode "$@"
multi=$?
echo "make test: multi-node tests took $((SECONDS - t1)) s"
exit $(( single || multi ))
