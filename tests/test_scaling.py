"""The scaling study: its arithmetic, its config checks, and `snakemake scaling` on a tiny experiment."""

import copy

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from diffnet.config import ConfigError, scaling_experiment, validate
from diffnet.scaling import ScalingError, efficiency, step_seconds, summarise
from tests.conftest import TINY, assert_figure, run_cli, write_config, write_scaling_config
from tests.test_pipeline import _cf_errors, _snakemake


def test_step_time_is_the_median_step_with_the_first_left_out():
    # cumulative seconds: a slow first step (5 s), then 1, 1, 3, 1
    assert step_seconds(np.array([5.0, 6.0, 7.0, 10.0, 11.0])) == 1.0
    with pytest.raises(ScalingError):
        step_seconds(np.array([5.0]))


def test_strong_and_weak_efficiency():
    speedup, eff = efficiency(np.array([1, 2, 4]), np.array([8.0, 4.0, 4.0]), "strong")
    np.testing.assert_allclose(speedup, [1, 2, 2])
    np.testing.assert_allclose(eff, [1, 1, 0.5])
    speedup, eff = efficiency(np.array([2, 4]), np.array([3.0, 4.0]), "weak")
    np.testing.assert_allclose(eff, [1, 0.75])
    np.testing.assert_allclose(speedup, [1, 1.5])  # twice the samples in 4/3 the time


def _fake_run(path, ranks, seconds, losses, batch=6):
    doc = validate(copy.deepcopy(TINY))
    exp = doc["experiments"]["tiny"]
    exp["train"]["batch_size"] = batch
    path.mkdir(parents=True)
    write_config(path / "config.yaml", {"experiments": {"tiny": exp}, "run": ["tiny"]})
    pd.DataFrame({"step": np.arange(1, len(losses) + 1), "loss": losses, "seconds": np.cumsum(seconds),
                  "ranks": ranks}).to_csv(path / "training.csv", index=False)
    return path


def test_summary_measures_throughput_and_loss_integrity(tmp_path):
    one = _fake_run(tmp_path / "r1", 1, [9, 2, 2, 2], [1.0, 0.5, 0.25, 0.125])
    two = _fake_run(tmp_path / "r2", 2, [9, 1.25, 1.25, 1.25], [1.0, 0.5, 0.25 * (1 + 3e-7), 0.125])
    ds = summarise([two, one], "strong")  # any order: sorted by ranks
    assert ds["ranks"].values.tolist() == [1, 2]
    np.testing.assert_allclose(ds["step_seconds"], [2.0, 1.25])
    np.testing.assert_allclose(ds["samples_per_second"], [3.0, 4.8])
    np.testing.assert_allclose(ds["efficiency"], [1.0, 0.8])
    np.testing.assert_allclose(ds["loss_max_rel_deviation"], [0.0, 3e-7], atol=1e-12)
    assert np.isnan(summarise([one, two], "weak")["loss_max_rel_deviation"]).all()


def test_summary_refuses_runs_that_do_not_compare(tmp_path):
    one = _fake_run(tmp_path / "r1", 1, [1, 1, 1], [1.0, 0.5, 0.2])
    short = _fake_run(tmp_path / "r2", 2, [1, 1], [1.0, 0.5])
    with pytest.raises(ScalingError, match="different numbers of steps"):
        summarise([one, short], "strong")
    with pytest.raises(ScalingError, match=r"config\.yaml: missing"):
        summarise([one, tmp_path / "nowhere"], "strong")
    proc = run_cli(["scaling", str(one), str(tmp_path / "nowhere"), "--mode", "strong", "--out-nc",
                    str(tmp_path / "s.nc"), "--out-csv", str(tmp_path / "s.csv"), "--out-png", str(tmp_path / "s.png")],
                   check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "missing" in proc.stderr
    assert not (tmp_path / "s.nc").exists()


def test_scaling_config_is_checked_and_applied():
    doc = copy.deepcopy(TINY)
    doc["scaling"] = {"experiment": "nope"}
    with pytest.raises(ConfigError, match=r"'scaling.experiment'.*'nope' does not exist"):
        validate(doc)
    doc["scaling"] = {"experiment": "tiny", "ranks": [1, 4], "mode": "weak"}  # 4 x batch 6 > n_train 12
    with pytest.raises(ConfigError, match=r"'scaling.ranks'.*n_train"):
        validate(doc)
    doc["scaling"] = {"experiment": "tiny", "ranks": [0]}
    with pytest.raises(ConfigError, match=r"'scaling.ranks.0'"):
        validate(doc)
    doc["scaling"] = {"experiment": "tiny"}
    filled = validate(doc)
    assert filled["scaling"] == {"experiment": "tiny", "ranks": [1, 2], "steps": 20, "mode": "strong"}
    exp = filled["experiments"]["tiny"]
    strong = scaling_experiment(exp, ranks=2, steps=5, mode="strong")
    weak = scaling_experiment(exp, ranks=2, steps=5, mode="weak")
    assert strong["train"]["steps"] == weak["train"]["steps"] == 5
    assert strong["train"]["batch_size"] == exp["train"]["batch_size"]
    assert weak["train"]["batch_size"] == 2 * exp["train"]["batch_size"]
    assert exp["train"]["steps"] == 6  # the experiment itself is untouched


@pytest.mark.slow
@pytest.mark.mpi
def test_snakemake_scaling_target_at_1_and_2_ranks(tmp_path):
    write_scaling_config(tmp_path / "config.yaml")
    _snakemake(tmp_path, "scaling")
    out = tmp_path / "results" / "scaling" / "tiny"
    ds = xr.open_dataset(out / "scaling.nc")
    assert ds["ranks"].values.tolist() == [1, 2]
    assert ds.attrs["mode"] == "strong" and "cores" in ds.attrs["machine"]
    # Loss integrity across rank counts, through the whole workflow: same loss at every step.
    assert ds["loss_max_rel_deviation"].sel(ranks=2) < 1e-5
    # The study's figures against their definitions, from the runs' own training.csv (steps after the first).
    t = {r: pd.read_csv(out / f"ranks{r}" / "training.csv")["seconds"].diff().iloc[1:].median() for r in (1, 2)}
    assert ds["step_seconds"].values == pytest.approx([t[1], t[2]], rel=1e-6)
    assert ds["efficiency"].values == pytest.approx([1.0, t[1] / (2 * t[2])], rel=1e-6)
    batch = TINY["experiments"]["tiny"]["train"]["batch_size"]  # strong scaling: the same global batch
    assert ds["samples_per_second"].values == pytest.approx([batch / t[1], batch / t[2]], rel=1e-6)
    table = pd.read_csv(out / "scaling.csv")
    assert table["ranks"].tolist() == [1, 2] and {"samples_per_second", "efficiency"} <= set(table.columns)
    assert_figure(out / "scaling.png")
    assert _cf_errors(out / "scaling.nc") == []
    for ranks in (1, 2):
        assert pd.read_csv(out / f"ranks{ranks}" / "training.csv")["ranks"].eq(ranks).all()
