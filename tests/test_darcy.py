"""The darcy family (issue 23): the GRF generator, the medium at the Gauss points of every grid, the FEM
against known solutions, energy minimiser = FEM, the file contract, `infer --inputs` on a user's own field
(refusals before any output, a hand-drawn channel), and the stages end to end on a tiny grid."""

import copy
import math

import numpy as np
import pytest
import torch
import xarray as xr

from diffnet import io, problems
from diffnet.config import ConfigError, experiment_from_dict, validate
from diffnet.numerics import q1
from diffnet.numerics.grf import GaussianRandomField
from tests.conftest import run_cli, write_config

DARCY = {
    "run": ["d"],
    "experiments": {
        "d": {
            "problem": {"name": "darcy", "image": 64},
            "grid": {"nx": 17, "ny": 17},
            "sampling": {"n_train": 8, "n_test": 3, "seed": 5},
            "model": {"base_channels": 4, "depth": 3},
            "train": {"steps": 4, "batch_size": 4, "checkpoint_every": 2, "warmup_steps": 1, "lr": 0.003},
        }
    },
}


def _doc(**problem):
    doc = copy.deepcopy(DARCY)
    doc["experiments"]["d"]["problem"].update(problem)
    return doc


def _problem(**fields) -> problems.Darcy:
    doc = validate(_doc(**fields))
    return problems.from_config(experiment_from_dict("d", doc["experiments"]["d"]))


# --- the Gaussian random field -------------------------------------------------------------------------
def test_grf_is_reproducible_per_seed():
    law = GaussianRandomField(size=32)
    a, b, c = law.coefficients(7), law.coefficients(7), law.coefficients(8)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    x = np.linspace(0.0, 1.0, 9)
    assert np.array_equal(law.evaluate(a, x, x), law.evaluate(b, x, x))


def test_grf_evaluation_is_the_fft_image_at_the_pixels():
    law = GaussianRandomField(tau=3.0, alpha=2.0, size=16)
    coeff = law.coefficients(3)
    pixels = np.arange(16) / 16
    np.testing.assert_allclose(law.evaluate(coeff, pixels, pixels), law.image(coeff), atol=1e-12)
    # Rows are y: a field evaluated at (y, x) = (0.25, 0.5) is row 4, column 8 of the image.
    assert law.evaluate(coeff, np.array([0.5]), np.array([0.25]))[0, 0] == pytest.approx(law.image(coeff)[4, 8])


def test_grf_spectrum_and_variance_match_the_covariance():
    """Over many draws: each Fourier coefficient's variance is 2 s^2 lambda_k; the field has mean 0 and the
    predicted pointwise variance. Tolerances are ~5 standard errors of the estimates."""
    law = GaussianRandomField(tau=3.0, alpha=2.0, size=32)
    draws = 400
    images = np.stack([law.image(law.coefficients(s)) for s in range(draws)])
    assert np.abs(images.mean(axis=(1, 2))).max() < 1e-12  # no mean mode in any draw
    d = np.fft.fft2(images, norm="forward")
    power = np.mean(np.abs(d) ** 2, axis=0)
    expected = 2.0 * law.scale**2 * law.eigenvalues()
    k = law.wavenumbers
    radius = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    self_conjugate = (np.abs(k[:, None]) % 16 == 0) & (np.abs(k[None, :]) % 16 == 0)
    for low in (1, 2, 4, 8):
        shell = (radius >= low) & (radius < 2 * low) & ~self_conjugate
        ratio = power[shell].sum() / expected[shell].sum()
        # |d_k|^2 is exponential (relative std 1); d_k and d_-k are the same number: draws x shell/2 samples.
        tol = 5.0 / math.sqrt(draws * shell.sum() / 2)
        assert abs(ratio - 1.0) < tol, (low, ratio, tol)
    var = law.variance()
    pointwise = images[:, 5, 11]
    assert abs(pointwise.mean()) < 5.0 * math.sqrt(var / draws)
    # Samples at one point over independent draws: the variance estimate has relative std sqrt(2/draws).
    assert abs(images.var(axis=0).mean() / var - 1.0) < 5.0 * math.sqrt(2.0 / draws)


def test_grf_refuses_odd_sizes():
    with pytest.raises(ValueError, match="even"):
        GaussianRandomField(size=15)


# --- the medium on every grid ---------------------------------------------------------------------------
def test_network_fem_and_refined_fem_see_one_image():
    p = _problem()
    seed = 12345.0
    cond = p.condition({"seed": np.array([seed])})[0]
    g17 = q1.gauss_points(17)
    at_gauss = cond[17 * 17 :].reshape(32, 32)
    np.testing.assert_allclose(np.exp(at_gauss), p.nu_at(seed, g17, g17))
    # The same draw at the coarse grid's Gauss points and at the nodes of a fine grid: the phases cover the
    # same share of the square on both (one medium, sampled twice).
    fine = p.nu_nodes(np.array([seed]), 129)[0]
    coarse = p.nu_at(seed, g17, g17)
    assert abs((fine == 12.0).mean() - (coarse == 12.0).mean()) < 0.05
    assert set(np.unique(coarse)) <= {3.0, 12.0} and set(np.unique(fine)) == {3.0, 12.0}
    # The refined FEM's Gauss points lie between the coarse ones: the field there is the same function.
    x = np.array([g17[3]])
    both = p.nu_at(seed, np.concatenate([x, q1.gauss_points(33)]), x)
    assert both[0, 0] == coarse[3, 3]


def test_lognormal_medium_has_the_configured_log_std():
    p = _problem(coefficient="lognormal", sigma=0.7)
    nu = p.nu_nodes(np.arange(40.0), 17)
    assert np.all(nu > 0)
    assert np.std(np.log(nu)) == pytest.approx(0.7, rel=0.15)
    assert p.parameters["nu_max"].high == pytest.approx(math.exp(6 * 0.7))


# --- the classical solver against known solutions ----------------------------------------------------
def _series_fno(x: np.ndarray, y: np.ndarray, terms: int = 199) -> np.ndarray:
    """-lap u = 1 on the unit square, u = 0 on its boundary: the double sine series."""
    u = np.zeros(np.broadcast(x, y).shape)
    for m in range(1, terms + 1, 2):
        for n in range(1, terms + 1, 2):
            u += 16.0 / (math.pi**4 * m * n * (m * m + n * n)) * np.sin(m * math.pi * x) * np.sin(n * math.pi * y)
    return u


def test_fem_with_constant_nu_is_the_poisson_series_to_second_order():
    p = _problem()
    errors = []
    for n in (17, 33):
        u, _ = p.solve_field(np.full((2 * (n - 1),) * 2, 4.0), n)
        nodes = np.linspace(0.0, 1.0, n)
        exact = _series_fno(nodes[None, :], nodes[:, None]) / 4.0  # nu = 4 scales u by 1/4
        errors.append(np.abs(u - exact).max())
    assert errors[1] < 1e-4 * 0.25 and errors[0] / errors[1] > 3.5  # O(h^2)


@pytest.mark.parametrize("layers", ["parallel", "series"])
def test_flow_through_layers_has_the_exact_effective_permeability(layers):
    """Layers parallel to the flow: K = arithmetic mean of nu; across it: the harmonic mean. Exact for Q1
    when the layers follow the cells (u is then piecewise linear along x, or 1 - x)."""
    p = _problem(setup="flow")
    n = 17
    cells = np.where(np.arange(n - 1) % 3 == 0, 100.0, 1.0)  # one layer value per cell row / column
    per_gauss = np.repeat(cells, 2)
    nu_q = np.broadcast_to(per_gauss[:, None] if layers == "parallel" else per_gauss[None, :], (32, 32)).copy()
    u, _ = p.solve_field(nu_q, n, solver="direct")
    k = q1.dirichlet_integral(u, nu_q)
    exact = cells.mean() if layers == "parallel" else 1.0 / np.mean(1.0 / cells)
    assert k == pytest.approx(exact, rel=1e-10)
    assert -q1.boundary_flux(u, nu_q) == pytest.approx(-exact, rel=1e-8)  # flux out through x = 1


def test_energy_minimiser_is_the_same_grid_fem():
    p = _problem()
    params = p.sample_parameters(2, np.random.default_rng(0))
    ref = p.reference(params, methods=("fem",))
    cond = torch.tensor(p.condition(params))
    u = torch.tensor(ref.fields["fem"])
    # The energy's gradient at the FEM solution vanishes on the free nodes (a stationary point of a convex
    # quadratic is its minimiser), and any admissible perturbation raises the energy.
    assert p.residual(u, cond).max() < 1e-18
    e0 = p.loss_terms(u, u, cond)["total"]
    bump = torch.zeros_like(u)
    bump[:, 1:-1, 1:-1] = torch.randn(2, 15, 15, dtype=u.dtype, generator=torch.Generator().manual_seed(0)) * 1e-3
    assert torch.all(p.loss_terms(u + bump, u, cond)["total"] > e0)
    # ... and the QoI int u equals the compliance int nu |grad u|^2 there.
    nu_q = p.nu_gauss(params, 17)
    np.testing.assert_allclose(p.qoi(ref.fields["fem"], params), q1.dirichlet_integral(ref.fields["fem"], nu_q),
                               rtol=1e-8)


def test_reference_fine_is_closer_than_coarse_rungs():
    p = _problem()
    params = p.sample_parameters(2, np.random.default_rng(1))
    ref = p.reference(params)
    ladder = p.ladder(params, (0.25, 0.5, 1.0))
    truth = ref.fields["fine"]
    err = [np.linalg.norm(f - truth) / np.linalg.norm(truth) for f in ladder.fields]
    assert err[0] > err[1] > err[2] > 0 and ladder.nodes == (5, 9, 17)
    np.testing.assert_allclose(ladder.fields[-1], ref.fields["fem"], atol=1e-8)


# --- configuration -----------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, field", [
    ({"nu_low": 12.0, "nu_high": 3.0}, "experiments.d.problem.nu_low"),
    ({"setup": "channel"}, "experiments.d.problem.setup"),
    ({"modes": 4}, "experiments.d.problem"),
    ({"image": 15}, "experiments.d.problem.image"),
])
def test_bad_darcy_configs_are_one_line_errors(edit, field):
    with pytest.raises(ConfigError) as info:
        validate(_doc(**edit))
    assert field in str(info.value) and "\n" not in str(info.value)


def test_darcy_defaults_are_fnos():
    p = validate(_doc())["experiments"]["d"]["problem"]
    assert (p["setup"], p["coefficient"], p["nu_high"], p["nu_low"], p["tau"], p["alpha"]) == \
        ("fno", "two_phase", 12.0, 3.0, 3.0, 2.0)


# --- the stages, a user's own field ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """sample and train the tiny darcy experiment once, in process (a few seconds)."""
    from diffnet.sample import sample
    from diffnet.train import train

    d = tmp_path_factory.mktemp("darcy")
    cfg = write_config(d / "config.yaml", DARCY)
    exp = experiment_from_dict("d", validate(copy.deepcopy(DARCY))["experiments"]["d"])
    sample(exp, d / "samples.nc")
    train(exp, d / "samples.nc", d, threads=1, progress=False)
    return d, cfg


def test_samples_file_holds_nu_and_the_generator(trained):
    d, _ = trained
    samples = io.read_samples(d / "samples.nc")
    nu = samples["nu"]
    assert nu.dims == ("sample", "y", "x") and nu.shape == (11, 17, 17)
    assert set(np.unique(nu.values)) == {3.0, 12.0}
    assert nu.attrs["generator_tau"] == "3" and nu.attrs["generator_alpha"] == "2" and "seeded" in nu.attrs["generator"]
    assert samples.attrs["Conventions"] == "CF-1.10" and samples.attrs["parameters"] == "seed nu_min nu_max"
    # The seed reproduces the stored field.
    p = _problem()
    np.testing.assert_array_equal(p.nu_nodes(samples["seed"].values[:2]), nu.values[:2])


def test_stages_end_to_end(trained):
    """infer, reference, evaluate on the tiny model (in process; the command line is exercised below)."""
    from diffnet.evaluate import evaluate
    from diffnet.infer import infer
    from diffnet.reference import reference

    d, _ = trained
    exp = experiment_from_dict("d", validate(copy.deepcopy(DARCY))["experiments"]["d"])
    infer(d / "model.pt", d / "prediction.nc", samples_path=d / "samples.nc")
    reference(exp, d / "samples.nc", d / "reference.nc")
    evaluate(exp, d / "prediction.nc", d / "reference.nc", d / "metrics.nc", d / "metrics.csv")
    m = xr.open_dataset(d / "metrics.nc")
    assert set(m["solver"].values) == {"diffnet", "fem"} and "rel_h1" in m and "rel_l2_discrete" in m
    assert "high_fraction" in m and list(m["metric"].values)[-1] == "qoi_error"
    fem = m["rel_l2"].sel(solver="fem").values
    assert np.all((fem > 0) & (fem < 0.1))  # the same-grid FEM's discretisation error against the 2x FEM


def _write_field(path, nu, dims=("sample", "y", "x")):
    coords = {d: np.linspace(0.0, 1.0, size) for d, size in zip(dims, np.shape(nu), strict=True) if d != "sample"}
    xr.Dataset({"nu": (dims, nu)}, coords=coords).to_netcdf(path)


def _channel(n: int = 17, high: float = 12.0, low: float = 3.0) -> np.ndarray:
    """A hand-drawn medium: a diagonal high-permeability channel through a low-permeability matrix."""
    y, x = np.mgrid[0:n, 0:n] / (n - 1)
    return np.where(np.abs(y - 0.2 - 0.6 * x) < 0.12, high, low)[None]


def _bad(kind: str) -> tuple[np.ndarray, tuple[str, ...], str]:
    nu = _channel()
    if kind == "nan":
        nu[0, 4, 5] = np.nan
        return nu, ("sample", "y", "x"), "NaN or infinite"
    if kind == "zero":
        nu[0, 8, 8] = 0.0
        return nu, ("sample", "y", "x"), "non-positive"
    if kind == "negative":
        return -nu, ("sample", "y", "x"), "non-positive"
    if kind == "wrong_shape":
        return nu[:, :, 0], ("sample", "y"), "dimensions"
    if kind == "wrong_grid":
        return np.full((1, 33, 33), 3.0), ("sample", "y", "x"), "33 y nodes"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["nan", "zero", "negative", "wrong_shape", "wrong_grid"])
def test_infer_inputs_refuses_bad_fields_before_writing(trained, tmp_path, kind):
    from diffnet.infer import infer

    d, _ = trained
    nu, dims, phrase = _bad(kind)
    _write_field(tmp_path / "bad.nc", nu, dims)
    out = tmp_path / "prediction.nc"
    with pytest.raises((ConfigError, io.ContractError)) as info:
        infer(d / "model.pt", out, inputs_path=tmp_path / "bad.nc")
    message = str(info.value)
    assert "nu" in message and phrase in message and "\n" not in message, message
    assert not out.exists() and not list(tmp_path.glob(".prediction.nc*"))


def test_infer_inputs_refusal_on_the_command_line_is_one_line_and_exit_2(trained, tmp_path):
    d, _ = trained
    nu, dims, _ = _bad("zero")
    _write_field(tmp_path / "bad.nc", nu, dims)
    out = tmp_path / "prediction.nc"
    proc = run_cli(["infer", "--model", str(d / "model.pt"), "--inputs", str(tmp_path / "bad.nc"), "--out", str(out)],
                   check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "input field 'nu' holds 1 non-positive value(s) (first at sample 0, y 8, x 8: 0)" in proc.stderr
    assert not out.exists()


def test_infer_inputs_refuses_cell_centred_coordinates(trained, tmp_path):
    from diffnet.infer import infer

    d, _ = trained
    centres = (np.arange(17) + 0.5) / 17
    xr.Dataset({"nu": (("sample", "y", "x"), _channel())}, coords={"y": centres, "x": centres}).to_netcdf(
        tmp_path / "c.nc")
    with pytest.raises(io.ContractError, match="coordinates are not the model's nodes"):
        infer(d / "model.pt", tmp_path / "p.nc", inputs_path=tmp_path / "c.nc")
    assert not (tmp_path / "p.nc").exists()


def test_infer_inputs_on_a_hand_drawn_channel(trained, tmp_path):
    """A field no sampler made, given as one (y, x) array: predicted, self-checked, and stored with its nu."""
    d, _ = trained
    nu = _channel()
    _write_field(tmp_path / "channel.nc", nu[0], ("y", "x"))
    out = tmp_path / "prediction.nc"
    proc = run_cli(["infer", "--model", str(d / "model.pt"), "--inputs", str(tmp_path / "channel.nc"), "--out",
                    str(out)])
    assert "outside the trained range" not in proc.stderr
    pred = xr.open_dataset(out)
    assert pred["u"].shape == (1, 17, 17) and np.all(np.isfinite(pred["u"].values))
    np.testing.assert_array_equal(pred["nu"].values, nu)
    assert pred["seed"].values[0] == -1 and pred["nu_max"].values[0] == 12.0
    assert pred["u"].values[0, [0, -1], :].max() == 0.0 and pred["u"].values[0, :, [0, -1]].max() == 0.0
    assert "residual" in pred and int(pred["trusted"].values[0]) in (0, 1)
    # The model's own condition for this field: the nodes' values, and at each Gauss point its nearest node's.
    p = _problem()
    cond = p.condition({"seed": np.array([-1.0]), "nu": nu})
    gauss = np.exp(cond[0, 17 * 17 :].reshape(32, 32))
    np.testing.assert_allclose([gauss[0, 0], gauss[1, 1], gauss[2, 3]], [nu[0, 0, 0], nu[0, 1, 1], nu[0, 1, 2]])


def test_infer_inputs_flags_a_contrast_outside_training(trained, tmp_path):
    from diffnet.infer import infer

    d, _ = trained
    _write_field(tmp_path / "c100.nc", _channel(high=100.0, low=1.0))
    with pytest.warns(UserWarning, match=r"nu_max.*outside the trained range \[3, 12\]"):
        infer(d / "model.pt", tmp_path / "p.nc", inputs_path=tmp_path / "c100.nc")
    assert int(xr.open_dataset(tmp_path / "p.nc")["trusted"].values[0]) == 0


def test_infer_inputs_is_refused_for_a_family_whose_input_is_not_a_field(tmp_path):
    from diffnet.infer import _user_fields

    doc = validate({"run": ["p"], "experiments": {"p": {"problem": {"name": "poisson"}, "grid": {"nx": 17, "ny": 17},
                                                        "model": {"depth": 2}}}})
    poisson = problems.from_config(experiment_from_dict("p", doc["experiments"]["p"]))
    with pytest.raises(ConfigError, match="poisson family derives its input fields from its parameters"):
        _user_fields(poisson, tmp_path / "whatever.nc")


@pytest.mark.slow
def test_darcy_files_are_cf_clean(trained, tmp_path):
    """samples, prediction (sampled and a user's field), reference and metrics: no CF-1.10 errors."""
    from diffnet.evaluate import evaluate
    from diffnet.infer import infer
    from diffnet.reference import reference
    from tests.test_pipeline import _cf_errors

    d, _ = trained
    exp = experiment_from_dict("d", validate(copy.deepcopy(DARCY))["experiments"]["d"])
    infer(d / "model.pt", tmp_path / "prediction.nc", samples_path=d / "samples.nc")
    reference(exp, d / "samples.nc", tmp_path / "reference.nc")
    evaluate(exp, tmp_path / "prediction.nc", tmp_path / "reference.nc", tmp_path / "metrics.nc",
             tmp_path / "metrics.csv")
    _write_field(tmp_path / "channel.nc", _channel())
    infer(d / "model.pt", tmp_path / "user.nc", inputs_path=tmp_path / "channel.nc")
    for path in (d / "samples.nc", tmp_path / "prediction.nc", tmp_path / "user.nc", tmp_path / "reference.nc",
                 tmp_path / "metrics.nc"):
        assert _cf_errors(path) == [], path.name
