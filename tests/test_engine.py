"""Engine features beyond plain data parallelism: sync batch norm, distributed L-BFGS, micro-batches,
and faults (signals, a dead rank, an exception on one rank)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from diffnet import checkpoint
from tests.conftest import TINY, mpiexec, run_cli, write_config

SCRIPTS = Path(__file__).parent / "mpi_scripts"


def _config(tmp_path, train=None, model=None, name="config.yaml"):
    exp = {**TINY["experiments"]["tiny"]}
    exp["train"] = {**exp["train"], **(train or {})}
    exp["model"] = {**exp["model"], **(model or {})}
    cfg = write_config(tmp_path / name, {"run": ["tiny"], "experiments": {"tiny": exp}})
    samples = tmp_path / "samples.nc"
    if not samples.exists():
        run_cli(["sample", "--config", str(cfg), "--out", str(samples)])
    return cfg, samples


def _train_args(cfg, samples, out):
    return ["train", "--config", str(cfg), "--samples", str(samples), "--out-dir", str(out), "--threads", "1"]


def _result(out):
    return pd.read_csv(out / "training.csv"), checkpoint.load(out / "model.pt")["model"]


def _assert_same_run(a, b, rtol=1e-5):
    np.testing.assert_allclose(b[0]["loss"], a[0]["loss"], rtol=rtol)
    for key, w in a[1].items():
        if w.is_floating_point():
            # Per tensor, in norm: Adam turns rounding-level differences in a ~0 gradient into a
            # sign-sized update of that one element, which an element-wise test would flag.
            diff = (b[1][key] - w).norm() / w.norm().clamp(min=1e-12)
            assert diff <= rtol, (key, float(diff))
        else:
            assert torch.equal(b[1][key], w), key


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2])
def test_sync_batchnorm_matches_one_process_on_the_whole_batch(ranks):
    proc = subprocess.run([mpiexec(), "-n", str(ranks), sys.executable, str(SCRIPTS / "sync_batchnorm.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.mpi
@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_batchnorm_model_trains_the_same_on_one_and_two_ranks(tmp_path):
    cfg, samples = _config(tmp_path, train={"steps": 10}, model={"norm": "batch"})
    run_cli(_train_args(cfg, samples, tmp_path / "p1"))
    run_cli(_train_args(cfg, samples, tmp_path / "p2"), ranks=2)
    _assert_same_run(_result(tmp_path / "p1"), _result(tmp_path / "p2"))


@pytest.mark.mpi
@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_distributed_lbfgs_takes_identical_steps_on_one_and_two_ranks(tmp_path):
    # float64: in float32 the strong-Wolfe line search amplifies summation-order rounding (1e-7) to
    # ~1e-4 within a few steps, which would hide whether the ranks took the same decisions.
    cfg, samples = _config(tmp_path, train={"steps": 4, "optimizer": "lbfgs", "lr": 1.0, "lbfgs_max_iter": 5,
                                        "batch_size": 12, "precision": "float64"})
    run_cli(_train_args(cfg, samples, tmp_path / "p1"))
    run_cli(_train_args(cfg, samples, tmp_path / "p2"), ranks=2)
    one, two = _result(tmp_path / "p1"), _result(tmp_path / "p2")
    assert one[0]["loss"].iloc[-1] < one[0]["loss"].iloc[0]
    _assert_same_run(one, two, rtol=1e-9)
    evals = [checkpoint.load(checkpoint.latest(tmp_path / p / "checkpoints"))["optimizer"]["state"][0]
             for p in ("p1", "p2")]
    assert evals[0]["func_evals"] == evals[1]["func_evals"] and evals[0]["n_iter"] == evals[1]["n_iter"]


@pytest.mark.mpi
@pytest.mark.slow  # 4 subprocess trainings; the fast tier keeps test_parallel's rank-count test
def test_micro_batches_and_ranks_give_the_same_gradients(tmp_path):
    runs = {}
    for ranks, micro in ((1, 0), (1, 1), (2, 2), (2, 1)):
        cfg, samples = _config(tmp_path, train={"steps": 5, "micro_batch": micro}, name=f"c{ranks}{micro}.yaml")
        out = tmp_path / f"p{ranks}m{micro}"
        run_cli(_train_args(cfg, samples, out), ranks=ranks if ranks > 1 else None)
        runs[(ranks, micro)] = _result(out)
    for key, run in runs.items():
        if key != (1, 0):
            _assert_same_run(runs[(1, 0)], run)


@contextlib.contextmanager
def _long_training(tmp_path, steps=100000, every=100000):
    """A 2-rank training far too long to finish, yielded once both ranks are in the training loop.

    Ready means the first step's progress line (printed by rank 0 after the first all-reduce, so both
    ranks are past their imports and set-up), not a guessed sleep. The whole process group is killed
    on the way out, so a failing assertion never leaves the ranks eating the cores of later tests.
    """
    cfg, samples = _config(tmp_path, train={"steps": steps, "checkpoint_every": every})
    out, log = tmp_path / "run", tmp_path / "train.log"
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "diffnet.cli", *_train_args(cfg, samples, out)]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while f"step 1/{steps}" not in log.read_text():
            assert proc.poll() is None, f"training ended before its first step:\n{log.read_text()[-2000:]}"
            assert time.time() < deadline, f"no first step within 120 s:\n{log.read_text()[-2000:]}"
            time.sleep(0.2)
        ranks = [p for p in psutil.Process(proc.pid).children(recursive=True)
                 if "diffnet.cli" in " ".join(p.cmdline()) and "mpiexec" not in p.cmdline()[0]]
        assert len(ranks) == 2, [p.cmdline() for p in ranks]
        yield proc, ranks, out, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.mpi
@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_sigterm_checkpoints_within_10_s_and_exits_with_the_resume_code(tmp_path):
    with _long_training(tmp_path) as (proc, ranks, out, log):
        t0 = time.time()
        for r in ranks:
            r.send_signal(signal.SIGTERM)  # what Slurm does to every task of a step
        proc.wait(timeout=60)
        latest = checkpoint.latest(out / "checkpoints")
        assert latest is not None, log.read_text()[-2000:]
        assert latest.stat().st_mtime - t0 < 10, f"checkpoint {latest.stat().st_mtime - t0:.1f} s after SIGTERM"
        assert proc.returncode == 75, log.read_text()[-2000:]
        assert checkpoint.step_of(latest) >= 1
        assert not (out / "model.pt").exists()


@pytest.mark.mpi
@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_kill_9_of_one_rank_ends_the_job_within_30_s(tmp_path):
    with _long_training(tmp_path) as (proc, ranks, _, _log):
        t0 = time.time()
        ranks[1].kill()
        proc.wait(timeout=120)  # longer than the bound, so a slow end fails the assertion, not the wait
        assert time.time() - t0 < 30, f"the job took {time.time() - t0:.1f} s to end"
        assert proc.returncode != 0
        assert all(not r.is_running() or r.status() == psutil.STATUS_ZOMBIE for r in ranks)


@pytest.mark.mpi
def test_exception_on_one_rank_aborts_all_ranks(tmp_path):
    cfg, samples = _config(tmp_path, train={"steps": 100000})
    proc = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, str(SCRIPTS / "fail_on_rank1.py"),
         *_train_args(cfg, samples, tmp_path / "run")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr
