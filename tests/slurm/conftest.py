"""The Slurm cluster for tests/slurm: used if it is up, else started here (as root) and stopped at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CLUSTER_SH = Path(__file__).resolve().parent / "cluster.sh"


def cluster_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="session", autouse=True)
def slurm_cluster():
    """`make test` starts and stops the cluster around `pytest -m slurm`; run alone, pytest does it."""
    if cluster_up():
        yield
        return
    if os.geteuid() != 0:
        pytest.skip("no Slurm cluster is running and starting one needs root: sudo tests/slurm/cluster.sh start")
    subprocess.run(["bash", str(CLUSTER_SH), "start"], check=True, timeout=900)
    try:
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER_SH), "stop"], timeout=300)
