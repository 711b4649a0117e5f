"""Quantities of interest and family error measures against values worked out by hand (docs/mutation.md).

On a 3 x 3 grid (h = 1/2) the one interior node's hat function phi has int phi = h^2 = 1/4 and
int |grad phi|^2 = 8/3 (the Q1 stiffness diagonal, whatever h), and the 2 x 2 Gauss rule is exact for
products of Q1 gradients, so every number below is exact. Predictions come as float32 (the network's
output) and every quantity must still be computed in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffnet import problems
from diffnet.numerics import exact, kl, q1
from diffnet.problems import Burgers, Grid

X3 = np.linspace(0.0, 1.0, 3)
HAT = np.zeros((3, 3))
HAT[1, 1] = 1.0  # the interior node's hat function


def test_burgers_qoi_is_the_kinetic_energy_of_the_last_row_by_the_trapezoidal_rule():
    p = Burgers(Grid(nx=3, nt=2, t_end=0.5))
    u = np.array([[[9.0, 9.0, 9.0], [0.0, 1.0, 2.0]],    # E = 1/2 (0/2 + 1/2 + 4/2 / 2) = 0.75
                  [[9.0, 9.0, 9.0], [1.0, 1.0, 1.0]]],   # E = 1/2
                 dtype=np.float32)
    q = p.qoi(u, {"c": np.array([3.0, 4.0])})
    assert q.dtype == np.float64
    np.testing.assert_allclose(q, [0.75, 0.5], rtol=1e-15)
    u5 = np.zeros((1, 2, 5))
    u5[0, -1] = [0.0, 1.0, 1.0, 1.0, 0.0]  # dx = 1/4: 1/2 (1/4 + 1/4 + 1/4) = 3/8
    assert Burgers(Grid(nx=5, nt=2, t_end=0.5)).qoi(u5, {})[0] == pytest.approx(3 / 8, rel=1e-15)


def test_burgers_exact_qoi_before_the_shocks_is_the_initial_energy():
    # u0 = (1 - cos 2 pi c x)/2 with integer c: int u0^2 / 2 = 3/16. Before the shocks form (t_b = 1/(pi c))
    # the solution is smooth, energy is conserved, and no energy leaves at x = 1 (u = 0 there).
    p = Burgers(Grid(nx=17, nt=5, t_end=0.02))
    np.testing.assert_allclose(p.exact_qoi(np.array([3.0, 4.0])), [3 / 16, 3 / 16], rtol=1e-7)
    # After them the shocks have dissipated energy: less than the initial 3/16, more for lower c; and the
    # value is the converged quadrature (a shock costs the trapezoidal rule about jump^2 h / 4).
    c = np.array([3.0, 4.0])
    late = Burgers(Grid(nx=17, nt=5, t_end=0.3)).exact_qoi(c)
    assert np.all(late < 3 / 16 - 0.01) and late[0] > late[1]
    x = np.linspace(0.0, 1.0, 2**17 + 1)
    u0, primitive, du0 = exact.cosine_family(c)
    fine = np.trapezoid(0.5 * exact.lax_oleinik(u0, primitive, x, np.array([0.3]), du0=du0)[:, 0] ** 2, x)
    np.testing.assert_allclose(late, fine, rtol=0, atol=1e-5)


def test_poisson_qoi_of_the_lift_is_the_mean_diffusivity_at_the_gauss_points():
    p = problems.Poisson(n=3)
    omega = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, -0.5, 0.25, 2.0]])
    nu = p.nu_at_gauss_points(omega, 3)
    assert nu.shape == (2, 4, 4) and nu.dtype == np.float64
    np.testing.assert_array_equal(nu[0], 1.0)
    g = np.array([q1.G0 / 2, q1.G1 / 2, 0.5 + q1.G0 / 2, 0.5 + q1.G1 / 2])
    np.testing.assert_allclose(nu[1], np.exp(kl.log_diffusivity(omega[1:], g, g, p.eta)[0]), rtol=1e-14)
    lift = np.broadcast_to(1.0 - X3, (2, 3, 3)).astype(np.float32)  # |grad u|^2 = 1: K = int nu
    k = p.qoi(lift, {"omega": omega})
    assert k.dtype == np.float64
    np.testing.assert_allclose(k, [1.0, nu[1].mean()], rtol=1e-14)
    # With the hat added, int |grad(1 - x + phi)|^2 = 1 + 2 int grad(1 - x).grad phi + 8/3 = 1 + 0 + 8/3.
    assert p.qoi((1.0 - X3 + HAT)[None], {"omega": omega[:1]})[0] == pytest.approx(11 / 3, rel=1e-14)


def test_poisson_field_errors_against_hand_computed_values():
    p = problems.Poisson(n=3)
    truth = np.stack([1.0 - X3 + 0.5 * HAT, 1.0 - X3 + HAT])
    u = (truth + 0.1 * HAT).astype(np.float32)
    np.testing.assert_array_equal(p.lift(), np.broadcast_to(1.0 - X3, (3, 3)))
    got = p.field_errors(u, truth, {"omega": np.zeros((2, 4))})
    assert set(got) == {"rel_l2_deviation", "rel_h1"}
    # The deviation from the lift 1 - x is 0.5 phi (1 phi): nodal norm 0.5 (1); the error 0.1 phi: 0.1.
    np.testing.assert_allclose(got["rel_l2_deviation"], [0.2, 0.1], rtol=1e-6)
    # |0.1 phi|^2_H1 = 0.01 * 8/3; |1 - x + a phi|^2_H1 = 1 + a^2 8/3 (grad(1 - x).grad phi integrates to 0).
    np.testing.assert_allclose(got["rel_h1"], [math.sqrt(0.01 * 8 / 3 / (1 + 0.25 * 8 / 3)),
                                               math.sqrt(0.01 * 8 / 3 / (1 + 8 / 3))], rtol=1e-6)


def test_reaction_diffusion_qoi_and_field_errors_against_hand_computed_values():
    p = problems.ReactionDiffusion(n=3)
    hats = np.stack([HAT, 2 * HAT, HAT + 1.0]).astype(np.float32)
    q = p.qoi(hats, {})
    assert q.dtype == np.float64
    np.testing.assert_allclose(q, [0.25, 0.5, 1.25], rtol=1e-15)  # int phi = h^2, int 1 = 1
    got = p.field_errors((0.6 * HAT)[None], (0.5 * HAT)[None], {})
    assert set(got) == {"rel_h1"} and got["rel_h1"][0] == pytest.approx(0.2, rel=1e-12)


def test_relative_h1_error_is_the_ratio_of_the_seminorms():
    u = (1.0 - X3 + 0.5 * HAT)[None]
    e = 0.3 * HAT[None]
    assert q1.relative_h1_seminorm_error(u + e, u)[0] == pytest.approx(math.sqrt(0.09 * 8 / 3 / (5 / 3)))
    assert q1.dirichlet_integral(HAT[None])[0] == pytest.approx(8 / 3, rel=1e-14)
    assert q1.integral(HAT[None])[0] == pytest.approx(0.25, rel=1e-15)


def test_gauss_interpolation_along_any_axis_numbering():
    d = np.arange(12.0).reshape(3, 4)
    for axis, negative in ((0, -2), (1, -1)):
        np.testing.assert_array_equal(q1._at_gauss(d, axis), q1._at_gauss(d, negative))
    rows = q1._at_gauss(d, 0)
    assert rows.shape == (4, 4)
    np.testing.assert_allclose(rows[:2, 0], [4 * q1.G0, 4 * q1.G1], rtol=1e-15)  # between 0 and 4
    cols = q1._at_gauss(d, 1)
    assert cols.shape == (3, 6)
    np.testing.assert_allclose(cols[1, :2], [4 + q1.G0, 4 + q1.G1], rtol=1e-15)  # between 4 and 5
    with pytest.raises(ValueError, match="need at least 2 nodes, got 1"):
        q1.gauss_points(1)


def test_float32_predictions_are_integrated_in_float64():
    # The network's float32 field, cast to float64 before any arithmetic: the same numbers as the float64 field.
    u32 = (1.0 - X3 + 0.3 * HAT + np.array([[0.0, 0.01, 0.0], [0.0, 0.0, 0.0], [0.0, 0.07, 0.0]]))
    u32 = np.stack([u32, 0.9 * u32]).astype(np.float32)
    u64 = u32.astype(np.float64)
    omega = np.array([[1.0, -0.5, 0.25, 2.0], [0.3, 0.0, -1.0, 0.5]])
    p = problems.Poisson(n=3)
    np.testing.assert_allclose(p.qoi(u32, {"omega": omega}), p.qoi(u64, {"omega": omega}), rtol=1e-15)
    nu = p.nu_at_gauss_points(omega, 3)
    np.testing.assert_allclose(q1.dirichlet_form(u32, u32[::-1], nu), q1.dirichlet_form(u64, u64[::-1], nu),
                               rtol=1e-15)
    for n_out in (3, 5):
        fine = q1.interpolate(u32, n_out)
        assert fine.dtype == np.float64
        np.testing.assert_allclose(fine, q1.interpolate(u64, n_out), rtol=1e-15)


def test_two_nodes_are_enough_for_the_gauss_points():
    np.testing.assert_allclose(q1.gauss_points(2), [q1.G0, q1.G1], rtol=1e-15)
    np.testing.assert_allclose(q1.gauss_points(3), [q1.G0 / 2, q1.G1 / 2, 0.5 + q1.G0 / 2, 0.5 + q1.G1 / 2],
                               rtol=1e-15)
