"""The training residuals: sound fluxes, exact discrete solutions, and the seed's null mode."""

import numpy as np
import pytest
import torch

from diffnet.numerics import exact, marching, residuals
from diffnet.numerics.fluxes import burgers_flux, godunov_flux
from diffnet.problems import Burgers, Grid


def _riemann_flux(ul: float, ur: float) -> float:
    # Godunov's definition: min of f over [ul, ur] if ul <= ur, else max over [ur, ul].
    u = np.linspace(min(ul, ur), max(ul, ur), 20001)
    f = 0.5 * u * u
    return f.min() if ul <= ur else f.max()


@pytest.mark.parametrize(("ul", "ur"), [(0.3, 0.8), (0.8, 0.3), (-0.5, 0.7), (0.7, -0.5), (-0.9, -0.2),
                                        (-0.2, -0.9), (-0.4, 0.4), (0.0, 0.0)])
def test_godunov_flux_matches_the_riemann_problem_for_any_signs(ul, ur):
    assert godunov_flux(np.array(ul), np.array(ur)) == pytest.approx(_riemann_flux(ul, ur), abs=1e-8)
    t = godunov_flux(torch.tensor(ul, dtype=torch.float64), torch.tensor(ur, dtype=torch.float64))
    assert float(t) == pytest.approx(_riemann_flux(ul, ur), abs=1e-8)


def test_godunov_flux_is_consistent():
    u = np.linspace(-1, 1, 11)
    np.testing.assert_allclose(godunov_flux(u, u), burgers_flux(u))


def _setup(n=64, cs=(3.0, 4.5, 6.0)):
    grid = Grid(n, n, 1 / 3)
    c = np.array(cs)
    return grid, c, Burgers(grid).initial_condition(c)


def test_marching_solution_satisfies_godunov1_to_rounding():
    grid, _, u0 = _setup()
    u = marching.godunov1_march(u0, grid.nt, grid.dt, grid.dx)
    r = residuals.godunov1(torch.tensor(u), grid.dt, grid.dx)
    assert r.abs().max().item() < 1e-12


def test_godunov1_discrete_solution_converges_to_the_exact_solution_at_first_order_in_l1():
    errors = []
    for n in (64, 128, 256):
        grid, c, u0 = _setup(n, (3.5, 5.0))
        ud = marching.godunov1_march(u0, grid.nt, grid.dt, grid.dx)
        u0f, prim, du0 = exact.cosine_family(c)
        ue = exact.lax_oleinik(u0f, prim, grid.x, grid.t, du0=du0)
        errors.append(np.abs(ud - ue).mean())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    # Monotone schemes converge at order 1/2 to 1 in L1 across shocks; smeared shocks cost the rest.
    assert np.all(orders > 0.5), (errors, orders)
    assert errors[-1] < 0.03


def test_checkerboard_null_mode_is_visible_to_godunov1_but_not_to_sobel():
    grid, _c, u0 = _setup()
    discrete = torch.tensor(marching.godunov1_march(u0, grid.nt, grid.dt, grid.dx))
    sign = torch.tensor((-1.0) ** np.arange(grid.nt))[None, :, None]
    mode = sign * torch.tensor(u0)[:, None, :]  # u(x, t_j) = (-1)^j u0(x)

    def loss(scheme, u):
        return residuals.residual(scheme, u, grid.dt, grid.dx).square().mean().item()

    # Sobel scores the 100%-wrong mode about as well as the scheme's own solution...
    assert loss("sobel", mode) < 2 * loss("sobel", discrete)
    # ...while the upwind implicit residual sees an O(1) violation in every row.
    assert loss("godunov1", mode) > 0.1
    assert loss("godunov1", mode) > 1e10 * max(loss("godunov1", discrete), 1e-30)


def test_viscosity_term_is_added_for_every_scheme():
    grid, _, u0 = _setup(32)
    u = torch.tensor(u0)[:, None, :].expand(-1, grid.nt, -1).contiguous()
    for scheme in residuals.SCHEMES:
        r0 = residuals.residual(scheme, u, grid.dt, grid.dx, 0.0)
        r1 = residuals.residual(scheme, u, grid.dt, grid.dx, 1e-2)
        assert (r1 - r0).abs().max() > 1e-4, scheme


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown residual scheme 'central'"):
        residuals.residual("central", torch.zeros(1, 8, 8), 0.1, 0.1)


def test_limited_slopes():
    a = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, 0.0, 0.0], dtype=torch.float64)
    b = torch.tensor([1.0, 3.0, 0.4, -1.0, -3.0, 2.0, 0.0], dtype=torch.float64)
    # van Leer: harmonic mean 2ab/(a+b) for equal signs, 0 at extrema.
    np.testing.assert_allclose(residuals.van_leer_slope(a, b), [1.0, 1.5, 4 / 7, 0.0, -1.5, 0.0, 0.0])
    # superbee: max(min(2|a|, |b|), min(|a|, 2|b|)) with the common sign.
    np.testing.assert_allclose(residuals.superbee_slope(a, b), [1.0, 2.0, 0.8, 0.0, -2.0, 0.0, 0.0])


@pytest.mark.parametrize("scheme", ["tvd2", "tvd2_cn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_limited_schemes_have_finite_gradients_on_flat_and_extremal_data(scheme, dtype):
    # Flat stretches (both differences 0) and kinks are where a naive limiter divides 0 by 0.
    u = torch.zeros(2, 6, 10, dtype=dtype)
    u[1, 2:, 3:6] = 1.0
    u[1, 4, 5] = 0.5
    u.requires_grad_()
    r = residuals.residual(scheme, u, 0.05, 0.1, 1e-3)
    (grad,) = torch.autograd.grad(r.square().sum(), u)
    assert torch.isfinite(r).all() and torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


def test_muscl_reduces_to_godunov1_where_every_limited_slope_vanishes():
    # One step up at every row: each node is an extremum of the differences, so both limiters return a
    # zero slope and the reconstruction is piecewise constant; backward Euler rows then agree exactly.
    u = torch.zeros(1, 2, 12, dtype=torch.float64)
    u[0, 0, 5:] = 0.8
    u[0, 1, 7:] = 0.6
    expected = residuals.godunov1(u, 0.02, 0.1)
    torch.testing.assert_close(residuals.tvd2(u, 0.02, 0.1), expected, rtol=0, atol=1e-15)
    # Crank-Nicolson averages the two rows' operators, and each is godunov1's.
    lu = (residuals.godunov1(u, 1.0, 0.1) - (u[:, 1:, 1:] - u[:, :-1, 1:]))[:, 0]
    lu0 = residuals.godunov1(u[:, [0, 0]], 1.0, 0.1)[:, 0]
    cn = u[:, 1:, 1:] - u[:, :-1, 1:] + 0.01 * (lu + lu0)
    torch.testing.assert_close(residuals.tvd2_cn(u, 0.02, 0.1), cn, rtol=0, atol=1e-15)


@pytest.mark.parametrize("scheme", ["godunov1", "tvd2", "tvd2_cn"])
def test_time_integrated_loss_is_the_running_sum_of_the_residual_with_the_same_zero(scheme):
    grid, _, u0 = _setup(32)
    discrete = torch.tensor(marching.march(scheme, u0, grid.nt, grid.dt, grid.dx))
    u0 = torch.tensor(u0)
    point = Burgers(grid, scheme=scheme)
    integrated = Burgers(grid, scheme=scheme, residual_form="time_integrated")
    assert integrated.loss_terms(discrete, discrete, u0)["pde"].max() < 1e-20
    # Away from the discrete solution the integrated loss sees u_j - u_0 + dt * sum(flux differences):
    # for a field constant in time that is j dt times the spatial operator, row after row.
    frozen = u0[:, None, :].expand(-1, grid.nt, -1).clone()
    r = residuals.residual(scheme, frozen, grid.dt, grid.dx)
    running = torch.arange(1, grid.nt, dtype=r.dtype)[None, :, None] * r[:, :1]
    if scheme != "tvd2":  # BDF2's first row is backward Euler, so its rows are not all equal
        torch.testing.assert_close(r, r[:, :1].expand_as(r))
        expected = running.square().mean(dim=(1, 2))
        torch.testing.assert_close(integrated.loss_terms(frozen, frozen, u0)["pde"], expected)
    assert (integrated.loss_terms(frozen, frozen, u0)["pde"] > point.loss_terms(frozen, frozen, u0)["pde"]).all()
