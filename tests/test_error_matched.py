"""The error-matched comparison: Q1 quantities, QoIs against the FEM, the reference ladder, matching, break-even."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from diffnet import breakeven, evaluate, problems
from diffnet.config import ConfigError, experiment_from_dict, validate
from diffnet.numerics import energy, kl, q1
from diffnet.numerics import q1_fem as fem
from tests.conftest import assert_figure, run_cli, write_config


def _experiment(problem: dict, grid: dict, reference: dict | None = None):
    doc = validate({"experiments": {"e": {"problem": problem, "grid": grid, "model": {"depth": 3},
                                          "reference": reference or {}}}})
    return experiment_from_dict("e", doc["experiments"]["e"])


# --- Q1 quantities ---------------------------------------------------------------------------------------
def test_q1_gauss_points_and_dirichlet_integral_match_the_training_energy():
    rng = np.random.default_rng(0)
    n = 9
    u = rng.normal(size=(3, n, n))
    nu = rng.uniform(0.5, 2.0, size=(3, 2 * (n - 1), 2 * (n - 1)))
    assert np.array_equal(q1.gauss_points(n), energy.gauss_points(n))
    trained = energy.dirichlet_energy(torch.tensor(u), torch.tensor(nu), 1 / (n - 1), 1 / (n - 1)).numpy()
    np.testing.assert_allclose(q1.dirichlet_integral(u, nu), 2 * trained, rtol=1e-12)


def test_q1_integral_gradient_and_interpolation_are_exact_for_bilinear_fields():
    x = np.linspace(0, 1, 7)
    u = (2 + 3 * x[None, :]) * (1 - 0.5 * x[:, None])  # (y, x): (2 + 3x)(1 - y/2)
    # int (2 + 3x)(1 - y/2) = (2 + 3/2)(1 - 1/4)
    assert q1.integral(u[None])[0] == pytest.approx(3.5 * 0.75, rel=1e-13)
    # |grad u|^2 = 9 (1 - y/2)^2 + (2 + 3x)^2 / 4: integral 9 * 7/12 + (4 + 6 + 3) / 4
    assert q1.dirichlet_integral(u[None])[0] == pytest.approx(9 * 7 / 12 + 13 / 4, rel=1e-12)
    fine = np.linspace(0, 1, 19)
    np.testing.assert_allclose(q1.interpolate(u, 19), (2 + 3 * fine[None, :]) * (1 - 0.5 * fine[:, None]),
                               atol=1e-13)
    assert q1.relative_h1_seminorm_error(u[None], u[None])[0] == 0.0


def test_poisson_qoi_energy_form_equals_the_flux_through_x1_at_the_fem_solution():
    omega = np.array([1.0, -2.0, 0.5, 1.5])
    problem = problems.Poisson(n=33)
    u, _ = fem.solve_poisson(kl.kl_log_nu_function(omega, 0.5), 33, tol=1e-12)
    nu = problem.nu_at_gauss_points(omega[None], 33)
    energy_form = problem.qoi(u[None], {"omega": omega[None]})[0]
    flux_out = q1.boundary_flux(u[None], nu, side=-1)[0]
    flux_in = -q1.boundary_flux(u[None], nu, side=0)[0]
    assert flux_out == pytest.approx(energy_form, rel=1e-9)
    assert flux_in == pytest.approx(energy_form, rel=1e-9)
    # Not an identity: away from the solution the two forms disagree.
    bumped = u + 0.01 * np.sin(np.pi * np.linspace(0, 1, 33))[None, :]
    assert abs(q1.boundary_flux(bumped[None], nu)[0] - problem.qoi(bumped[None], {"omega": omega[None]})[0]) > 1e-4


def test_poisson_qoi_converges_at_second_order():
    omega = np.array([[0.5, -1.0, 1.0, 0.3]])
    values = {}
    for n in (17, 33, 65, 129):
        u, _ = fem.solve_poisson(kl.kl_log_nu_function(omega[0], 0.5), n, tol=1e-12)
        values[n] = problems.Poisson(n=n).qoi(u[None], {"omega": omega})[0]
    errors = [abs(values[n] - values[129]) for n in (17, 33)]
    assert errors[0] / errors[1] > 3.0  # ~4 for second order (the reference is not exact)


def test_reaction_diffusion_qoi_is_the_integral_of_u():
    p = problems.ReactionDiffusion(n=65)
    s = np.linspace(0, 1, 65)
    u = np.sin(np.pi * s)[:, None] * np.sin(np.pi * s)[None, :]
    assert p.qoi(u[None], {})[0] == pytest.approx(4 / np.pi**2, rel=1e-3)


def test_burgers_qoi_of_the_exact_field_approaches_the_fine_grid_value():
    exp = _experiment({"name": "burgers"}, {"nx": 129, "nt": 17})
    p = problems.from_config(exp)
    c = np.array([3.3, 5.1])
    on_grid = p.qoi(p.exact_solution(c), {"c": c})
    fine = p.exact_qoi(c)
    np.testing.assert_allclose(on_grid, fine, rtol=0.02)
    assert np.all(fine > 0) and np.all(fine < 0.5 * 3 / 8)  # below the initial energy int u0^2/2 = 3/16


# --- the ladder -------------------------------------------------------------------------------------------
def test_elliptic_ladder_converges_towards_the_truth_at_second_order():
    exp = _experiment({"name": "poisson"}, {"nx": 33, "ny": 33})
    p = problems.from_config(exp)
    params = {"omega": np.array([[1.0, -1.0, 0.5, 0.0], [-0.5, 2.0, 0.0, 1.0]])}
    ladder = p.ladder(params, (0.125, 0.25, 0.5, 1.0))
    assert ladder.nodes == (5, 9, 17, 33) and ladder.fields.shape == (4, 2, 33, 33)
    truth = p.reference(params, methods=("fine",))
    err = [evaluate.error_norms(ladder.fields[r], truth.fields["fine"], 1.0)["rel_l2"] for r in range(4)]
    ratios = [np.median(err[r] / err[r + 1]) for r in range(1, 3)]
    assert all(r > 3.0 for r in ratios), ratios  # the interpolated Q1 solution converges like h^2
    assert np.all(ladder.seconds > 0)
    qoi_err = np.abs(ladder.qoi - truth.qoi["fine"]) / truth.qoi["fine"]
    assert np.all(np.diff(np.median(qoi_err, axis=1)) < 0)


def test_burgers_ladder_finite_volumes_converge_towards_the_exact_solution():
    exp = _experiment({"name": "burgers"}, {"nx": 33, "nt": 17})
    p = problems.from_config(exp)
    c = {"c": np.array([3.5, 5.5])}
    ladder = p.ladder(c, (0.5, 2.0, 4.0, 8.0))
    assert ladder.solver[:4] == ("godunov_fv",) * 4 and ladder.nodes[:4] == (16, 64, 128, 256)
    # The marched scheme stops at 4x (MARCH_MAX_FACTOR): finite volumes cover the finer rungs.
    assert ladder.solver[4:] == ("march_tvd2_cn",) * 3 and ladder.nodes[4:] == (17, 65, 129)
    exact = p.exact_solution(c["c"])
    l1 = [evaluate.error_norms(ladder.fields[r], exact, 1 / 32 * 1 / 16)["l1"].mean() for r in range(7)]
    assert l1[0] > l1[1] > l1[2] > l1[3] and l1[4] > l1[5] > l1[6]
    qoi_err = np.abs(ladder.qoi - p.exact_qoi(c["c"])).mean(axis=1)
    assert qoi_err[2] < qoi_err[0]


def test_ladder_factors_must_stay_below_the_truth():
    with pytest.raises(ConfigError, match=r"reference\.ladder_factors': factor 2 is not coarser than the truth"):
        _experiment({"name": "poisson"}, {"nx": 33, "ny": 33}, {"ladder_factors": [0.5, 2]})
    _experiment({"name": "poisson"}, {"nx": 33, "ny": 33}, {"ladder_factors": [0.5, 2], "fine_refine": 4})


# --- metrics, matching, break-even -----------------------------------------------------------------------
def test_error_norms_against_hand_computed_values():
    ref = np.array([[[3.0, 4.0], [0.0, 0.0]]])
    u = np.array([[[3.0, 4.0], [1.0, -2.0]]])
    norms = evaluate.error_norms(u, ref, cell=0.25)
    assert norms["rel_l2"][0] == pytest.approx(math.sqrt(5) / 5)
    assert norms["l1"][0] == pytest.approx(3 * 0.25)
    assert norms["linf"][0] == pytest.approx(2.0)


def test_match_picks_the_cheapest_rung_at_least_as_accurate_as_the_network():
    errors = np.array([[0.30, 0.32], [0.09, 0.11], [0.05, 0.05], [0.01, 0.01]])
    seconds = np.array([[1.0, 1.0], [2.0, 2.0], [0.5, 0.5], [8.0, 8.0]])  # rung 2 is cheaper than rung 1
    got = evaluate.match(np.array([0.1, 0.1, 0.2]), 0.25, errors, seconds)
    assert got["rung"] == 2 and got["seconds"] == 0.5 and got["ratio"] == pytest.approx(2.0)
    none = evaluate.match(np.array([0.001]), 0.25, errors, seconds)
    assert none["rung"] == -1 and math.isnan(none["ratio"])


def test_break_even_counts_the_whole_training_chain(tmp_path):
    own = tmp_path / "own.csv"
    parent = tmp_path / "parent.csv"
    pd.DataFrame({"step": [1, 2], "seconds": [5.0, 100.0], "ranks": [2, 2], "threads": [3, 3]}).to_csv(own)
    pd.DataFrame({"step": [1], "seconds": [50.0], "ranks": [4]}).to_csv(parent)  # no threads column: 1 each
    cost = breakeven.training_cost([own, parent])
    assert cost.wall_seconds == 150.0 and cost.core_seconds == 100 * 6 + 50 * 4 and cost.runs == 2
    assert breakeven.break_even(150.0, 2.0, 0.5) == pytest.approx(100.0)
    assert math.isinf(breakeven.break_even(150.0, 0.5, 2.0))
    assert breakeven.describe(breakeven.break_even(150.0, 0.5, 2.0)) == "never"
    assert breakeven.describe(99.2) == "100"


def test_break_even_table_from_a_metrics_file():
    metrics = xr.Dataset(
        {"matched_rung": ("metric", [1, -1]), "matched_seconds": ("metric", [2.0, np.nan]),
         "matched_error": ("metric", [0.01, np.nan]), "network_error": ("metric", [0.02, 0.001]),
         "matched_ratio": ("metric", [4.0, np.nan]), "network_seconds": ((), 0.5)},
        coords={"metric": ["rel_l2", "qoi_error"], "rung_solver": ("rung", ["a", "b"]), "rung_nodes": ("rung", [5, 9])})
    table = breakeven.table(metrics, breakeven.TrainingCost(300.0, 600.0, 1), network_threads=2).set_index("metric")
    assert table.loc["rel_l2", "classical_nodes"] == 9 and table.loc["rel_l2", "break_even_queries"] == "200"
    assert table.loc["rel_l2", "break_even_queries_core_hours"] == "600"  # 600 / (2 - 0.5 * 2)
    assert table.loc["qoi_error", "break_even_queries"] == "no ladder rung is as accurate"


# --- through the CLI: reference -> evaluate -> report, for each family ------------------------------------
FAMILY_CONFIGS = {
    "burgers": {"problem": {"name": "burgers"}, "grid": {"nx": 16, "nt": 16}},
    "poisson": {"problem": {"name": "poisson"}, "grid": {"nx": 16, "ny": 16}},
    "reaction_diffusion": {"problem": {"name": "reaction_diffusion"}, "grid": {"nx": 16, "ny": 16}},
}


# One family in the fast tier (the one with every error measure); the others with the slow end-to-end tests.
@pytest.mark.parametrize("family", [pytest.param("burgers", marks=pytest.mark.slow), "poisson",
                                    pytest.param("reaction_diffusion", marks=pytest.mark.slow)])
def test_every_family_reports_the_error_matched_table_and_break_even(tmp_path, family):
    exp = {**FAMILY_CONFIGS[family], "sampling": {"n_train": 8, "n_test": 3, "seed": 1},
           "model": {"base_channels": 4, "depth": 2},
           "train": {"steps": 4, "batch_size": 4, "checkpoint_every": 4, "warmup_steps": 1}}
    cfg = write_config(tmp_path / "all.yaml", {"experiments": {"t": exp}})
    run = tmp_path / "t"
    run_cli(["config", "--config", str(cfg), "--experiment", "t", "--out", str(run / "config.yaml")])
    c = str(run / "config.yaml")
    run_cli(["sample", "--config", c, "--out", str(run / "samples.nc")])
    run_cli(["train", "--config", c, "--samples", str(run / "samples.nc"), "--out-dir", str(run), "--threads", "1"])
    run_cli(["infer", "--model", str(run / "model.pt"), "--samples", str(run / "samples.nc"), "--out",
             str(run / "prediction.nc")])
    run_cli(["reference", "--config", c, "--samples", str(run / "samples.nc"), "--out", str(run / "reference.nc")])
    run_cli(["evaluate", "--config", c, "--prediction", str(run / "prediction.nc"), "--reference",
             str(run / "reference.nc"), "--out-nc", str(run / "metrics.nc"), "--out-csv", str(run / "metrics.csv")])
    proc = run_cli(["report", "--prediction", str(run / "prediction.nc"), "--reference", str(run / "reference.nc"),
                    "--metrics", str(run / "metrics.nc"), "--training", str(run / "training.csv"),
                    "--chain", str(run / "training.csv"), "--out-dir", str(run / "report")])
    metrics = xr.open_dataset(run / "metrics.nc")
    expected = {"rel_l2", "l1", "linf", "qoi_error"} | ({"rel_l2_deviation", "rel_h1"} if family == "poisson" else
                                                        {"rel_h1"} if family == "reaction_diffusion" else set())
    assert set(metrics["metric"].values) == expected
    assert metrics["ladder_rel_l2"].dims == ("rung", "sample") and metrics.sizes["rung"] >= 4
    table = pd.read_csv(run / "report" / "break_even.csv").set_index("metric")
    assert set(table.index) == expected
    # The chain is counted: the same training twice costs twice.
    own = pd.read_csv(run / "training.csv")["seconds"].iloc[-1]
    assert table["training_seconds"].iloc[0] == pytest.approx(2 * own, rel=1e-5)
    for metric, row in table.iterrows():
        rung = int(metrics["matched_rung"].sel(metric=metric))
        if rung >= 0:
            assert row["classical_error"] <= row["diffnet_error"]
            cheaper = np.median(metrics[f"ladder_{metric}"].values, axis=1) <= row["diffnet_error"]
            assert row["classical_seconds"] == pytest.approx(
                metrics["seconds_ladder"].values[cheaper].mean(axis=1).min(), rel=1e-5)
    assert "rel_l2: DiffNet" in proc.stdout
    assert_figure(run / "report" / "cost_vs_error.png")
    timing = pd.read_csv(run / "report" / "timing.csv")
    assert timing["quantity"].str.startswith("break-even queries (rel_l2)").any()
