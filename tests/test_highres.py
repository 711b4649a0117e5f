"""Smoke test of the high-resolution path: a few training steps of `burgers1024` on this machine."""

import numpy as np
import pandas as pd
import pytest
import yaml

from diffnet import io
from tests.conftest import REPO, run_cli, write_config


@pytest.mark.slow
@pytest.mark.mpi
def test_burgers1024_trains_a_few_steps_with_micro_batches_and_checkpointing(tmp_path):
    doc = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    exp = doc["experiments"]["burgers1024"]
    assert exp["grid"] == {"nx": 1024, "nt": 1024} and exp["model"]["activation_checkpointing"]
    exp["sampling"].update(n_train=4, n_test=1)
    exp["train"].update(steps=2, batch_size=4, checkpoint_every=1)  # 2 ranks x 2 micro-batches of 1
    cfg = write_config(tmp_path / "config.yaml", {"run": ["burgers1024"], "experiments": {"burgers1024": exp}})
    run_cli(["sample", "--config", str(cfg), "--out", str(tmp_path / "samples.nc")])
    run_cli(["train", "--config", str(cfg), "--samples", str(tmp_path / "samples.nc"), "--out-dir", str(tmp_path),
             "--threads", "1"], ranks=2, timeout=600)
    history = pd.read_csv(tmp_path / "training.csv")
    assert list(history["step"]) == [1, 2] and np.isfinite(history["loss"]).all()
    run_cli(["infer", "--model", str(tmp_path / "model.pt"), "--samples", str(tmp_path / "samples.nc"),
             "--out", str(tmp_path / "prediction.nc")])
    u = io.read_prediction(tmp_path / "prediction.nc")["u"]
    assert u.shape == (1, 1024, 1024) and np.isfinite(u.values).all()
