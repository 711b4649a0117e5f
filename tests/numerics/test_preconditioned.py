"""The preconditioned residual e = J^{-1} r: a Newton (or defect-correction) step towards the discrete
solution, so its size is the distance from it whatever the mode of the error."""

import numpy as np
import pytest
import torch

from diffnet.config import ConfigError, experiment_from_dict, validate
from diffnet.numerics import marching, residuals
from diffnet.problems import Burgers, Grid

SCHEMES = ["godunov1", "tvd2", "tvd2_cn"]


def _solution(scheme, n=48, cs=(3.0, 4.4, 6.0)):
    grid = Grid(n, n, 1 / 3)
    u0 = Burgers(grid).initial_condition(np.array(cs))
    return grid, u0, marching.march(scheme, u0, grid.nt, grid.dt, grid.dx)


def _smooth_perturbation(grid, amplitude, samples):
    # Zero on the IC row and the boundary column, like any admissible change of the unknowns.
    t, x = np.meshgrid(grid.t / grid.t_end, grid.x, indexing="ij")
    field = amplitude * t * np.sin(3 * np.pi * x) * np.cos(2 * np.pi * t)
    return np.broadcast_to(field, (samples, *field.shape)).copy()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("first_order", [False, True])
def test_correction_vanishes_at_the_discrete_solution(scheme, first_order):
    grid, _, u = _solution(scheme)
    jac = residuals.FIRST_ORDER[scheme] if first_order else scheme
    e = marching.newton_correction(scheme, u, grid.dt, grid.dx, jacobian=jac)
    assert e.shape == (3, grid.nt - 1, grid.nx - 1)
    assert np.abs(e).max() < 1e-10


@pytest.mark.parametrize("scheme", SCHEMES)
def test_with_its_own_jacobian_the_correction_is_the_perturbation_to_second_order(scheme):
    grid, _, u = _solution(scheme)
    misses = []
    for amplitude in (1e-2, 1e-3):
        delta = _smooth_perturbation(grid, amplitude, len(u))
        e = marching.newton_correction(scheme, u + delta, grid.dt, grid.dx)
        misses.append(np.linalg.norm(e - delta[:, 1:, 1:]) / np.linalg.norm(delta))
    assert misses[0] < 0.02
    # A Newton step's remainder is quadratic: 10x less perturbation, about 10x less relative miss. The
    # limiters' kinks (superbee most) make it only piecewise smooth, hence the slack.
    assert misses[1] < misses[0] / 4


@pytest.mark.parametrize("scheme", ["tvd2", "tvd2_cn"])
def test_first_order_jacobian_estimates_the_distance_and_its_iteration_reaches_the_solution(scheme):
    grid, u0, solution = _solution(scheme)
    twin = residuals.FIRST_ORDER[scheme]
    delta = _smooth_perturbation(grid, 1e-2, len(u0))
    e = marching.newton_correction(scheme, solution + delta, grid.dt, grid.dx, jacobian=twin)
    assert np.linalg.norm(e - delta[:, 1:, 1:]) / np.linalg.norm(delta) < 0.25
    # Defect correction from a field frozen at the IC, 1.4x the solution's norm away: the twin's
    # Jacobian is always invertible, and the undamped iteration converges (linearly).
    u = np.repeat(u0[:, None], grid.nt, axis=1)
    u[:, :, 0] = 0.0
    distances = []
    for _ in range(40):
        u[:, 1:, 1:] -= marching.newton_correction(scheme, u, grid.dt, grid.dx, jacobian=twin)
        distances.append(np.abs(u - solution).max())
    assert distances[-1] < 1e-6 * distances[0]


def test_preconditioned_loss_is_the_squared_correction_with_the_correction_as_gradient():
    grid, u0, solution = _solution("tvd2_cn")
    problem = Burgers(grid, residual_form="preconditioned")
    delta = _smooth_perturbation(grid, 1e-2, len(u0))
    u = torch.tensor(solution + delta, requires_grad=True)
    pde = problem.loss_terms(u, u, torch.tensor(u0))["pde"]
    e = marching.newton_correction("tvd2_cn", u.detach(), grid.dt, grid.dx, jacobian="godunov1_cn")
    np.testing.assert_allclose(pde.detach().numpy(), np.square(e).mean(axis=(1, 2)), rtol=1e-12)
    # About the mean square distance from the discrete solution.
    distance = np.square(delta[:, 1:, 1:]).mean(axis=(1, 2))
    np.testing.assert_allclose(pde.detach().numpy(), distance, rtol=0.5)
    pde.sum().backward()
    expected = np.zeros_like(solution)
    expected[:, 1:, 1:] = 2 * e / e[0].size
    np.testing.assert_allclose(u.grad.numpy(), expected, rtol=1e-12, atol=1e-18)


def test_preconditioned_loss_sees_the_checkerboard_mode_at_its_full_size():
    # The seed's trap: u(x, t_j) = (-1)^j u0(x) is 145% wrong and nearly free for central stencils.
    grid, u0, solution = _solution("tvd2_cn")
    sign = (-1.0) ** np.arange(grid.nt)
    board = torch.tensor(sign[None, :, None] * u0[:, None, :])
    board[:, :, 0] = 0.0
    pde = Burgers(grid, residual_form="preconditioned").loss_terms(board, board, torch.tensor(u0))["pde"]
    distance = np.square(board.numpy() - solution)[:, 1:, 1:].mean(axis=(1, 2))
    assert (pde.numpy() > 0.2 * distance).all()


def _experiment(**loss):
    doc = {"experiments": {"e": {"problem": {"name": "burgers"}, "grid": {"nx": 32, "nt": 32},
                                 "model": {"depth": 2}, "loss": loss}}}
    return experiment_from_dict("e", validate(doc, resolved=False)["experiments"]["e"])


@pytest.mark.parametrize(("loss", "field"), [({"scheme": "sobel"}, "loss.residual_form"),
                                             ({"constraint": "penalty"}, "loss.constraint")])
def test_config_refuses_what_the_preconditioned_residual_cannot_do(loss, field):
    with pytest.raises(ConfigError, match=rf"experiments\.e\.{field}"):
        _experiment(residual_form="preconditioned", **loss)
    _experiment(residual_form="preconditioned")
