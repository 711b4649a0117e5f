"""The ensemble stage: Sobol draws, chunk independence, streamed statistics, resume, spot checks, refusals."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from diffnet import ensemble, problems, selfcheck
from diffnet.config import ConfigError, validate
from tests.conftest import assert_figure, run_cli, write_config

TINY_POISSON = {
    "problem": {"name": "poisson"},
    "grid": {"nx": 16, "ny": 16},
    "sampling": {"n_train": 8, "n_test": 3, "seed": 1},
    "model": {"base_channels": 4, "depth": 2},
    "train": {"steps": 4, "batch_size": 4, "checkpoint_every": 4, "warmup_steps": 1},
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny trained Poisson model (few steps: the ensemble's mechanics, not its accuracy, are tested)."""
    run = tmp_path_factory.mktemp("ens")
    cfg = write_config(run / "all.yaml", {"experiments": {"p": TINY_POISSON}})
    run_cli(["config", "--config", str(cfg), "--experiment", "p", "--out", str(run / "config.yaml")])
    run_cli(["sample", "--config", str(run / "config.yaml"), "--out", str(run / "samples.nc")])
    run_cli(["train", "--config", str(run / "config.yaml"), "--samples", str(run / "samples.nc"), "--out-dir", str(run),
             "--threads", "1"])
    return run / "model.pt"


def _chunks(model, out, chunks, n=64, spot=4, extra=()):
    parts = []
    for k in range(chunks):
        part = out / f"chunk{k}.nc"
        run_cli(["ensemble", "--model", str(model), "--n", str(n), "--chunks", str(chunks), "--chunk", str(k),
                 "--spot-checks", str(spot), "--batch", "8", "--out", str(part), "--threads", "1", *extra])
        parts.append(str(part))
    return parts


def test_one_and_four_chunks_give_the_same_ensemble(model, tmp_path):
    one = _chunks(model, tmp_path / "one", 1)
    four = _chunks(model, tmp_path / "four", 4)
    run_cli(["ensemble-merge", *one, "--out", str(tmp_path / "one.nc"), "--figures", str(tmp_path / "fig")])
    run_cli(["ensemble-merge", *reversed(four), "--out", str(tmp_path / "four.nc")])
    a, b = xr.open_dataset(tmp_path / "one.nc"), xr.open_dataset(tmp_path / "four.nc")
    assert a.sizes["sample"] == b.sizes["sample"] == 64
    np.testing.assert_array_equal(a["qoi"].values, b["qoi"].values)
    np.testing.assert_array_equal(a["omega"].values, b["omega"].values)
    np.testing.assert_allclose(a["u_mean"].values, b["u_mean"].values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a["u_std"].values, b["u_std"].values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a["estimate_qoi_mean"].values, b["estimate_qoi_mean"].values, rtol=1e-12)
    for name in ("qoi.png", "fields.png"):
        assert_figure(tmp_path / "fig" / name)
    assert (tmp_path / "fig" / "spot_checks.csv").is_file()


@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_streamed_statistics_equal_the_statistics_of_all_fields(model, tmp_path):
    parts = _chunks(model, tmp_path, 2, n=32, spot=0, extra=("--keep-fields",))
    run_cli(["ensemble-merge", *parts, "--out", str(tmp_path / "ens.nc")])
    ds = xr.open_dataset(tmp_path / "ens.nc")
    u = ds["u"].values.astype(np.float64)
    assert u.shape == (32, 16, 16)
    # The chunks kept float32 copies of what they accumulated in float64.
    np.testing.assert_allclose(ds["u_mean"].values, u.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(ds["u_std"].values, u.std(axis=0, ddof=1), atol=1e-6)
    assert "spot" not in ds.dims and list(ds["estimator"].values) == ["network"]


def test_field_statistics_merge_is_exact():
    rng = np.random.default_rng(3)
    u = rng.normal(5.0, 2.0, size=(37, 4, 5))
    merged = ensemble.FieldStatistics(0, np.zeros((4, 5)), np.zeros((4, 5)))
    for part in np.split(u, [3, 4, 20]):
        merged = merged.merge(ensemble.FieldStatistics.of(part))
    assert merged.count == 37
    np.testing.assert_allclose(merged.mean, u.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(merged.std, u.std(axis=0, ddof=1), rtol=1e-12)


def test_draws_cover_the_trained_ranges_reproducibly():
    p = problems.ReactionDiffusion(n=16, omega_max=2.0, kappa_min=1.0, kappa_max=3.0)
    a = ensemble.draws(p, 256, seed=5)
    assert a["omega"].shape == (256, 4) and a["kappa"].shape == (256,)
    assert a["omega"].min() >= -2 and a["omega"].max() <= 2 and a["kappa"].min() >= 1 and a["kappa"].max() <= 3
    # Balanced: each component's draws fill every quarter of its range equally (a Sobol net property).
    quarters = np.floor((a["kappa"] - 1) / 0.5).astype(int)
    assert np.bincount(quarters, minlength=4).tolist() == [64, 64, 64, 64]
    np.testing.assert_array_equal(a["omega"], ensemble.draws(p, 256, seed=5)["omega"])
    assert not np.array_equal(a["omega"], ensemble.draws(p, 256, seed=6)["omega"])


def test_a_killed_chunk_resumes_where_it_stopped(model, tmp_path, monkeypatch):
    settings = ensemble.EnsembleSettings(n=64, chunks=1, spot_checks=2, batch=8)
    ensemble.run_chunk(model, settings, 0, tmp_path / "whole.nc", threads=1)
    monkeypatch.setattr(ensemble, "SAVE_SECONDS", 0.0)
    real, calls = selfcheck.predict, {"n": 0}

    def dies_after_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(selfcheck, "predict", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        ensemble.run_chunk(model, settings, 0, tmp_path / "cut.nc", threads=1)
    assert not (tmp_path / "cut.nc").exists() and (tmp_path / "cut.nc.partial.npz").is_file()
    monkeypatch.setattr(selfcheck, "predict", real)
    calls["n"] = 0
    resumed_from = []
    monkeypatch.setattr(selfcheck, "predict", lambda *a, **k: (resumed_from.append(1), real(*a, **k))[1])
    ensemble.run_chunk(model, settings, 0, tmp_path / "cut.nc", threads=1)
    assert len(resumed_from) == 8 - 3  # only the batches the killed run had not finished
    a, b = xr.open_dataset(tmp_path / "whole.nc"), xr.open_dataset(tmp_path / "cut.nc")
    np.testing.assert_array_equal(a["qoi"].values, b["qoi"].values)
    np.testing.assert_allclose(a["u_mean"].values, b["u_mean"].values, atol=1e-12)
    np.testing.assert_array_equal(a["u_spot"].values, b["u_spot"].values)
    assert not (tmp_path / "cut.nc.partial.npz").exists()


def test_chunks_record_their_precision_and_bf16_differs_only_by_rounding(model, tmp_path):
    settings = {name: ensemble.EnsembleSettings(n=16, chunks=2, spot_checks=0, batch=8, precision=name)
                for name in ("auto", "float32", "bfloat16")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU that emulates it warns; the numbers are what is tested
        for name, s in settings.items():
            for chunk in (0, 1):
                ensemble.run_chunk(model, s, chunk, tmp_path / f"{name}{chunk}.nc", threads=1)
    auto, fp32, bf16 = (xr.open_dataset(tmp_path / f"{name}0.nc") for name in ("auto", "float32", "bfloat16"))
    # auto follows the model's training precision, which is float32 here
    assert [ds.attrs["precision"] for ds in (auto, fp32, bf16)] == ["float32", "float32", "bfloat16"]
    assert auto.attrs["compile"] == "none" and auto.attrs["compile_seconds"] == 0.0
    np.testing.assert_array_equal(auto["qoi"].values, fp32["qoi"].values)
    apart = np.abs(bf16["u_mean"].values - fp32["u_mean"].values).max() / np.abs(fp32["u_mean"].values).max()
    assert 0 < apart < 2e-2  # bf16 rounding (8 bits of mantissa): visible, and small
    # a merge of chunks that ran in different arithmetic says so
    mixed = ensemble.merge([tmp_path / "float320.nc", tmp_path / "bfloat161.nc"], tmp_path / "mixed.nc")
    assert mixed.attrs["precision"] == "bfloat16,float32" and mixed.attrs["compile_seconds"] == 0.0


def test_a_failing_ensemble_compile_falls_back_to_eager_with_one_warning(model, tmp_path, monkeypatch):
    import torch

    def broken(module, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong inductor trace")

    settings = ensemble.EnsembleSettings(n=16, chunks=1, spot_checks=0, batch=8)
    ensemble.run_chunk(model, settings, 0, tmp_path / "eager.nc", threads=1)
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match=r"torch.compile failed \(RuntimeError: no C\+\+ compiler found\)"):
        ensemble.run_chunk(model, replace(settings, compile=True), 0, tmp_path / "c.nc", threads=1)
    eager, fallback = xr.open_dataset(tmp_path / "eager.nc"), xr.open_dataset(tmp_path / "c.nc")
    assert fallback.attrs["compile"] == "none" and fallback.attrs["ensemble_compile"] == 1
    np.testing.assert_array_equal(eager["qoi"].values, fallback["qoi"].values)


def test_compiling_is_a_fixed_cost_of_the_ensemble_break_even(tmp_path):
    metrics = tmp_path / "metrics.nc"
    xr.Dataset({"matched_seconds": ("metric", [2.0]), "matched_rung": ("metric", [1]),
                **{name: ("sample", [0.1]) for name in ("rel_l2", "l1", "linf")}},
               coords={"metric": ["qoi_error"]}).to_netcdf(metrics)
    history = tmp_path / "training.csv"
    pd.DataFrame({"step": [1], "seconds": [150.0], "ranks": [1], "threads": [1]}).to_csv(history)
    result = xr.Dataset(coords={"sample": np.arange(10)},
                        attrs={"inference_seconds": 5.0, "compile_seconds": 0.0})
    # t_net = 0.5 s, t_classical = 2 s: N* = fixed cost / 1.5
    assert ensemble._ensemble_break_even(metrics, [history], result)["break_even_queries_qoi"] == "100"
    result.attrs["compile_seconds"] = 30.0
    compiled = ensemble._ensemble_break_even(metrics, [history], result)
    assert compiled["break_even_queries_qoi"] == "120" and "30 s of compiling" in compiled["break_even"]


@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_spot_checks_compare_with_the_reference_solver(model, tmp_path):
    parts = _chunks(model, tmp_path, 1, n=16, spot=16)
    run_cli(["ensemble-merge", *parts, "--out", str(tmp_path / "ens.nc")])
    ds = xr.open_dataset(tmp_path / "ens.nc")
    p = problems.Poisson(n=16)
    params = {"omega": ds["omega"].values}
    truth = p.reference(params, methods=("fine",))
    np.testing.assert_allclose(ds["spot_qoi_reference"].values, truth.qoi["fine"], rtol=1e-9)
    np.testing.assert_allclose(ds["spot_qoi_error"].values,
                               np.abs(ds["qoi"].values - truth.qoi["fine"]) / truth.qoi["fine"], rtol=1e-9)
    ref = ds.sel(estimator="reference_spot_checks")
    assert float(ref["estimate_qoi_mean"]) == pytest.approx(truth.qoi["fine"].mean(), rel=1e-12)
    assert float(ref["estimate_qoi_mean_low"]) < float(ref["estimate_qoi_mean"]) < float(ref["estimate_qoi_mean_high"])


def test_intervals_cover_the_true_values_of_a_known_distribution():
    rng = np.random.default_rng(11)
    hits_mean = hits_std = 0
    for _ in range(200):
        x = rng.normal(1.0, 2.0, size=64)
        _, lo, hi = ensemble.mean_interval(x)
        hits_mean += lo <= 1.0 <= hi
        _, lo, hi = ensemble.std_interval(x, resamples=400, seed=int(rng.integers(1 << 30)))
        hits_std += lo <= 2.0 <= hi
    assert 180 <= hits_mean <= 200  # nominal 95%: 190
    assert 170 <= hits_std <= 200  # the percentile bootstrap undercovers a little at n = 64


@pytest.mark.parametrize("args, message", [
    (["--n", "1000"], "--n: 1000 is not a power of two"),
    (["--n", "64", "--chunks", "3"], "--chunks: 3 is not a power of two"),
    (["--n", "64", "--chunks", "4", "--chunk", "4"], "--chunk 4: this ensemble has chunks 0 to 3"),
    (["--n", "64", "--spot-checks", "65"], "--spot-checks: 65 spot checks for n = 64"),
])
def test_bad_ensemble_options_are_one_line_errors(model, tmp_path, args, message):
    proc = run_cli(["ensemble", "--model", str(model), "--out", str(tmp_path / "x.nc"), *args], check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.nc").exists()


@pytest.mark.parametrize("ens, message", [
    ({"n": 1000}, "config field 'ensembles.p.n': 1000 is not a power of two"),
    ({"n": 8, "chunks": 16}, "config field 'ensembles.p.chunks': 16 chunks for n = 8 draws"),
])
def test_bad_ensemble_config_names_the_field(ens, message):
    with pytest.raises(ConfigError, match=message):
        validate({"experiments": {"p": TINY_POISSON}, "ensembles": {"p": ens}})
    with pytest.raises(ConfigError, match="experiment 'q' does not exist"):
        validate({"experiments": {"p": TINY_POISSON}, "ensembles": {"q": {}}})
    filled = validate({"experiments": {"p": TINY_POISSON}, "ensembles": {"p": {}}})["ensembles"]["p"]
    assert filled == {"n": 1024, "seed": 0, "chunks": 1, "spot_checks": 16, "keep_fields": False, "batch": 16,
                      "precision": "auto", "compile": False}
