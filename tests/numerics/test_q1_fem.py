"""Tests of the Q1 FEM reference: layout, assembly agreement, exact and manufactured solutions, solvers."""

from __future__ import annotations

import numpy as np
import pytest

from diffnet.numerics import q1_fem
from diffnet.numerics.energy import gauss_points
from diffnet.numerics.kl import kl_log_nu_function
from diffnet.numerics.q1_fem import (
    assemble_skfem,
    assemble_stencil,
    dirichlet_mask,
    q1_errors,
    restrict_to_coarse,
    solve_poisson,
    solve_q1,
    solve_reaction_diffusion,
)

LOG_NU = kl_log_nu_function(np.array([1.5, -2.0, 0.7, 1.0]), 0.5)


def zero(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.zeros(np.broadcast(x, y).shape)


def nu_kl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.exp(LOG_NU(x, y))


def sin_source(kappa: float):
    return lambda x, y: (2 * np.pi**2 + kappa**2) * np.sin(np.pi * x) * np.sin(np.pi * y)


def orders(errors: list[float]) -> np.ndarray:
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


def test_dofs_map_to_the_y_x_grid() -> None:
    nx, ny = 5, 3
    basis = q1_fem.grid_basis(nx, ny)
    xx, yy = np.meshgrid(np.linspace(0, 1, nx), np.linspace(0, 1, ny))
    # DOF k of the Q1 basis sits at node (j, i) = divmod(k, nx), so vectors reshape to (ny, nx).
    np.testing.assert_allclose(basis.doflocs[0].reshape(ny, nx), xx, atol=1e-15)
    np.testing.assert_allclose(basis.doflocs[1].reshape(ny, nx), yy, atol=1e-15)
    # and the solver output follows it: a field that depends on y only comes back constant along rows
    u, _ = solve_q1(lambda x, y: 1.0 + 0 * x, nx, ny, g=lambda x, y: y + 0 * x, solver="direct")
    np.testing.assert_allclose(u, yy, atol=1e-14)


def test_quadrature_points_are_the_energy_gauss_points() -> None:
    nx, ny = 6, 4
    basis = q1_fem.grid_basis(nx, ny)
    x, y = np.asarray(basis.global_coordinates())  # (cells, 4 points)
    # cells are (j, i) row-major, points (q, p) row-major: reorder to the (2(ny-1), 2(nx-1)) Gauss grid
    gx = x.reshape(ny - 1, nx - 1, 2, 2).transpose(0, 2, 1, 3).reshape(2 * (ny - 1), 2 * (nx - 1))
    gy = y.reshape(ny - 1, nx - 1, 2, 2).transpose(0, 2, 1, 3).reshape(2 * (ny - 1), 2 * (nx - 1))
    ex, ey = np.meshgrid(gauss_points(nx), gauss_points(ny))
    np.testing.assert_allclose(gx, ex, atol=1e-15)
    np.testing.assert_allclose(gy, ey, atol=1e-15)
    np.testing.assert_allclose(basis.dx, 0.25 / ((nx - 1) * (ny - 1)), rtol=1e-14)


@pytest.mark.parametrize("kappa", [0.0, 2.5])
def test_stencil_assembly_equals_skfem(kappa: float) -> None:
    nx, ny = 13, 8
    f = sin_source(kappa)
    a_sk, b_sk = assemble_skfem(nu_kl, nx, ny, kappa=kappa, f=f)
    a_st, b_st = assemble_stencil(nu_kl, nx, ny, kappa=kappa, f=f)
    assert a_sk.shape == a_st.shape == (nx * ny, nx * ny)
    assert abs(a_sk - a_st).max() <= 1e-12 * abs(a_sk).max()
    assert np.abs(b_sk - b_st).max() <= 1e-12 * np.abs(b_sk).max()
    assert abs(a_st - a_st.T).max() <= 1e-14 * abs(a_st).max()


@pytest.mark.parametrize("solver", ["amg", "direct"])
@pytest.mark.parametrize("assembly", ["skfem", "stencil"])
def test_poisson_with_unit_diffusivity_is_linear(solver: str, assembly: str) -> None:
    n = 17
    u, timing = solve_poisson(zero, n, solver=solver, assembly=assembly)
    assert u.shape == (n, n)
    np.testing.assert_allclose(u, np.broadcast_to(1.0 - np.linspace(0, 1, n), (n, n)), atol=1e-9)
    if solver == "direct":
        assert timing.setup == 0.0
        assert timing.iterations == 0
    else:
        assert 0 < timing.iterations < 30
    assert min(timing.assembly, timing.solve) > 0


def test_amg_and_direct_agree() -> None:
    n, kappa = 33, 3.0
    u_amg, t_amg = solve_poisson(LOG_NU, n)
    u_lu, _ = solve_poisson(LOG_NU, n, solver="direct", assembly="stencil")
    np.testing.assert_allclose(u_amg, u_lu, atol=1e-8)
    assert t_amg.iterations < 30
    v_amg, _ = solve_reaction_diffusion(LOG_NU, kappa, sin_source(kappa), n, assembly="stencil")
    v_lu, _ = solve_reaction_diffusion(LOG_NU, kappa, sin_source(kappa), n, solver="direct")
    np.testing.assert_allclose(v_amg, v_lu, atol=1e-8 * np.abs(v_lu).max())


def test_amg_solve_is_reproducible() -> None:
    first, t1 = solve_poisson(LOG_NU, 33)
    second, t2 = solve_poisson(LOG_NU, 33)
    assert np.array_equal(first, second)
    assert t1.iterations == t2.iterations
    # A tighter tolerance changes the iterate by about the old tolerance and no more.
    tight, t3 = solve_poisson(LOG_NU, 33, tol=1e-13)
    assert t3.iterations > t1.iterations
    assert np.abs(tight - first).max() < 1e-8


# Manufactured solutions with a non-constant nu = 1 + x^2 + sin(3y)/2 (in [0.5, 2.5]), f derived by hand.
def nu_ms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 1.0 + x**2 + 0.5 * np.sin(3 * y)


def div_flux(u_x, u_y, lap_u, x, y):
    """div(nu grad u) = nu_x u_x + nu_y u_y + nu lap u."""
    return 2 * x * u_x + 1.5 * np.cos(3 * y) * u_y + nu_ms(x, y) * lap_u


# Case "all": u = e^x sin(2y), Dirichlet data on the whole boundary (nonzero), with a reaction term.
def u_all(x, y):
    return np.exp(x) * np.sin(2 * y)


def grad_all(x, y):
    return np.exp(x) * np.sin(2 * y), 2 * np.exp(x) * np.cos(2 * y)


# Case "left_right": u = e^x cos(pi y) + x has u_y = 0 at y = 0, 1, matching the natural condition there.
def u_lr(x, y):
    return np.exp(x) * np.cos(np.pi * y) + x


def grad_lr(x, y):
    return np.exp(x) * np.cos(np.pi * y) + 1, -np.pi * np.exp(x) * np.sin(np.pi * y)


def lap_all(x, y):
    return -3 * u_all(x, y)


def lap_lr(x, y):
    return (1 - np.pi**2) * np.exp(x) * np.cos(np.pi * y)


@pytest.mark.parametrize(
    ("dirichlet", "kappa", "exact", "grad", "lap"),
    [("all", 2.0, u_all, grad_all, lap_all), ("left_right", 0.0, u_lr, grad_lr, lap_lr)],
)
def test_manufactured_solution_converges_at_optimal_order(dirichlet, kappa, exact, grad, lap) -> None:
    def f(x, y):
        return -div_flux(*grad(x, y), lap(x, y), x, y) + kappa**2 * exact(x, y)

    l2, h1 = [], []
    for n in (9, 17, 33, 65):
        u, _ = solve_q1(nu_ms, n, kappa=kappa, f=f, g=exact, dirichlet=dirichlet)
        e0, e1 = q1_errors(u, exact, grad)
        l2.append(e0)
        h1.append(e1)
    assert np.all(orders(l2) > 1.9), (l2, orders(l2))
    assert np.all(orders(h1) > 0.95), (h1, orders(h1))


def test_reaction_diffusion_with_unit_nu_converges_to_sin_sin() -> None:
    kappa = 2.0
    l2, nodal, self_diff = [], [], []
    previous = None
    for n in (9, 17, 33, 65):
        u, _ = solve_reaction_diffusion(zero, kappa, sin_source(kappa), n)
        xx, yy = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
        exact = np.sin(np.pi * xx) * np.sin(np.pi * yy)
        l2.append(q1_errors(u, lambda x, y: np.sin(np.pi * x) * np.sin(np.pi * y), grad_sin)[0])
        nodal.append(np.abs(u - exact).max())
        if previous is not None:
            self_diff.append(np.abs(restrict_to_coarse(u) - previous).max())
        previous = u
    assert np.all(orders(l2) > 1.9)
    assert np.all(orders(nodal) > 1.9)
    # the refinement difference (what is available without an exact solution) shrinks at the same rate
    assert np.all(orders(self_diff) > 1.9)


def grad_sin(x, y):
    return np.pi * np.cos(np.pi * x) * np.sin(np.pi * y), np.pi * np.sin(np.pi * x) * np.cos(np.pi * y)


def test_error_norms_vanish_for_a_bilinear_solution() -> None:
    u_exact = lambda x, y: 1 + 2 * x - y + 3 * x * y  # noqa: E731
    xx, yy = np.meshgrid(np.linspace(0, 1, 6), np.linspace(0, 1, 4))
    e0, e1 = q1_errors(u_exact(xx, yy), u_exact, lambda x, y: (2 + 3 * y, -1 + 3 * x))
    assert e0 < 1e-14
    assert e1 < 1e-13


def test_restrict_to_coarse_is_injection() -> None:
    fine = np.arange(5 * 7, dtype=float).reshape(5, 7)
    coarse = restrict_to_coarse(fine)
    assert coarse.shape == (3, 4)
    assert coarse[1, 2] == fine[2, 4]
    assert restrict_to_coarse(np.zeros((2, 9, 9))).shape == (2, 5, 5)
    with pytest.raises(ValueError, match="odd"):
        restrict_to_coarse(np.zeros((4, 5)))


def test_dirichlet_masks_and_argument_checks() -> None:
    assert dirichlet_mask(4, 3, "all").sum() == 2 * 4 + 2 * 3 - 4
    lr = dirichlet_mask(4, 3, "left_right")
    assert lr[:, 0].all()
    assert lr[:, -1].all()
    assert not lr[:, 1:-1].any()
    with pytest.raises(ValueError):
        solve_poisson(zero, 5, solver="gmres")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        solve_poisson(zero, 5, assembly="fast")  # type: ignore[arg-type]
