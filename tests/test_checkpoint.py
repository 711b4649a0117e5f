"""Checkpoints: a stopped run resumes on the same trajectory, also with a different rank count."""

import numpy as np
import pandas as pd
import pytest
import torch

from diffnet import checkpoint
from tests.conftest import TINY, run_cli, write_config


def _setup(tmp_path, steps=8):
    doc = {**TINY, "experiments": {"tiny": {**TINY["experiments"]["tiny"]}}}
    doc["experiments"]["tiny"]["train"] = {**doc["experiments"]["tiny"]["train"], "steps": steps,
                                           "checkpoint_every": 3}
    cfg = write_config(tmp_path / "config.yaml", doc)
    ics = tmp_path / "ics.nc"
    run_cli(["sample", "--config", str(cfg), "--out", str(ics)])
    return cfg, ics


def _train(cfg, ics, out, ranks=None, stop_after=None, check=True):
    args = ["train", "--config", str(cfg), "--ics", str(ics), "--out-dir", str(out), "--threads", "1"]
    if stop_after:
        args += ["--stop-after", str(stop_after)]
    return run_cli(args, ranks=ranks, check=check)


@pytest.mark.mpi
@pytest.mark.parametrize("resume_ranks", [2, 1])
def test_a_cut_run_resumes_onto_the_uninterrupted_trajectory(tmp_path, resume_ranks):
    cfg, ics = _setup(tmp_path)
    _train(cfg, ics, tmp_path / "straight", ranks=2)
    proc = _train(cfg, ics, tmp_path / "cut", ranks=2, stop_after=5, check=False)
    assert proc.returncode == 75, proc.stderr
    assert not (tmp_path / "cut" / "model.pt").exists()
    assert checkpoint.latest(tmp_path / "cut" / "checkpoints").name == "step-00000005.pt"
    proc = _train(cfg, ics, tmp_path / "cut", ranks=resume_ranks if resume_ranks > 1 else None)
    assert "resuming from" in proc.stderr
    a = checkpoint.load(tmp_path / "straight" / "model.pt")["model"]
    b = checkpoint.load(tmp_path / "cut" / "model.pt")["model"]
    for key in a:
        if resume_ranks == 2:  # same rank count: the same arithmetic, bit for bit
            assert torch.equal(b[key], a[key]), key
        else:
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    ha, hb = pd.read_csv(tmp_path / "straight" / "training.csv"), pd.read_csv(tmp_path / "cut" / "training.csv")
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-5)
    assert list(hb["ranks"]) == [2] * 5 + [resume_ranks] * 3


@pytest.mark.mpi
def test_checkpoints_of_another_config_are_set_aside_and_training_starts_over(tmp_path):
    cfg, ics = _setup(tmp_path)
    proc = _train(cfg, ics, tmp_path / "run", stop_after=3, check=False)
    assert proc.returncode == 75
    old = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    doc = {**TINY, "experiments": {"tiny": {**TINY["experiments"]["tiny"], "model": {"base_channels": 8,
                                                                                    "depth": 2}}}}
    other = write_config(tmp_path / "other.yaml", doc)
    proc = _train(other, ics, tmp_path / "run", ranks=2)  # rank 0 moves them while rank 1 waits
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
