"""The elliptic families on the problem-agnostic contract: config, files, loss, CLI, all stages."""

import copy

import numpy as np
import pytest
import torch
import xarray as xr

from diffnet import io, problems
from diffnet.config import ConfigError, experiment_from_dict, validate
from diffnet.numerics import energy, kl
from diffnet.numerics import q1_fem as fem
from tests.conftest import assert_figure, run_cli, write_config

ELLIPTIC = {
    "run": ["ell"],
    "experiments": {
        "ell": {
            "problem": {"name": "poisson", "modes": 3},
            "grid": {"nx": 17, "ny": 17},
            "sampling": {"n_train": 8, "n_test": 3, "seed": 5},
            "model": {"base_channels": 4, "depth": 2},
            "train": {"steps": 4, "batch_size": 4, "checkpoint_every": 2, "warmup_steps": 1, "lr": 0.003},
        }
    },
}


def _doc(**problem):
    doc = copy.deepcopy(ELLIPTIC)
    doc["experiments"]["ell"]["problem"].update(problem)
    return doc


def _problem(**fields):
    doc = validate(_doc(**fields))
    return problems.from_config(experiment_from_dict("ell", doc["experiments"]["ell"]))


# --- configuration ------------------------------------------------------------------------------------
def test_each_family_takes_only_its_own_fields():
    doc = validate(_doc())
    p = doc["experiments"]["ell"]["problem"]
    assert (p["modes"], p["eta"], p["omega_max"], p["sampler"]) == (3, 0.5, 3.0, "sobol")
    assert doc["experiments"]["ell"]["reference"] == {"fine_refine": 2, "tolerance": 1e-10,
                                                    "ladder_factors": [0.0625, 0.125, 0.25, 0.5, 1]}
    burgers = {"run": ["b"], "experiments": {"b": {"problem": {"name": "burgers", "omega_max": 2.0}}}}
    with pytest.raises(ConfigError, match=r"experiments\.b\.problem.*omega_max"):
        validate(burgers)
    with pytest.raises(ConfigError, match=r"experiments\.ell\.problem.*c_min"):
        validate(_doc(c_min=3.0))


@pytest.mark.parametrize("edit, field", [
    (lambda e: e["loss"].update(scheme="tvd2"), "experiments.ell.loss.scheme"),
    (lambda e: e["grid"].update(ny=33), "experiments.ell.grid.ny"),
    (lambda e: e["grid"].update(nt=17), "experiments.ell.grid.nt"),
    (lambda e: e["problem"].update(name="reaction_diffusion", kappa_min=5.0, kappa_max=2.0),
     "experiments.ell.problem.kappa_min"),
    (lambda e: e["problem"].update(modes=0), "experiments.ell.problem.modes"),
    (lambda e: e["reference"].update(fem_order=2), "experiments.ell.reference"),
])
def test_bad_elliptic_configs_are_one_line_errors_naming_the_field(edit, field):
    doc = copy.deepcopy(ELLIPTIC)
    doc["experiments"]["ell"].setdefault("loss", {})
    doc["experiments"]["ell"].setdefault("reference", {})
    edit(doc["experiments"]["ell"])
    with pytest.raises(ConfigError) as info:
        validate(doc)
    message = str(info.value)
    assert field in message and "\n" not in message


def test_burgers_grid_rejects_ny():
    burgers = {"run": ["b"], "experiments": {"b": {"problem": {"name": "burgers"}, "grid": {"nx": 16, "ny": 16}}}}
    with pytest.raises(ConfigError, match=r"experiments\.b\.grid\.ny"):
        validate(burgers)


# --- the family's numerics through the Problem --------------------------------------------------------
@pytest.mark.parametrize("name", ["poisson", "reaction_diffusion"])
def test_the_loss_is_stationary_at_the_fem_solution(name):
    """The Problem's energy (nu at its Gauss points) and the reference FEM are one discrete problem."""
    problem = _problem(name=name)
    params = problem.sample_parameters(2, np.random.default_rng(1))
    cond = torch.tensor(problem.condition({**params, **problem.input_fields(params)}))
    u_fem = torch.tensor(problem.reference(params, ("fem",)).fields["fem"], requires_grad=True)
    problem.loss_terms(u_fem, u_fem, cond)["total"].sum().backward()
    free = problem.assemble(torch.ones(2, 1, problem.n, problem.n, dtype=torch.float64), cond) != \
        problem.assemble(torch.zeros(2, 1, problem.n, problem.n, dtype=torch.float64), cond)
    at_fem = u_fem.grad[free].abs().max()
    start = problem.assemble(torch.zeros(2, 1, problem.n, problem.n, dtype=torch.float64), cond).requires_grad_()
    problem.loss_terms(start, start, cond)["total"].sum().backward()
    assert at_fem < 1e-8 * start.grad[free].abs().max()


def test_hard_constraints_and_network_input():
    poisson = _problem()
    params = poisson.sample_parameters(3, np.random.default_rng(0))
    record = {**params, **poisson.input_fields(params)}
    cond = torch.tensor(poisson.condition(record))
    raw = torch.randn(3, 1, 17, 17, dtype=torch.float64)
    u = poisson.assemble(raw, cond)
    assert torch.all(u[:, :, 0] == 1) and torch.all(u[:, :, -1] == 0)
    x = poisson.network_input(cond)
    assert x.shape == (3, poisson.input_channels, 17, 17)
    np.testing.assert_allclose(x[:, 0].numpy(), np.log(record["nu"]), atol=1e-12)
    rd = _problem(name="reaction_diffusion")
    p2 = rd.sample_parameters(3, np.random.default_rng(0))
    u = rd.assemble(raw, torch.tensor(rd.condition({**p2, **rd.input_fields(p2)})))
    assert torch.all(u[:, 0] == 0) and torch.all(u[:, -1] == 0) and torch.all(u[:, :, 0] == 0)
    assert torch.all(u[:, :, -1] == 0) and torch.all(u[:, 1:-1, 1:-1] == raw[:, 0, 1:-1, 1:-1])
    assert np.all((p2["kappa"] >= 1.0) & (p2["kappa"] <= 8.0))


def test_reaction_diffusion_with_unit_diffusivity_is_judged_against_the_exact_solution():
    rd = _problem(name="reaction_diffusion", omega_max=0.0)
    assert rd.solvers.truth == "exact"
    params = rd.sample_parameters(2, np.random.default_rng(0))
    ref = rd.reference(params)
    err = np.abs(ref.fields["fem"] - ref.fields["exact"]).max()
    assert 1e-4 < err < 1e-2  # O(h^2) at 17 nodes: the FEM converges to the exact solution, but is not it


def test_parameters_are_validated_against_the_family():
    poisson = _problem()
    good = {"omega": np.array([[0.5, -1.0, 2.0]])}
    assert problems.check_values(poisson, good) == []
    with pytest.raises(problems.ParameterError, match=r"omega.*3 values"):
        problems.check_values(poisson, {"omega": np.array([[0.5, -1.0]])})
    with pytest.raises(problems.ParameterError, match="NaN"):
        problems.check_values(poisson, {"omega": np.array([[np.nan, 0.0, 0.0]])})
    (warning,) = problems.check_values(poisson, {"omega": np.array([[4.0, 0.0, 0.0]])})
    assert "[-3, 3]" in warning


# --- files and stages ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def elliptic_run(tmp_path_factory):
    """sample -> train (2 ranks) -> infer -> reference -> evaluate -> report through the CLI."""
    d = tmp_path_factory.mktemp("elliptic")
    cfg = write_config(d / "config.yaml", _doc(name="reaction_diffusion"))
    run_cli(["sample", "--config", str(cfg), "--out", str(d / "samples.nc")])
    run_cli(["train", "--config", str(cfg), "--samples", str(d / "samples.nc"), "--out-dir", str(d)], ranks=2)
    run_cli(["infer", "--model", str(d / "model.pt"), "--samples", str(d / "samples.nc"), "--out", str(d / "pred.nc")])
    run_cli(["reference", "--config", str(cfg), "--samples", str(d / "samples.nc"), "--out", str(d / "ref.nc")])
    run_cli(["evaluate", "--config", str(cfg), "--prediction", str(d / "pred.nc"), "--reference",
             str(d / "ref.nc"), "--out-nc", str(d / "metrics.nc"), "--out-csv", str(d / "metrics.csv")])
    run_cli(["report", "--prediction", str(d / "pred.nc"), "--reference", str(d / "ref.nc"), "--metrics",
             str(d / "metrics.nc"), "--training", str(d / "training.csv"), "--out-dir", str(d / "report")])
    return d


@pytest.mark.mpi
def test_elliptic_files_hold_the_contract(elliptic_run):
    d = elliptic_run
    samples = io.read_samples(d / "samples.nc")
    assert samples["omega"].dims == ("sample", "mode") and samples["nu"].dims == ("sample", "y", "x")
    assert samples["kappa"].dims == ("sample",) and samples["f"].dims == ("sample", "y", "x")
    pred = io.read_prediction(d / "pred.nc")
    assert pred["u"].dims == ("sample", "y", "x") and pred.sizes["sample"] == 3
    test = io.select_split(samples, "test")
    np.testing.assert_array_equal(pred["omega"].values, test["omega"].values)  # checkable without the package
    np.testing.assert_array_equal(pred["nu"].values, test["nu"].values)
    ref = io.read_reference(d / "ref.nc")
    assert set(ref.attrs["methods"].split()) == {"fem", "fine"} and ref.attrs["truth"] == "fine"
    for m in ("fem", "fine"):
        assert ref[f"u_{m}"].dims == ("sample", "y", "x") and (ref[f"seconds_{m}"] > 0).all()
    metrics = io.read_metrics(d / "metrics.nc")
    assert list(metrics["solver"].values) == ["diffnet", "fem"]
    assert "rel_l2_discrete" in metrics and "log10_contrast" in metrics
    history = (d / "training.csv").read_text().splitlines()[0].split(",")
    assert history == ["step", "epoch", "loss", "loss_energy", "seconds", "ranks", "threads"]
    for name in ("fields.png", "error_vs_parameter.png", "loss.png"):
        assert_figure(d / "report" / name)
    assert (d / "report" / "timing.csv").read_text().count("\n") >= 3
    for path in (d / "samples.nc", d / "pred.nc", d / "ref.nc", d / "metrics.nc"):
        from tests.test_pipeline import _cf_errors

        assert _cf_errors(path) == [], path.name


@pytest.mark.mpi
@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_infer_from_parameter_vectors_and_refuses_bad_ones(elliptic_run, tmp_path):
    model = str(elliptic_run / "model.pt")
    out = tmp_path / "p.nc"
    proc = run_cli(["infer", "--model", model, "--omega", "0.5,-1,2;1,1,4", "--kappa", "2", "--out", str(out)])
    assert "outside the trained range [-3, 3]" in proc.stderr
    ds = xr.open_dataset(out)
    assert ds["u"].shape == (2, 17, 17) and list(ds["kappa"].values) == [2.0, 2.0]
    bad = [(["--omega", "0.5,-1", "--kappa", "2"], "3 values"),
           (["--omega", "0.5,,1", "--kappa", "2"], "empty item"),
           (["--omega", "nan,0,0", "--kappa", "2"], "NaN"),
           (["--omega", "0,0,0", "--kappa", "-1"], "kappa' must be >= 0"),
           (["--omega", "0,0,0"], "--kappa is missing"),
           (["--c", "3.0"], "--c: the reaction_diffusion family has no such parameter")]
    for args, message in bad:
        target = tmp_path / "bad.nc"
        proc = run_cli(["infer", "--model", model, *args, "--out", str(target)], check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not target.exists()


@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_burgers_infer_refuses_impossible_c_and_warns_outside_the_trained_range(tiny_trained, tmp_path):
    model = str(tiny_trained / "model.pt")
    for value, message in (("-1,nan", "NaN"), ("1e400", "NaN or infinite"), ("4.0,,5", "empty item"),
                           ("-1", "'c' must be > 0")):
        target = tmp_path / "bad.nc"
        proc = run_cli(["infer", "--model", model, f"--c={value}", "--out", str(target)], check=False)
        assert proc.returncode == 2 and message in proc.stderr, (value, proc.stderr)
        assert not target.exists()
    proc = run_cli(["infer", "--model", model, "--c", "2.0,4.0,9.5", "--out", str(tmp_path / "ok.nc")])
    assert "2 value(s) outside the trained range [3, 6]" in proc.stderr


def test_energy_helpers_agree_with_the_problem_quadrature():
    poisson = _problem()
    omega = np.array([[1.0, -0.5, 2.0]])
    g = energy.gauss_points(17)
    expected = kl.log_diffusivity(omega, g, g, 0.5)
    got = poisson._log_nu_torch(torch.tensor(omega), "gauss").numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    u, timing = fem.solve_poisson(kl.kl_log_nu_function(omega[0], 0.5), 17)
    assert u.shape == (17, 17) and timing.iterations > 0


@pytest.mark.slow
@pytest.mark.mpi
def test_snakemake_builds_an_elliptic_experiment_with_the_family_blind_rules(tmp_path):
    from tests.test_pipeline import OUTPUTS, _snakemake

    write_config(tmp_path / "config.yaml", _doc())
    _snakemake(tmp_path)
    run = tmp_path / "results" / "ell"
    for name in OUTPUTS:
        assert (run / name).is_file(), name
    assert io.read_reference(run / "reference.nc").attrs["truth"] == "fine"
