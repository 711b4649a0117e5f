"""Checks of the batched first-order Godunov finite-volume solver."""

from __future__ import annotations

import numpy as np
import pytest

from diffnet.numerics.exact import cosine_family
from diffnet.numerics.fluxes import godunov_flux
from diffnet.numerics.fv import cell_averages, cells_to_nodes, godunov_fv, interface_fluxes


def characteristics(u0, du0, x: np.ndarray, t: float) -> np.ndarray:
    """Smooth solution u = u0(x - t u) for t < t_b: Newton kept in the bracket [0, 1], to 1e-12."""
    lo, hi = np.zeros(x.shape), np.ones(x.shape)
    u = np.full(x.shape, 0.5)
    for _ in range(200):
        y = np.maximum(x - t * u, 0.0)[None, :]
        g = u - u0(y)[0]
        lo, hi = np.where(g <= 0, u, lo), np.where(g <= 0, hi, u)
        new = u - g / (1.0 + t * du0(y)[0])
        new = np.where((new >= lo) & (new <= hi), new, 0.5 * (lo + hi))
        step, u = np.abs(new - u), new
        if step.max() <= 1e-12:
            return u
    raise AssertionError("characteristics Newton did not converge")


def bump(y: np.ndarray) -> np.ndarray:
    """sin^2 bump on [0.1, 0.4], zero elsewhere: the support stays below 0.4 + T < 1 up to T = 1/3."""
    z = np.clip((y - 0.1) / 0.3, 0.0, 1.0)
    return np.sin(np.pi * z) ** 2


def test_mass_is_conserved_without_outflow():
    m = 1000
    edges = np.linspace(0.0, 1.0, m + 1)
    xc = 0.5 * (edges[1:] + edges[:-1])
    u0 = np.stack([bump(xc), 0.5 * bump(xc)])
    t_out = np.linspace(0.0, 1.0 / 3.0, 7)
    u = godunov_fv(u0, 1.0 / m, t_out)
    mass = u.sum(axis=2) / m
    # Left flux F(0, u_1) = 0 for u_1 >= 0 and nothing reaches x = 1: only round-off may change mass.
    np.testing.assert_allclose(mass, np.broadcast_to(mass[:, :1], mass.shape), rtol=1e-13, atol=0)
    assert np.abs(u[:, -1] - u0).max() > 0.1  # the solution did move


def test_one_step_changes_mass_by_boundary_fluxes():
    m = 400
    edges = np.linspace(0.0, 1.0, m + 1)
    # c = 3.25 gives u0(1) = 1/2, so the outflow flux is 1/8; a negative-valued sample exercises the
    # left ghost (transonic inflow) as well.
    _, U0, _ = cosine_family(np.array([3.25]))
    u0 = np.concatenate([cell_averages(U0, edges), -cell_averages(U0, edges)])
    dt = 0.5 / m  # below cfl dx / max|u| = 0.9 dx, so exactly one step
    u = godunov_fv(u0, 1.0 / m, np.array([0.0, dt]))
    np.testing.assert_array_equal(u[:, 0], u0)
    f = interface_fluxes(u0)
    np.testing.assert_allclose(f[:, 0], godunov_flux(np.zeros(2), u0[:, 0]))
    np.testing.assert_allclose(f[:, -1], 0.5 * u0[:, -1] ** 2)
    change = (u[:, 1] - u0).sum(axis=1) / m
    np.testing.assert_allclose(change, -dt * (f[:, -1] - f[:, 0]), rtol=1e-12, atol=1e-16)
    assert abs(change[0]) > 1e-5


@pytest.mark.parametrize("cfl", [0.5, 0.9, 1.0])
def test_maximum_principle(cfl):
    m = 500
    edges = np.linspace(0.0, 1.0, m + 1)
    rng = np.random.default_rng(0)
    smooth = cell_averages(cosine_family(np.array([6.0]))[1], edges)[0]
    rough = rng.uniform(0.0, 1.0, m)  # jumps everywhere
    mixed = rng.uniform(-1.0, 1.0, m)  # signs change: transonic shocks and rarefactions
    u0 = np.stack([smooth, rough, mixed])
    u = godunov_fv(u0, 1.0 / m, np.linspace(0.0, 1.0 / 3.0, 5), cfl=cfl)
    # Monotone scheme: values stay within the range of the data and the inflow state 0.
    lo = np.minimum(u0.min(axis=1), 0.0)[:, None, None]
    hi = np.maximum(u0.max(axis=1), 0.0)[:, None, None]
    assert np.all(u >= lo - 1e-15) and np.all(u <= hi + 1e-15)


def test_first_order_convergence_in_smooth_regime():
    c = 3.0
    u0, U0, du0 = cosine_family(np.array([c]))
    t_end = 0.8 / (np.pi * c)  # before the first shock at t_b = 1 / (pi c)
    errs = []
    for m in (200, 400, 800, 1600):
        edges = np.linspace(0.0, 1.0, m + 1)
        u = godunov_fv(cell_averages(U0, edges), 1.0 / m, np.array([t_end]))[0, -1]
        # Centre values differ from cell averages by O(dx^2), invisible next to the O(dx) error.
        errs.append(np.abs(u - characteristics(u0, du0, 0.5 * (edges[1:] + edges[:-1]), t_end)).mean())
    order = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    # Measured 0.95-0.98 (L1 errors 1.6e-2 .. 1.1e-3).
    assert np.all((order > 0.8) & (order < 1.2)), (errs, order)


def test_output_times_and_nodes():
    m = 256
    edges = np.linspace(0.0, 1.0, m + 1)
    _, U0, _ = cosine_family(np.array([3.0, 5.0]))
    u0 = cell_averages(U0, edges)
    t_out = np.array([0.0, 0.0, 0.01, 0.01, 0.2])
    u = godunov_fv(u0, 1.0 / m, t_out)
    assert u.shape == (2, 5, m)
    np.testing.assert_array_equal(u[:, 0], u0)
    np.testing.assert_array_equal(u[:, 1], u0)
    np.testing.assert_array_equal(u[:, 2], u[:, 3])
    # Node sampling: linear between centres, the inflow value 0 at x = 0, constant past the last centre.
    x = np.array([0.0, 0.5 / m, 1.0 / m, 1.0 - 0.25 / m, 1.0])
    v = cells_to_nodes(u0, edges, x)
    np.testing.assert_allclose(v[:, 0], 0.0)
    np.testing.assert_allclose(v[:, 1], u0[:, 0])
    np.testing.assert_allclose(v[:, 2], 0.5 * (u0[:, 0] + u0[:, 1]))
    np.testing.assert_allclose(v[:, 3], u0[:, -1])
    np.testing.assert_allclose(v[:, 4], u0[:, -1])
    with pytest.raises(ValueError):
        godunov_fv(u0, 1.0 / m, np.array([0.2, 0.1]))
