"""Training whose ranks span two Slurm nodes, through the user-facing profiles/slurm.

Each node is a network namespace (tests/slurm/cluster2.sh), so MPI traffic between ranks crosses a veth
pair and the bridge, where its bytes are counted. The pip MPICH wheel's default transport (UCX) would
move the data through shared memory, since the "nodes" share one kernel; the tests therefore set the
profile's `mpi_env` to the libfabric TCP netmod, the setting profiles/slurm documents for the wheel on a
TCP network (docs/multinode.md says why not UCX_TLS=self,tcp).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time

import pandas as pd
import pytest
import yaml

from diffnet.config import experiment_from_dict, validate
from diffnet.resources import parameter_count
from tests.conftest import BIN, REPO, TINY, write_config, write_scaling_config
from tests.multinode.conftest import SLURM_CONF, cluster2

pytestmark = [pytest.mark.multinode, pytest.mark.slow, pytest.mark.mpi]

WHEEL_TCP = "MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp"
CTL = ["nsenter", "--net=/run/netns/dn2-ctl"]


def _env() -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg",
            "SLURM_CONF": str(SLURM_CONF)}


def _profile(tmp_path) -> list[str]:
    """profiles/slurm with its one network setting filled in, plus the test layer (fast status checks)."""
    doc = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    for rule in ("train", "scaling_train"):
        doc["set-resources"][rule]["mpi_env"] = WHEEL_TCP
    folder = tmp_path / "profile"
    folder.mkdir(exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(doc))
    return ["--profile", str(folder), "--profile", str(REPO / "tests" / "slurm" / "profile")]


def _command(tmp_path, *args) -> list[str]:
    return [*CTL, str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(tmp_path / "config.yaml"), *_profile(tmp_path), *args]


def _snakemake(tmp_path, *args, ok: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(_command(tmp_path, *args), capture_output=True, text=True, timeout=timeout, env=_env())
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, out[-6000:]
    return proc


def _veth_bytes(link: str = "dn2v2") -> int:
    """Bytes both ways through node2's veth (its only way to the other node)."""
    out = subprocess.run(["ip", "-n", "dn2-ctl", "-s", "-j", "link", "show", link], capture_output=True, text=True,
                         check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["rx"]["bytes"] + stats["tx"]["bytes"]


def _default_experiment(tmp_path, steps: int, **train) -> dict:
    """config/config.yaml's default experiment (burgers64), shortened to ``steps``."""
    doc = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    exp = doc["experiments"]["burgers64"]
    exp["train"].update({"steps": steps, "checkpoint_every": steps, **train})
    write_config(tmp_path / "config.yaml", {"run": ["burgers64"], "experiments": {"burgers64": exp}})
    return exp


def test_default_experiment_trains_across_two_nodes_like_on_one(tmp_path):
    steps = 50
    exp = _default_experiment(tmp_path, steps)
    before = _veth_bytes()
    _snakemake(tmp_path, "results/burgers64/training.csv")
    crossed = _veth_bytes() - before
    run = tmp_path / "results" / "burgers64"
    history = pd.read_csv(run / "training.csv")
    assert (history["ranks"] == 2).all() and len(history) == steps
    log = (run / "logs" / "train.log").read_text()
    assert re.search(r"rank 0 of 2 on host node1", log) and re.search(r"rank 1 of 2 on host node2", log), log
    # Every step all-reduces the fp32 gradient of every weight: node2 sends and receives at least that much.
    gradient = 4 * parameter_count(experiment_from_dict("burgers64", validate(
        {"experiments": {"burgers64": exp}})["experiments"]["burgers64"]))
    assert crossed >= steps * gradient, (crossed, steps * gradient)

    # The same training on one node with 2 ranks (mpiexec, shared memory): the same loss trajectory.
    one = tmp_path / "one_node"
    proc = subprocess.run([str(BIN / "mpiexec"), "-n", "2", str(BIN / "python"), "-m", "diffnet", "train",
                           "--config", str(run / "config.yaml"), "--samples", str(run / "samples.nc"),
                           "--out-dir", str(one),
                           "--threads", "1"], capture_output=True, text=True, timeout=600,
                          env={**_env(), "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = pd.read_csv(one / "training.csv")
    relative = (history["loss"] - reference["loss"]).abs() / reference["loss"].abs()
    assert relative.max() < 1e-5, relative.max()


def test_scaling_study_across_two_nodes(tmp_path):
    write_scaling_config(tmp_path / "config.yaml")
    _snakemake(tmp_path, "scaling")
    out = tmp_path / "results" / "scaling" / "tiny"
    table = pd.read_csv(out / "scaling.csv")
    assert table["ranks"].tolist() == [1, 2]
    assert table.loc[table["ranks"] == 2, "loss_max_rel_deviation"].item() < 1e-5
    log = (out / "logs" / "train_ranks2.log").read_text()
    assert "on host node1" in log and "on host node2" in log, log


def _start_long_training(tmp_path, steps: int) -> tuple[subprocess.Popen, str]:
    """snakemake training the tiny experiment on 2 nodes; returns it and the Slurm job id once steps log."""
    doc = copy.deepcopy(TINY)
    doc["experiments"]["tiny"]["train"].update(steps=steps, checkpoint_every=150)
    write_config(tmp_path / "config.yaml", doc)
    # The inputs locally first: the cluster then runs only the training job (each Slurm job costs polls).
    local = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                            "--configfile", str(tmp_path / "config.yaml"), "--cores", "2", "results/tiny/samples.nc"],
                           capture_output=True, text=True, timeout=300, env=_env())
    assert local.returncode == 0, local.stderr[-3000:]
    proc = subprocess.Popen(_command(tmp_path, "results/tiny/training.csv"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env())
    log = tmp_path / "results" / "tiny" / "logs" / "train.log"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        if log.is_file() and re.search(r"^step \d+/", log.read_text(), re.M):
            queue = subprocess.run([*CTL, "squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True,
                                   env=_env(), check=True).stdout
            running = [line.split("|")[0] for line in queue.splitlines()
                       if line.split("|")[1].startswith("rule_train") and line.endswith("RUNNING")]
            if running:
                return proc, running[0]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("training did not start")


def test_usr1_checkpoints_ranks_on_both_nodes_and_rerun_resumes(tmp_path):
    steps = 400
    proc, jobid = _start_long_training(tmp_path, steps)
    try:
        # What `--signal=USR1@120` does near the time limit: SIGUSR1 to the job steps, i.e. both nodes' ranks.
        subprocess.run([*CTL, "scancel", "--signal=USR1", jobid], check=True, timeout=60, env=_env())
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "Error in rule train" in out, out[-4000:]
    run = tmp_path / "results" / "tiny"
    log = (run / "logs" / "train.log").read_text()
    assert "on host node1" in log and "on host node2" in log, log
    stopped = set(re.findall(r"stopped at step (\d+) \(signal\)", log))
    assert len(stopped) == 1, log  # the ranks on both nodes agreed on one step
    stop_step = int(stopped.pop())
    assert 0 < stop_step < steps
    assert (run / "checkpoints" / f"step-{stop_step:08d}.pt").is_file()

    _snakemake(tmp_path, "results/tiny/training.csv")
    log = (run / "logs" / "train.log").read_text()
    assert f"resuming from results/tiny/checkpoints/step-{stop_step:08d}.pt at step {stop_step}" in log, log
    history = pd.read_csv(run / "training.csv")
    assert history["step"].tolist() == list(range(1, steps + 1)) and (history["ranks"] == 2).all()


def test_killing_the_rank_on_node2_ends_the_job_and_names_the_node(tmp_path):
    proc, _ = _start_long_training(tmp_path, 100_000)
    try:
        ranks = _ranks_on("dn2-node2")
        assert ranks, "no training rank found on node2"
        assert _ranks_on("dn2-node1"), "no training rank found on node1"
        killed = time.monotonic()
        for pid in ranks:
            os.kill(int(pid), 9)
        # The rank on node1 must not keep waiting for its dead peer: srun --kill-on-bad-exit ends the step.
        while _ranks_on("dn2-node1") and time.monotonic() - killed < 60:
            time.sleep(0.2)
        ended = time.monotonic() - killed
        # The job is over; the driver would only notice at its next status poll (the Slurm plugin backs off
        # to a minute and more between polls of a long job), which this test need not wait for.
        time.sleep(2)
    finally:
        # The driver would take minutes to shut down (it waits out its status poll); the job is over.
        proc.kill()
        proc.communicate(timeout=60)
        subprocess.run([*CTL, "scancel", "--user=root"], env=_env(), timeout=60)
    # Bound: the cluster's KillWait (30 s here). The surviving rank is blocked inside an MPI collective with
    # its dead peer, where no Python signal handler runs, so srun's SIGTERM cannot end it; the SIGKILL
    # KillWait seconds later does. Measured 30.3 s; 15 s of slack for a loaded 2-core machine, still well
    # under the 60 s after which the loop above gives up (a hang).
    kill_wait = int(re.search(r"^KillWait=(\d+)", SLURM_CONF.read_text(), re.M).group(1))
    assert ended < kill_wait + 15, (ended, kill_wait)
    log = (tmp_path / "results" / "tiny" / "logs" / "train.log").read_text()
    assert re.search(r"node2: task 1: Killed", log), log[-3000:]


def _ranks_on(namespace: str) -> list[str]:
    """PIDs of training ranks running in a node's namespace."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
    return [p for p in pids if re.search(r"python .*-m diffnet train", _cmdline(p))]


def _cmdline(pid: str) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_teardown_leaves_nothing_behind():
    down = cluster2("down")
    assert down.returncode == 0, down.stderr
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "dn2-" not in namespaces, namespaces
    routes = subprocess.run(["ip", "route", "show", "10.213.77.0/24"], capture_output=True, text=True).stdout
    assert routes.strip() == "", routes
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "dn2" not in links, links
    daemons = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not re.search(r"slurmd -N node[12]|diffnet-slurm2", daemons), daemons
    again = cluster2("down")  # idempotent
    assert again.returncode == 0, again.stderr
