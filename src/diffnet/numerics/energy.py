"""Discrete variational energies of the elliptic families for nodal fields u(batch, y, x), in torch.

The fields live on the uniform node grid x_i = i hx, y_j = j hy of [0, 1]^2 and are read as Q1
(bilinear) finite-element functions on the grid's own cells. Integrals use the 2 x 2 Gauss rule per
cell, the same rule (same points, same weights hx hy / 4) that ``diffnet.numerics.q1_fem`` uses
to assemble its FEM matrices, so for a fixed diffusivity the minimiser of these energies over the
free nodal values *is* that FEM solution: training a network on the energy asks for exactly the
classical discrete solution, and comparing the two measures only the optimisation error.

Gauss-point layout: each cell (j, i) holds the local points (q, p) in {0, 1}^2, local coordinates
(eta_q, xi_p) with xi_0 < xi_1 = 0.5 -+ 0.5/sqrt(3); point (q, p) of cell (j, i) is entry
(2j + q, 2i + p) of a (2(ny-1), 2(nx-1)) array, i.e. the Gauss points form a tensor grid of their
own whose 1D coordinates are ``gauss_points(ny)`` and ``gauss_points(nx)``.

Everything is written with slices and elementwise ops (the Q1 interpolants are 2 x 2 stencils), so it
is batched, differentiable in u and in the coefficients, dtype-preserving (float32 or float64) and
needs only a few copies of the field in memory even at 1024^2.
"""

from __future__ import annotations

import torch

from diffnet.numerics.q1 import G0, G1, gauss_points

__all__ = ["dirichlet_energy", "gauss_points", "q1_at_gauss", "q1_gradient_at_gauss", "reaction_diffusion_energy"]


def _interleave_last(u: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along the last axis to the two Gauss points of every interval."""
    a, b = u[..., :-1], u[..., 1:]
    d = b - a
    return torch.stack((a + G0 * d, a + G1 * d), dim=-1).flatten(-2)


def _interleave_rows(u: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along the second-to-last (y) axis to the two Gauss points of every interval."""
    a, b = u[..., :-1, :], u[..., 1:, :]
    d = b - a
    return torch.stack((a + G0 * d, a + G1 * d), dim=-2).flatten(-3, -2)


def q1_at_gauss(u: torch.Tensor) -> torch.Tensor:
    """Values of the Q1 interpolant of nodal u (b, ny, nx) at the Gauss points: (b, 2(ny-1), 2(nx-1)).

    The bilinear interpolant is a tensor product, so it is two 1D linear interpolations in turn.
    """
    return _interleave_rows(_interleave_last(u))


def _half_gradients(u: torch.Tensor, hx: float, hy: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gauss-point gradients without their redundant copies.

    On a Q1 cell u_x is linear in y and constant in x (and u_y the other way round), so u_x at the
    Gauss points is (b, 2(ny-1), nx-1), one value per cell column shared by p = 0 and 1; likewise u_y
    is (b, ny-1, 2(nx-1)). Keeping the short forms halves the memory of the energy evaluation.
    """
    ux = _interleave_rows((u[..., :, 1:] - u[..., :, :-1]) / hx)
    uy = _interleave_last((u[..., 1:, :] - u[..., :-1, :]) / hy)
    return ux, uy


def q1_gradient_at_gauss(u: torch.Tensor, hx: float, hy: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(u_x, u_y) of the Q1 interpolant of u (b, ny, nx) at the Gauss points, each (b, 2(ny-1), 2(nx-1))."""
    ux, uy = _half_gradients(u, hx, hy)
    return ux.repeat_interleave(2, dim=-1), uy.repeat_interleave(2, dim=-2)


def _pair_sum_last(v: torch.Tensor) -> torch.Tensor:
    return v.unflatten(-1, (-1, 2)).sum(-1)


def _pair_sum_rows(v: torch.Tensor) -> torch.Tensor:
    return v.unflatten(-2, (-1, 2)).sum(-2)


def _stiffness_term(u: torch.Tensor, nu_q: torch.Tensor, hx: float, hy: float) -> torch.Tensor:
    """sum_q w_q nu_q |grad u_q|^2 per batch entry (the integral of nu |grad u|^2, without the 1/2)."""
    ux, uy = _half_gradients(u, hx, hy)
    # u_x is shared by the two x-points of a cell and u_y by the two y-points, so sum nu over those
    # pairs first instead of expanding the gradients to full size.
    sx = (_pair_sum_last(nu_q) * ux.square()).sum(dim=(-2, -1))
    sy = (_pair_sum_rows(nu_q) * uy.square()).sum(dim=(-2, -1))
    return 0.25 * hx * hy * (sx + sy)


def dirichlet_energy(u: torch.Tensor, nu_q: torch.Tensor, hx: float, hy: float) -> torch.Tensor:
    """E(u) = 1/2 int nu |grad u|^2 for u (b, ny, nx) and nu at the Gauss points (b, 2(ny-1), 2(nx-1)) -> (b,).

    Minimising E over the free nodes with u fixed on the Dirichlet boundary gives the Q1 FEM solution
    of -div(nu grad u) = 0 with zero flux on the rest of the boundary (the natural condition).
    """
    return 0.5 * _stiffness_term(u, nu_q, hx, hy)


def reaction_diffusion_energy(
    u: torch.Tensor,
    nu_q: torch.Tensor,
    kappa: torch.Tensor,
    f_q: torch.Tensor,
    hx: float,
    hy: float,
) -> torch.Tensor:
    """E(u) = 1/2 int (nu |grad u|^2 + kappa^2 u^2) - int f u, batched: -> (b,).

    The 1/2 matters: its first variation is a(u, v) - (f, v), so the minimiser solves
    -div(nu grad u) + kappa^2 u = f. Without it the minimiser solves the problem for f/2.
    kappa is (b,) (one reaction coefficient per sample), f_q is f at the Gauss points.
    """
    w = 0.25 * hx * hy
    uq = q1_at_gauss(u)
    mass = w * uq.square().sum(dim=(-2, -1))
    load = w * (f_q * uq).sum(dim=(-2, -1))
    return 0.5 * (_stiffness_term(u, nu_q, hx, hy) + kappa.square() * mass) - load
