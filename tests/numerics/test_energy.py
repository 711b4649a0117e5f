"""Tests of the torch Q1 energies: exactness on bilinear fields, and identity with the FEM discrete problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.polynomial import polynomial as P
from scipy.signal import convolve2d

from diffnet.numerics import q1_fem
from diffnet.numerics.energy import (
    dirichlet_energy,
    gauss_points,
    q1_at_gauss,
    q1_gradient_at_gauss,
    reaction_diffusion_energy,
)
from diffnet.numerics.kl import kl_log_nu_function

ETA = 0.5
OMEGA = np.array([1.5, -2.0, 0.7, 1.0])

# Polynomials in (x, y) as coefficient arrays c[a, b] of x^a y^b (numpy.polynomial.polynomial 2D form).
U = np.array([[0.3, -0.7], [1.2, 2.1]])  # 0.3 + 1.2 x - 0.7 y + 2.1 x y
F = np.array([[0.4, 0.0], [-1.0, 3.0]])  # 0.4 - x + 3 x y


def integral(c: np.ndarray) -> float:
    """int_[0,1]^2 of the polynomial with coefficients c."""
    a = np.arange(c.shape[0])[:, None] + 1.0
    b = np.arange(c.shape[1])[None, :] + 1.0
    return float(np.sum(c / (a * b)))


def nodal(c: np.ndarray, nx: int, ny: int) -> np.ndarray:
    xx, yy = np.meshgrid(np.linspace(0, 1, nx), np.linspace(0, 1, ny))
    return P.polyval2d(xx, yy, c)


def at_gauss(field, nx: int, ny: int) -> np.ndarray:
    gx, gy = np.meshgrid(gauss_points(nx), gauss_points(ny))
    return field(gx, gy)


def test_gauss_points_two_per_cell_in_order() -> None:
    n = 5
    g = gauss_points(n)
    h = 1.0 / (n - 1)
    assert g.shape == (2 * (n - 1),)
    assert np.all(np.diff(g) > 0)
    local = (g.reshape(n - 1, 2) - np.arange(n - 1)[:, None] * h) / h
    np.testing.assert_allclose(local, [[0.5 - 0.5 / np.sqrt(3), 0.5 + 0.5 / np.sqrt(3)]] * (n - 1), atol=1e-15)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_q1_interpolants_are_exact_for_bilinear_fields(dtype: torch.dtype, tol: float) -> None:
    nx, ny = 6, 4  # non-square, so an x/y swap cannot pass
    u = torch.tensor(np.stack([nodal(U, nx, ny), -2.0 * nodal(U, nx, ny)]), dtype=dtype)
    gx, gy = np.meshgrid(gauss_points(nx), gauss_points(ny))
    values = q1_at_gauss(u)
    ux, uy = q1_gradient_at_gauss(u, 1.0 / (nx - 1), 1.0 / (ny - 1))
    assert values.shape == ux.shape == uy.shape == (2, 2 * (ny - 1), 2 * (nx - 1))
    assert values.dtype == ux.dtype == dtype
    for k, scale in enumerate((1.0, -2.0)):
        np.testing.assert_allclose(values[k].numpy(), scale * P.polyval2d(gx, gy, U), atol=tol * 10)
        np.testing.assert_allclose(ux[k].numpy(), scale * P.polyval2d(gx, gy, P.polyder(U, axis=0)), atol=tol * 10)
        np.testing.assert_allclose(uy[k].numpy(), scale * P.polyval2d(gx, gy, P.polyder(U, axis=1)), atol=tol * 10)


@pytest.mark.parametrize(("dtype", "rel"), [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_energies_of_bilinear_fields_equal_the_integrals(dtype: torch.dtype, rel: float) -> None:
    nx, ny = 5, 4
    nu, kappa = 1.7, 1.5
    ux, uy = P.polyder(U, axis=0), P.polyder(U, axis=1)
    exact_dirichlet = 0.5 * nu * (integral(convolve2d(ux, ux)) + integral(convolve2d(uy, uy)))
    exact_rd = exact_dirichlet + 0.5 * kappa**2 * integral(convolve2d(U, U)) - integral(convolve2d(F, U))

    u = torch.tensor(nodal(U, nx, ny)[None], dtype=dtype)
    nu_q = torch.full((1, 2 * (ny - 1), 2 * (nx - 1)), nu, dtype=dtype)
    f_q = torch.tensor(at_gauss(lambda x, y: P.polyval2d(x, y, F), nx, ny)[None], dtype=dtype)
    h = (1.0 / (nx - 1), 1.0 / (ny - 1))
    e_d = dirichlet_energy(u, nu_q, *h)
    e_rd = reaction_diffusion_energy(u, nu_q, torch.tensor([kappa], dtype=dtype), f_q, *h)
    assert e_d.shape == e_rd.shape == (1,)
    assert e_d.dtype == dtype
    assert e_d.item() == pytest.approx(exact_dirichlet, rel=rel)
    assert e_rd.item() == pytest.approx(exact_rd, rel=rel)


def kl_nu_q(n: int) -> tuple[np.ndarray, q1_fem.Field]:
    log_nu = kl_log_nu_function(OMEGA, ETA)
    return np.exp(at_gauss(log_nu, n, n)), log_nu


def rd_source(kappa: float):
    return lambda x, y: (2 * np.pi**2 + kappa**2) * np.sin(np.pi * x) * np.sin(np.pi * y)


def test_energy_is_the_fem_quadratic_form() -> None:
    """For any nodal u: E(u) = 1/2 u^T A u - b^T u with the FEM matrix and load (same discrete problem)."""
    n, kappa = 9, 2.0
    nu_q, log_nu = kl_nu_q(n)
    a, b = q1_fem.assemble_skfem(lambda x, y: np.exp(log_nu(x, y)), n, n, kappa=kappa, f=rd_source(kappa))
    u = np.random.default_rng(1).normal(size=(3, n, n))
    f_q = at_gauss(rd_source(kappa), n, n)
    energy = reaction_diffusion_energy(
        torch.tensor(u),
        torch.tensor(np.broadcast_to(nu_q, (3, *nu_q.shape))),
        torch.full((3,), kappa, dtype=torch.float64),
        torch.tensor(np.broadcast_to(f_q, (3, *f_q.shape))),
        1 / (n - 1),
        1 / (n - 1),
    )
    flat = u.reshape(3, -1)
    expected = 0.5 * np.einsum("bi,bi->b", flat, (a @ flat.T).T) - flat @ b
    np.testing.assert_allclose(energy.numpy(), expected, rtol=1e-12)


def gradient(energy_fn, u: np.ndarray) -> np.ndarray:
    ut = torch.tensor(u[None], requires_grad=True)
    (g,) = torch.autograd.grad(energy_fn(ut).sum(), ut)
    return g[0].numpy()


@pytest.mark.parametrize("solver", ["amg", "direct"])
def test_fem_solution_is_stationary_for_the_dirichlet_energy(solver: str) -> None:
    n = 33
    nu_q, log_nu = kl_nu_q(n)
    u_fem, _ = q1_fem.solve_poisson(log_nu, n, solver=solver)
    free = ~q1_fem.dirichlet_mask(n, n, "left_right")
    nu_t = torch.tensor(nu_q[None])

    def energy(u: torch.Tensor) -> torch.Tensor:
        return dirichlet_energy(u, nu_t, 1 / (n - 1), 1 / (n - 1))

    guess = np.broadcast_to(1.0 - np.linspace(0, 1, n), (n, n)).copy()
    g_fem = np.linalg.norm(gradient(energy, u_fem)[free])
    g_guess = np.linalg.norm(gradient(energy, guess)[free])
    assert g_guess > 1e-3
    assert g_fem / g_guess < 1e-8


@pytest.mark.parametrize("solver", ["amg", "direct"])
def test_fem_solution_is_stationary_for_the_reaction_diffusion_energy(solver: str) -> None:
    n, kappa = 33, 3.0
    nu_q, log_nu = kl_nu_q(n)
    u_fem, _ = q1_fem.solve_reaction_diffusion(log_nu, kappa, rd_source(kappa), n, solver=solver)
    free = ~q1_fem.dirichlet_mask(n, n, "all")
    f_q = torch.tensor(at_gauss(rd_source(kappa), n, n)[None])
    nu_t = torch.tensor(nu_q[None])

    def energy(u: torch.Tensor) -> torch.Tensor:
        k = torch.tensor([kappa], dtype=torch.float64)
        return reaction_diffusion_energy(u, nu_t, k, f_q, 1 / (n - 1), 1 / (n - 1))

    g_fem = np.linalg.norm(gradient(energy, u_fem)[free])
    g_zero = np.linalg.norm(gradient(energy, np.zeros((n, n)))[free])
    assert g_fem / g_zero < 1e-8


def test_the_one_half_matters() -> None:
    """int (nu|grad u|^2 + kappa^2 u^2 - f u) without the 1/2 is minimised by half the FEM solution."""
    n, kappa = 9, 2.0
    h = 1 / (n - 1)
    nu_q, log_nu = kl_nu_q(n)
    nu_t = torch.tensor(nu_q[None])
    f_q = torch.tensor(at_gauss(rd_source(kappa), n, n)[None])
    k = torch.tensor([kappa], dtype=torch.float64)

    def embed(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(z.view(1, n - 2, n - 2), (1, 1, 1, 1))  # u = 0 on the boundary

    def correct(z: torch.Tensor) -> torch.Tensor:
        return reaction_diffusion_energy(embed(z), nu_t, k, f_q, h, h).sum()

    def without_half(z: torch.Tensor) -> torch.Tensor:
        u = embed(z)
        ux, uy = q1_gradient_at_gauss(u, h, h)
        uq = q1_at_gauss(u)
        return (0.25 * h * h * (nu_t * (ux**2 + uy**2) + k**2 * uq**2 - f_q * uq)).sum()

    def minimiser(fn) -> np.ndarray:
        # Both are quadratic in z: J(z) = J(0) + g.z + z.H z / 2, so the minimiser is -H^-1 g.
        z0 = torch.zeros((n - 2) ** 2, dtype=torch.float64)
        hess = torch.autograd.functional.hessian(fn, z0).numpy()
        (g,) = torch.autograd.grad(fn(z0.requires_grad_()), z0)
        return embed(torch.tensor(np.linalg.solve(hess, -g.numpy()))).numpy()[0]

    u_fem, _ = q1_fem.solve_reaction_diffusion(log_nu, kappa, rd_source(kappa), n, solver="direct")
    scale = np.abs(u_fem).max()
    np.testing.assert_allclose(minimiser(correct), u_fem, atol=1e-12 * scale)
    np.testing.assert_allclose(minimiser(without_half), 0.5 * u_fem, atol=1e-12 * scale)


def test_energy_is_batched_and_differentiable_in_nu() -> None:
    n = 7
    rng = np.random.default_rng(2)
    u = torch.tensor(rng.normal(size=(4, n, n)))
    nu_q = torch.tensor(rng.uniform(0.5, 2.0, size=(4, 2 * (n - 1), 2 * (n - 1))), requires_grad=True)
    e = dirichlet_energy(u, nu_q, 1 / (n - 1), 1 / (n - 1))
    singles = torch.cat([dirichlet_energy(u[i : i + 1], nu_q[i : i + 1], 1 / (n - 1), 1 / (n - 1)) for i in range(4)])
    # (np.testing rather than torch.testing: the latter's first call costs seconds of imports)
    np.testing.assert_allclose(e.detach().numpy(), singles.detach().numpy(), rtol=1e-14)
    # E is linear in nu with dE/dnu_q = w |grad u_q|^2 / 2
    (g,) = torch.autograd.grad(e.sum(), nu_q)
    ux, uy = q1_gradient_at_gauss(u, 1 / (n - 1), 1 / (n - 1))
    np.testing.assert_allclose(g.numpy(), (0.125 / (n - 1) ** 2 * (ux**2 + uy**2)).numpy(), rtol=1e-13)
