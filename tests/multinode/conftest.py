"""The throw-away two-node Slurm cluster (tests/slurm/cluster2.sh) for tests/multinode.

Brought up here (as root) if it is not running, and taken down at the end of the session; elsewhere the
tests are skipped with the reason. `make test` runs them through tests/slurm/ci.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CLUSTER2_SH = Path(__file__).resolve().parents[1] / "slurm" / "cluster2.sh"
STATE = Path(os.environ.get("DIFFNET_SLURM2_STATE", "/var/lib/diffnet-slurm2"))
SLURM_CONF = STATE / "etc" / "slurm.conf"


def cluster2(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER2_SH), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session", autouse=True)
def two_node_cluster():
    if os.geteuid() != 0 or shutil.which("nsenter") is None or shutil.which("ip") is None:
        pytest.skip("the two-node cluster needs root, nsenter and ip: sudo tests/slurm/cluster2.sh up")
    up = cluster2("up", timeout=900)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield
    finally:
        cluster2("down")
