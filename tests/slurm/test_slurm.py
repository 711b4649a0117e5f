"""The workflow on a real (single-node) Slurm cluster, through the user-facing profiles/slurm.

Needs a running cluster (tests/slurm/cluster.sh start; `make test` does it as root) and is deselected by
default: run with `pytest -m slurm tests/slurm`. The only test-specific settings are in
tests/slurm/profile (a faster first status check); everything else is what a real cluster gets.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import time

import pandas as pd
import pytest

from tests.conftest import BIN, REPO, TINY, write_config, write_scaling_config
from tests.test_pipeline import ENSEMBLE, ENSEMBLE_OUTPUTS, OUTPUTS, assert_tiny_run_contract

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.mpi]

PROFILES = ["--profile", str(REPO / "profiles" / "slurm"), "--profile", str(REPO / "tests" / "slurm" / "profile")]
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/")


def _command(workdir, *args) -> tuple[list[str], dict]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *PROFILES, *args]
    return cmd, env


def _snakemake(workdir, *args, ok: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd, env = _command(workdir, *args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    out = proc.stdout + proc.stderr
    if ok:
        assert proc.returncode == 0, out[-6000:]
    else:
        assert proc.returncode != 0, out[-6000:]
    return proc


def _submitted(proc) -> dict[str, list[str]]:
    """Rule name -> the Slurm job ids Snakemake submitted for it."""
    jobs: dict[str, list[str]] = {}
    for jobid, rule in SUBMITTED.findall(proc.stdout + proc.stderr):
        jobs.setdefault(rule, []).append(jobid)
    return jobs


def _sacct(jobids: list[str]) -> pd.DataFrame:
    out = subprocess.run(["sacct", "-P", "-n", "-j", ",".join(jobids), "-o", "JobID,JobName,NTasks,State,ExitCode"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    rows = [line.split("|") for line in out.splitlines() if line]
    return pd.DataFrame(rows, columns=["jobid", "name", "ntasks", "state", "exit"])


def _config(tmp_path, **train) -> None:
    doc = copy.deepcopy(TINY)
    doc["experiments"]["tiny"]["train"].update(train)
    doc["ensembles"] = ENSEMBLE
    write_config(tmp_path / "config.yaml", doc)


def test_pipeline_through_slurm_then_rerun_from_infer(tmp_path):
    _config(tmp_path)
    first = _snakemake(tmp_path)
    run = tmp_path / "results" / "tiny"
    for name in OUTPUTS:
        assert (run / name).is_file(), name

    # Every stage but the local `experiment_config` was a Slurm job; training ran as one srun step of 2 tasks.
    jobs = _submitted(first)
    assert set(jobs) == {"sample", "train", "reference", "infer", "evaluate", "report"}, jobs
    acct = _sacct([j for ids in jobs.values() for j in ids])
    steps = acct[acct["jobid"].str.startswith(jobs["train"][0] + ".")]
    mpi_step = steps[steps["name"] == "python"]  # srun ... python -m diffnet train
    assert len(mpi_step) == 1 and mpi_step["ntasks"].iloc[0] == "2", (
        f"training was not one srun step of 2 tasks (a `set-resources` in the workflow profile "
        f"profiles/default replaces the one of profiles/slurm):\n{steps}")
    assert (acct["state"] == "COMPLETED").all(), acct

    history = assert_tiny_run_contract(run)
    assert (history["ranks"] == 2).all()  # the ranks found each other: srun --mpi=pmi2 + the MPICH wheel
    assert history["step"].tolist() == list(range(1, 7))

    before = {name: (run / name).stat().st_mtime_ns for name in OUTPUTS}
    second = _snakemake(tmp_path, "--forcerun", "infer")
    assert set(_submitted(second)) == {"infer", "evaluate", "report"}
    after = {name: (run / name).stat().st_mtime_ns for name in OUTPUTS}
    rerun = {name for name in OUTPUTS if after[name] != before[name]}
    assert rerun == {"prediction.nc", "metrics.nc", "metrics.csv", "report/fields.png", "report/error_vs_parameter.png",
                     "report/loss.png", "report/self_check.png", "report/timing.csv", "report/break_even.csv",
                     "report/cost_vs_error.png"}

    # The many-query job: each chunk and the gather are Slurm jobs of their own.
    ensemble = _snakemake(tmp_path, "ensemble")
    jobs = _submitted(ensemble)
    assert len(jobs.get("ensemble_chunk", [])) == ENSEMBLE["tiny"]["chunks"] and len(jobs["ensemble_merge"]) == 1, jobs
    assert (_sacct([j for ids in jobs.values() for j in ids])["state"] == "COMPLETED").all()
    for name in ENSEMBLE_OUTPUTS:
        assert (run / name).is_file(), name


def test_failing_job_is_reported_failed_not_hung(tmp_path):
    _config(tmp_path)
    _snakemake(tmp_path, "results/tiny/config.yaml")
    (tmp_path / "results" / "tiny" / "samples.nc").write_bytes(b"not a NetCDF file\n")
    start = time.monotonic()
    proc = _snakemake(tmp_path, "results/tiny/model.pt", ok=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert "Error in rule train" in out and "SLURM status is: 'FAILED'" in out, out[-4000:]
    assert time.monotonic() - start < 240
    jobs = _submitted(proc)
    assert set(jobs) == {"train"}, jobs
    log = (tmp_path / "results" / "tiny" / "logs" / "train.log").read_text()
    assert "samples.nc" in log, log  # it failed for the planted reason
    acct = _sacct(jobs["train"])
    assert acct.loc[acct["jobid"] == jobs["train"][0], "state"].item() == "FAILED", acct


def _wait_for_training(workdir, proc, timeout: float = 240) -> str:
    """The Slurm job id of the running train job, once its log shows training steps."""
    log = workdir / "results" / "tiny" / "logs" / "train.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "snakemake ended before training started:\n" + proc.communicate()[0][-4000:]
        if log.is_file() and re.search(r"^step \d+/", log.read_text(), re.M):
            queue = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True,
                                   check=True).stdout
            running = [line.split("|")[0] for line in queue.splitlines()
                       if line.split("|")[1].startswith("rule_train") and line.endswith("RUNNING")]
            if running:
                return running[0]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("training did not start within the time limit")


def test_usr1_checkpoints_and_rerun_resumes(tmp_path):
    steps = 2000  # far more than the time from the first step line to scancel, even on a loaded machine
    _config(tmp_path, steps=steps, checkpoint_every=150)
    run = tmp_path / "results" / "tiny"
    cmd, env = _command(tmp_path, "results/tiny/training.csv")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        jobid = _wait_for_training(tmp_path, proc)
        # What `--signal=USR1@120` does near the time limit: SIGUSR1 to the job steps (the srun'd ranks),
        # not to the batch shell.
        subprocess.run(["scancel", "--signal=USR1", jobid], check=True, timeout=60)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out[-4000:]
    assert "Error in rule train" in out
    log = (run / "logs" / "train.log").read_text()
    # Each rank reports the stop (srun --kill-on-bad-exit may cut the slower one short).
    stopped = set(re.findall(r"stopped at step (\d+) \(signal\)", log))
    assert len(stopped) == 1, log  # the ranks agreed on one step
    stop_step = int(stopped.pop())
    assert 0 < stop_step < steps
    assert re.search(r"tasks? [\d,-]+: Exited with exit code 75", log), log
    assert (run / "checkpoints" / f"step-{stop_step:08d}.pt").is_file(), sorted((run / "checkpoints").iterdir())
    assert not (run / "model.pt").exists() and not (run / "training.csv").exists()
    acct = _sacct([jobid])
    assert acct.loc[acct["jobid"] == jobid, "state"].item() == "FAILED", acct

    _snakemake(tmp_path, "results/tiny/training.csv")
    log = (run / "logs" / "train.log").read_text()
    assert f"resuming from results/tiny/checkpoints/step-{stop_step:08d}.pt at step {stop_step}" in log, log
    history = pd.read_csv(run / "training.csv")
    assert history["step"].tolist() == list(range(1, steps + 1))
    assert (history["ranks"] == 2).all()


def test_elliptic_experiment_through_slurm_with_the_same_profile(tmp_path):
    """The profile and rules are family-blind: a tiny Poisson experiment runs through Slurm unchanged."""
    from tests.test_elliptic import _doc

    write_config(tmp_path / "config.yaml", _doc())
    proc = _snakemake(tmp_path)
    run = tmp_path / "results" / "ell"
    for name in OUTPUTS:
        assert (run / name).is_file(), name
    jobs = _submitted(proc)
    assert "train" in jobs and "reference" in jobs
    history = pd.read_csv(run / "training.csv")
    assert list(history.columns) == ["step", "epoch", "loss", "loss_energy", "seconds", "ranks", "threads"]
    assert (history["ranks"] == 2).all()


def test_darcy_experiment_through_slurm_with_the_same_profile(tmp_path):
    """A tiny darcy experiment (issue 23) runs through the same profile and rules to its report."""
    from tests.test_darcy import DARCY

    write_config(tmp_path / "config.yaml", DARCY)
    proc = _snakemake(tmp_path)
    run = tmp_path / "results" / "d"
    for name in OUTPUTS:
        assert (run / name).is_file(), name
    jobs = _submitted(proc)
    assert {"train", "reference", "infer", "evaluate", "report"} <= set(jobs), jobs
    assert (_sacct([j for ids in jobs.values() for j in ids])["state"] == "COMPLETED").all()
    assert (pd.read_csv(run / "training.csv")["ranks"] == 2).all()


def test_scaling_study_through_slurm(tmp_path):
    """`snakemake --profile profiles/slurm scaling`: one Slurm job per rank count, the loss the same at each."""
    import xarray as xr

    write_scaling_config(tmp_path / "config.yaml")
    proc = _snakemake(tmp_path, "scaling")
    jobs = _submitted(proc)
    assert len(jobs["scaling_train"]) == 2, jobs
    acct = _sacct(jobs["scaling_train"])
    # The 2-rank run is one srun step of 2 tasks; the 1-rank run needs no launcher (it runs in the batch step).
    assert acct.loc[acct["name"] == "python", "ntasks"].tolist() == ["2"], acct
    assert set(acct.loc[acct["jobid"].isin(jobs["scaling_train"]), "state"]) == {"COMPLETED"}, acct
    ds = xr.open_dataset(tmp_path / "results" / "scaling" / "tiny" / "scaling.nc")
    assert ds["ranks"].values.tolist() == [1, 2]
    assert ds["loss_max_rel_deviation"].sel(ranks=2) < 1e-5
