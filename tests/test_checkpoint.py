"""Checkpoints: a stopped run resumes on the same trajectory, also with a different rank count."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from diffnet import checkpoint
from diffnet.config import load_experiment
from diffnet.sample import sample
from tests.conftest import TINY, run_cli, write_config


def _setup(tmp_path, steps=8):
    doc = {**TINY, "experiments": {"tiny": {**TINY["experiments"]["tiny"]}}}
    doc["experiments"]["tiny"]["train"] = {**doc["experiments"]["tiny"]["train"], "steps": steps,
                                           "checkpoint_every": 2}
    cfg = write_config(tmp_path / "config.yaml", doc)
    samples = tmp_path / "samples.nc"
    sample(load_experiment(cfg), samples)  # in this process: a CLI subprocess would import torch again
    return cfg, samples


def _train(cfg, samples, out, ranks=None, stop_after=None, check=True):
    args = ["train", "--config", str(cfg), "--samples", str(samples), "--out-dir", str(out), "--threads", "1"]
    if stop_after:
        args += ["--stop-after", str(stop_after)]
    return run_cli(args, ranks=ranks, check=check)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One uninterrupted 2-rank run (8 steps, a checkpoint every 2): the reference for every resume test."""
    tmp = tmp_path_factory.mktemp("straight")
    cfg, samples = _setup(tmp)
    _train(cfg, samples, tmp / "run", ranks=2)
    return cfg, samples, tmp / "run"


@pytest.mark.mpi
# Resuming on 1 rank (another rank count than the cut 2-rank run) stays in the fast tier; on 2 ranks in
# `make test-slow`.
@pytest.mark.parametrize("resume_ranks", [pytest.param(2, marks=pytest.mark.slow), 1])
def test_a_cut_run_resumes_onto_the_uninterrupted_trajectory(tmp_path, straight, resume_ranks):
    cfg, samples, reference = straight
    proc = _train(cfg, samples, tmp_path / "cut", ranks=2, stop_after=5, check=False)
    assert proc.returncode == 75, proc.stderr
    assert not (tmp_path / "cut" / "model.pt").exists()
    assert checkpoint.latest(tmp_path / "cut" / "checkpoints").name == "step-00000005.pt"
    proc = _train(cfg, samples, tmp_path / "cut", ranks=resume_ranks if resume_ranks > 1 else None)
    assert "resuming from" in proc.stderr
    a = checkpoint.load(reference / "model.pt")["model"]
    b = checkpoint.load(tmp_path / "cut" / "model.pt")["model"]
    for key in a:
        if resume_ranks == 2:  # same rank count: the same arithmetic, bit for bit
            assert torch.equal(b[key], a[key]), key
        else:
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    ha, hb = pd.read_csv(reference / "training.csv"), pd.read_csv(tmp_path / "cut" / "training.csv")
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-5)
    assert list(hb["ranks"]) == [2] * 5 + [resume_ranks] * 3


@pytest.mark.mpi
@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_checkpoints_of_another_config_are_set_aside_and_training_starts_over(tmp_path):
    cfg, samples = _setup(tmp_path)
    proc = _train(cfg, samples, tmp_path / "run", stop_after=3, check=False)
    assert proc.returncode == 75
    old = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    doc = {**TINY, "experiments": {"tiny": {**TINY["experiments"]["tiny"], "model": {"base_channels": 8,
                                                                                    "depth": 2}}}}
    other = write_config(tmp_path / "other.yaml", doc)
    proc = _train(other, samples, tmp_path / "run", ranks=2)  # rank 0 moves them while rank 1 waits
    assert "another configuration" in proc.stderr and "resuming" not in proc.stderr
    history = pd.read_csv(tmp_path / "run" / "training.csv")
    assert list(history["step"]) == list(range(1, TINY["experiments"]["tiny"]["train"]["steps"] + 1))
    aside = [p for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoints-")]
    assert len(aside) == 1 and sorted(p.name for p in aside[0].iterdir()) == old


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = run_cli(["infer", "--model", str(bad), "--c", "3.5", "--out", str(tmp_path / "p.nc")], check=False)
    assert proc.returncode == 2 and "not a readable diffnet checkpoint" in proc.stderr
    assert not (tmp_path / "p.nc").exists()


# --- Resume falls back past a corrupt checkpoint -----------------------------------------------------------


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((2,), float(step))}, "optimizer": {}, "step": step,
            "history": torch.zeros(step, 8, dtype=torch.float64)}


def _truncate(path: Path) -> int:
    """Cut ``path`` to half its size, as a copy or a write killed midway would; return the new size."""
    half = path.stat().st_size // 2
    os.truncate(path, half)
    return half


def test_load_latest_falls_back_past_a_truncated_newest_checkpoint_and_keeps_it(tmp_path, capsys):
    for step in (2, 4):
        checkpoint.save(_state(step), checkpoint.step_path(tmp_path, step))
    size = _truncate(checkpoint.step_path(tmp_path, 4))
    path, state = checkpoint.load_latest(tmp_path)
    assert path == checkpoint.step_path(tmp_path, 2) and state["step"] == 2
    aside = tmp_path / "step-00000004.pt.corrupt"
    assert aside.stat().st_size == size and not checkpoint.step_path(tmp_path, 4).exists()  # moved, not deleted
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step-00000004.pt" in err[0] and "moved aside" in err[0], err
    # The set-aside file is invisible to the rest of the checkpoint machinery, pruning included.
    assert checkpoint.latest(tmp_path) == path
    checkpoint.prune(tmp_path, keep=1)
    assert aside.exists()


def test_a_second_corrupt_checkpoint_of_the_same_step_gets_a_counter(tmp_path, capsys):
    (tmp_path / "step-00000004.pt.corrupt").write_bytes(b"an earlier one")
    checkpoint.step_path(tmp_path, 4).write_bytes(b"not a checkpoint")
    checkpoint.save(_state(2), checkpoint.step_path(tmp_path, 2))
    path, _ = checkpoint.load_latest(tmp_path)
    assert path.name == "step-00000002.pt"
    assert (tmp_path / "step-00000004.pt.corrupt").read_bytes() == b"an earlier one"
    assert (tmp_path / "step-00000004.pt.corrupt-1").read_bytes() == b"not a checkpoint"


def test_a_loadable_file_that_is_no_training_checkpoint_is_skipped(tmp_path, capsys):
    checkpoint.save(_state(2), checkpoint.step_path(tmp_path, 2))
    torch.save(torch.zeros(3), checkpoint.step_path(tmp_path, 4))
    path, _ = checkpoint.load_latest(tmp_path)
    assert path.name == "step-00000002.pt" and (tmp_path / "step-00000004.pt.corrupt").exists()
    assert "not a training checkpoint" in capsys.readouterr().err


def test_load_latest_fails_only_when_no_checkpoint_is_readable(tmp_path, capsys):
    for step in (2, 4):
        checkpoint.step_path(tmp_path, step).write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match=r"no checkpoint in .* is readable") as exc:
        checkpoint.load_latest(tmp_path)
    assert "step-00000002.pt.corrupt" in str(exc.value) and "step-00000004.pt.corrupt" in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000002.pt.corrupt", "step-00000004.pt.corrupt"]
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
    assert checkpoint.load_latest(tmp_path) == (None, None)  # set aside: the rerun starts from step 0


def test_load_latest_without_checkpoints_returns_none(tmp_path):
    assert checkpoint.load_latest(tmp_path / "missing") == (None, None)
    assert checkpoint.load_latest(tmp_path) == (None, None)


def test_load_latest_without_rename_only_skips(tmp_path, capsys):
    checkpoint.save(_state(2), checkpoint.step_path(tmp_path, 2))
    checkpoint.step_path(tmp_path, 4).write_bytes(b"garbage")
    path, _ = checkpoint.load_latest(tmp_path, rename=False)
    assert path.name == "step-00000002.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000002.pt", "step-00000004.pt"]
    assert "step-00000004.pt" in capsys.readouterr().err


@pytest.mark.mpi
@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_a_truncated_newest_checkpoint_of_a_cut_2_rank_run_is_set_aside_and_resume_uses_the_previous(
        tmp_path, straight):
    cfg, samples, reference = straight
    cut = tmp_path / "cut"
    proc = _train(cfg, samples, cut, ranks=2, stop_after=5, check=False)
    assert proc.returncode == 75, proc.stderr  # a resumable stop, as if the job had been cut
    ckpts = cut / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000004.pt", "step-00000005.pt"]
    size = _truncate(ckpts / "step-00000005.pt")

    proc = _train(cfg, samples, cut, ranks=2)
    assert f"resuming from {ckpts / 'step-00000004.pt'} at step 4" in proc.stderr, proc.stderr
    assert "step-00000005.pt" in proc.stderr and "moved aside" in proc.stderr
    assert (ckpts / "step-00000005.pt.corrupt").stat().st_size == size
    assert checkpoint.latest(ckpts).name == "step-00000008.pt"
    # Same rank count as the uninterrupted run: the same arithmetic, so the same trajectory, bit for bit.
    ha, hb = pd.read_csv(reference / "training.csv"), pd.read_csv(cut / "training.csv")
    assert list(hb["step"]) == list(ha["step"]) == list(range(1, 9))
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-5)
    a = checkpoint.load(reference / "model.pt")["model"]
    b = checkpoint.load(cut / "model.pt")["model"]
    for key in a:
        assert torch.equal(b[key], a[key]), key
