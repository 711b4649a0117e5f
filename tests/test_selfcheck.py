"""Every prediction checks itself: the family's residual on the prediction, calibrated at training end."""

import numpy as np
import pytest
import torch
import xarray as xr

from diffnet import checkpoint, problems, selfcheck
from diffnet.numerics import marching
from diffnet.problems import Burgers, Grid
from tests.conftest import run_cli
from tests.test_elliptic import _problem


def test_the_residual_vanishes_on_the_discrete_solution_and_grows_with_a_perturbation():
    grid = Grid(32, 32, 1 / 3)
    burgers = Burgers(grid)
    c = np.array([3.3, 5.1])
    u0 = burgers.initial_condition(c)
    discrete = marching.march("tvd2_cn", u0, grid.nt, grid.dt, grid.dx)
    cond = torch.tensor(u0)
    r = burgers.residual(torch.tensor(discrete), cond)
    noisy = burgers.residual(torch.tensor(discrete + 0.01 * np.random.default_rng(0).standard_normal(discrete.shape)),
                             cond)
    assert r.max() < 1e-12 and (noisy > 1e3 * r.max() + 1e-8).all()

    poisson = _problem()
    params = poisson.sample_parameters(2, np.random.default_rng(3))
    cond = torch.tensor(poisson.condition({**params, **poisson.input_fields(params)}))
    u_fem = torch.tensor(poisson.reference(params, ("fem",)).fields["fem"])
    at_fem = poisson.residual(u_fem, cond)
    bumped = poisson.residual(u_fem + 0.01 * torch.sin(torch.pi * torch.linspace(0, 1, 17))[None, :, None], cond)
    assert (at_fem < 1e-12 * bumped).all()


def test_assess_flags_high_residuals_and_parameters_outside_the_trained_range():
    burgers = Burgers(Grid(16, 16, 1 / 3))
    calibration = selfcheck.calibrate(np.array([1.0, 2.0, 3.0, 4.0]))
    assert calibration["residual_threshold"] == np.quantile([1.0, 2.0, 3.0, 4.0], 0.99) * 2
    trusted, reasons = selfcheck.assess(burgers, {"c": np.array([4.0, 4.0, 9.0])}, np.array([1.0, 100.0, 1.0]),
                                        calibration)
    assert trusted.tolist() == [True, False, False]
    assert reasons[0] == "" and "above the calibrated" in reasons[1]
    assert "outside the trained range [3, 6]" in reasons[2]


@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_infer_reports_the_self_check_for_every_sample(tiny_trained, tmp_path):
    assert "self-check calibrated on 3 held-out samples" in (tiny_trained / "train.log").read_text()
    for name in ("model.pt", "samples.nc"):
        (tmp_path / name).symlink_to(tiny_trained / name)
    level = checkpoint.load(tmp_path / "model.pt")["self_check"]["residual_threshold"]
    assert level > 0
    run_cli(["infer", "--model", str(tmp_path / "model.pt"), "--samples", str(tmp_path / "samples.nc"), "--out",
             str(tmp_path / "held_out.nc")])
    held = xr.open_dataset(tmp_path / "held_out.nc")
    # The level is the held-out residuals' 0.99 quantile times 2: every held-out sample passes it.
    assert (held["residual"] > 0).all() and (held["trusted"] == 1).all()
    proc = run_cli(["infer", "--model", str(tmp_path / "model.pt"), "--c", "4.0,12.0", "--out",
                    str(tmp_path / "p.nc")])
    flagged = [line for line in proc.stderr.splitlines() if "is untrusted" in line]
    assert len(flagged) == 1 and "sample 1 (c = 12)" in flagged[0] and "outside the trained range" in flagged[0]
    ds = xr.open_dataset(tmp_path / "p.nc")
    assert ds["trusted"].values.tolist() == [1, 0] and ds["trusted"].attrs["flag_meanings"] == "untrusted trusted"
    assert problems.check_values(Burgers(Grid(16, 16, 1 / 3)), {"c": np.array([4.0])}) == []
