"""Discrete space-time residuals of Burgers' equation, as pure torch functions of u(batch, t, x).

Each scheme returns the residual r[b, j, i] of its discrete equations at the unknown nodes j >= 1
(time rows after the initial one) and i >= 1 (columns right of the Dirichlet boundary x = 0). A field
with r == 0 there *is* the scheme's discrete solution, so training on sum(r^2) asks the network for
exactly that solution, and the error it can reach is the scheme's own discretisation error.

Residuals are scaled by dt (``u[j] - u[j-1] + dt * (...)``), so they are in units of u whatever the
grid; this keeps loss magnitudes comparable across resolutions.
"""

from __future__ import annotations

import torch

from diffnet.numerics.fluxes import godunov_flux

SCHEMES = ("godunov1", "sobel")


def _laplacian_x(u: torch.Tensor, dx: float) -> torch.Tensor:
    """Second difference in x at columns 1..N-1, with the outflow ghost u_N = u_{N-1}."""
    right = torch.cat([u[..., 2:], u[..., -1:]], dim=-1)
    return (right - 2 * u[..., 1:] + u[..., :-1]) / (dx * dx)


def godunov1(u: torch.Tensor, dt: float, dx: float, viscosity: float = 0.0) -> torch.Tensor:
    """Implicit (backward Euler) first-order Godunov scheme in conservative node-cell form.

    r[j, i] = u[j,i] - u[j-1,i] + dt/dx (F(u[j,i], u[j,i+1]) - F(u[j,i-1], u[j,i])) - dt nu D2 u[j,i]

    with the exact Godunov flux F (right for either sign of u, which matters because a network's
    output can go negative) and an outflow ghost u[j, N] = u[j, N-1] at x = 1, whose flux is f(u).
    Upwinding and the implicit time level rule out the (-1)^j checkerboard mode that central
    differences cannot see: every row must follow from the one before it.
    """
    flux = godunov_flux(u[..., :-1], u[..., 1:])  # interfaces i+1/2, i = 0..N-2
    outflow = godunov_flux(u[..., -1:], u[..., -1:])
    flux = torch.cat([flux, outflow], dim=-1)  # flux[..., k] sits right of node k
    div = flux[..., 1:] - flux[..., :-1]  # nodes 1..N-1
    r = (u[:, 1:, 1:] - u[:, :-1, 1:]) + (dt / dx) * div[:, 1:, :]
    if viscosity:
        r = r - dt * viscosity * _laplacian_x(u[:, 1:, :], dx)
    return r


_SOBEL_SMOOTH = (3.0, 10.0, 3.0)


def sobel(u: torch.Tensor, dt: float, dx: float, viscosity: float = 0.0) -> torch.Tensor:
    """The seed's loss: u_t + u u_x with 3x3 Sobel (central difference, smoothed) stencils.

    Kept only to reproduce the talk. It is *unsound*: central differences in t cannot see the mode
    u(x, t_j) = (-1)^j u0(x), and training on it reaches a small loss at a 145% error. Evaluated at the
    interior nodes 1..N-2 in both directions (a central stencil needs both neighbours).
    """
    w = torch.tensor(_SOBEL_SMOOTH, dtype=u.dtype, device=u.device) / 16.0
    d = torch.tensor((-1.0, 0.0, 1.0), dtype=u.dtype, device=u.device) / 2.0
    kt = torch.outer(d, w)[None, None] / dt  # derivative along t (rows), smoothing along x
    kx = torch.outer(w, d)[None, None] / dx  # derivative along x (columns), smoothing along t
    v = u[:, None]
    ut = torch.nn.functional.conv2d(v, kt)[:, 0]
    ux = torch.nn.functional.conv2d(v, kx)[:, 0]
    r = ut + u[:, 1:-1, 1:-1] * ux
    if viscosity:
        uxx = (u[:, 1:-1, 2:] - 2 * u[:, 1:-1, 1:-1] + u[:, 1:-1, :-2]) / (dx * dx)
        r = r - viscosity * uxx
    return dt * r


def residual(scheme: str, u: torch.Tensor, dt: float, dx: float, viscosity: float = 0.0) -> torch.Tensor:
    """Dispatch on the scheme's name (the config's loss.scheme)."""
    try:
        fn = {"godunov1": godunov1, "sobel": sobel}[scheme]
    except KeyError:
        raise ValueError(f"unknown residual scheme '{scheme}'; choose one of {', '.join(SCHEMES)}") from None
    return fn(u, dt, dx, viscosity)
