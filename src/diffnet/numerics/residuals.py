"""Discrete space-time residuals of Burgers' equation, as pure torch functions of u(batch, t, x).

Each scheme returns the residual r[b, j, i] of its discrete equations at the unknown nodes j >= 1
(time rows after the initial one) and i >= 1 (columns right of the Dirichlet boundary x = 0). A field
with r == 0 there *is* the scheme's discrete solution, so training on sum(r^2) asks the network for
exactly that solution, and the error it can reach is the scheme's own discretisation error.

Residuals are scaled by dt (``u[j] - u[j-1] + dt * (...)``, leading coefficient 1 on u[j]), so they
are in units of u whatever the grid; this keeps loss magnitudes comparable across resolutions.

Schemes (all implicit and conservative in node-cell form, exact Godunov flux, outflow f(u[N-1]) at
x = 1, except sobel):

- ``godunov1``: first order in x and t (backward Euler, piecewise-constant states).
- ``tvd2``: MUSCL with the van Leer limiter, BDF2 in time (backward Euler on row 1). Second order where
  the solution is smooth and away from extrema (the limiter clips to first order there); TVD.
- ``tvd2_cn``: MUSCL with the superbee limiter, Crank-Nicolson in time. Same orders; superbee keeps
  shocks sharper (about 2 nodes) at the price of steepening smooth slopes a little.
- ``sobel``: the seed's central Sobel stencils, nominally second order but unsound: the checkerboard
  u(x, t_j) = (-1)^j u0(x) is (nearly) in its null space, see ``sobel``.

An optional ``viscosity`` adds -nu u_xx (outflow ghost at x = 1) at the same time level as the flux.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffnet.numerics.fluxes import godunov_flux

SCHEMES = ("godunov1", "tvd2", "tvd2_cn", "sobel")

Residual = Callable[[torch.Tensor, float, float, float], torch.Tensor]


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


def van_leer_slope(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Van Leer limited slope from the backward and forward differences a, b: 2ab/(a+b) if ab > 0, else 0.

    Written as (a|b| + |a|b) / (|a| + |b|): the numerator vanishes for opposite signs, and only
    a = b = 0 needs a guarded denominator, where the numerator's gradient is 0 as well, so neither the
    value nor the gradient is ever NaN.
    """
    den = a.abs() + b.abs()
    return (a * b.abs() + a.abs() * b) / torch.where(den > 0, den, torch.ones_like(den))


def superbee_slope(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Superbee limited slope: sign * max(min(2|a|, |b|), min(|a|, 2|b|)) if ab > 0, else 0."""
    s = 0.5 * (torch.sign(a) + torch.sign(b))  # 0 for opposite signs; a zero side makes the max 0
    aa, bb = a.abs(), b.abs()
    return s * torch.maximum(torch.minimum(2 * aa, bb), torch.minimum(aa, 2 * bb))


Limiter = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


SpatialOperator = Callable[[torch.Tensor, float, float], torch.Tensor]


def _muscl(u: torch.Tensor, dx: float, viscosity: float, limiter: Limiter) -> torch.Tensor:
    """Spatial operator L(u) = (F_{i+1/2} - F_{i-1/2})/dx - nu D2 u at columns 1..N-1, any leading dims.

    Ghosts: u_{-1} = 0 left of the Dirichlet node and u_N = u_{N+1} = u_{N-1} (outflow). The left ghost
    is the zero extension of the data the exact solution has (u0 = 0 for y < 0 with speed 0), so it is
    consistent to second order here; it zeroes the slope at node 0 and hence the inflow flux, and it
    never makes a reconstructed state leave [min u, max u] (TVD). The outflow ghosts zero the slope at
    N-1, so the outflow flux is f(u[N-1]) exactly as in godunov1.
    """
    last = u[..., -1:]
    ext = torch.cat([torch.zeros_like(last), u, last, last], dim=-1)  # nodes -1..N+1
    d = ext[..., 1:] - ext[..., :-1]  # d[..., k] = u_k - u_{k-1}, k = 0..N+1
    slope = limiter(d[..., :-1], d[..., 1:])  # nodes 0..N
    v = ext[..., 1:-1]  # nodes 0..N
    flux = godunov_flux(v[..., :-1] + 0.5 * slope[..., :-1], v[..., 1:] - 0.5 * slope[..., 1:])
    out = (flux[..., 1:] - flux[..., :-1]) / dx  # flux[..., k] sits right of node k; nodes 1..N-1
    if viscosity:
        out = out - viscosity * _laplacian_x(u, dx)
    return out


# The scheme's spatial operators (plain functions, not closures built at import, so that a mutation test
# of ``_muscl`` reaches them: docs/mutation.md).
def _van_leer_operator(u: torch.Tensor, dx: float, viscosity: float) -> torch.Tensor:
    return _muscl(u, dx, viscosity, van_leer_slope)


def _superbee_operator(u: torch.Tensor, dx: float, viscosity: float) -> torch.Tensor:
    return _muscl(u, dx, viscosity, superbee_slope)


def _bdf2(u: torch.Tensor, dt: float, dx: float, viscosity: float, operator: SpatialOperator) -> torch.Tensor:
    lu = operator(u[:, 1:], dx, viscosity)
    first = u[:, 1:2, 1:] - u[:, :1, 1:] + dt * lu[:, :1]
    rest = u[:, 2:, 1:] - (4 * u[:, 1:-1, 1:] - u[:, :-2, 1:]) / 3 + (2 * dt / 3) * lu[:, 1:]
    return torch.cat([first, rest], dim=1)


def _crank_nicolson(u: torch.Tensor, dt: float, dx: float, viscosity: float, operator: SpatialOperator) -> torch.Tensor:
    lu = operator(u, dx, viscosity)
    return u[:, 1:, 1:] - u[:, :-1, 1:] + (0.5 * dt) * (lu[:, 1:] + lu[:, :-1])


def tvd2(u: torch.Tensor, dt: float, dx: float, viscosity: float = 0.0) -> torch.Tensor:
    """MUSCL (van Leer) + exact Godunov flux, BDF2 in time; backward Euler on row 1 (no row j-2).

    r[1] = u1 - u0 + dt L(u1);  r[j] = u_j - (4 u_{j-1} - u_{j-2})/3 + (2/3) dt L(u_j), j >= 2,

    i.e. BDF2 divided by 3/2 so that u_j keeps coefficient 1 like the other schemes.
    """
    return _bdf2(u, dt, dx, viscosity, _van_leer_operator)


def tvd2_cn(u: torch.Tensor, dt: float, dx: float, viscosity: float = 0.0) -> torch.Tensor:
    """MUSCL (superbee) + exact Godunov flux, Crank-Nicolson in time.

    r[j] = u_j - u_{j-1} + dt/2 (L(u_j) + L(u_{j-1})), j >= 1.
    """
    return _crank_nicolson(u, dt, dx, viscosity, _superbee_operator)


def _no_slope(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(a)


def _godunov_operator(u: torch.Tensor, dx: float, viscosity: float) -> torch.Tensor:
    return _muscl(u, dx, viscosity, _no_slope)


def godunov1_bdf2(u: torch.Tensor, dt: float, dx: float, viscosity: float = 0.0) -> torch.Tensor:
    """tvd2's time stepping with piecewise-constant states (first order in x): its preconditioner."""
    return _bdf2(u, dt, dx, viscosity, _godunov_operator)


def godunov1_cn(u: torch.Tensor, dt: float, dx: float, viscosity: float = 0.0) -> torch.Tensor:
    """tvd2_cn's time stepping with piecewise-constant states (first order in x): its preconditioner."""
    return _crank_nicolson(u, dt, dx, viscosity, _godunov_operator)


# Each scheme's first-order-in-space twin (same time stepping, no reconstruction). Its Jacobian is an
# M-matrix in every row (monotone flux, conservative), so it can always be inverted, and it differs
# from the scheme's own Jacobian only by the limited slopes: the classic defect-correction pairing.
FIRST_ORDER = {"godunov1": "godunov1", "tvd2": "godunov1_bdf2", "tvd2_cn": "godunov1_cn"}


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


_FUNCTIONS: dict[str, Residual] = {"godunov1": godunov1, "tvd2": tvd2, "tvd2_cn": tvd2_cn, "sobel": sobel,
                                   "godunov1_bdf2": godunov1_bdf2, "godunov1_cn": godunov1_cn}


def residual(scheme: str, u: torch.Tensor, dt: float, dx: float, viscosity: float = 0.0) -> torch.Tensor:
    """Dispatch on the scheme's name (the config's loss.scheme)."""
    try:
        fn = _FUNCTIONS[scheme]
    except KeyError:
        raise ValueError(f"unknown residual scheme '{scheme}'; choose one of {', '.join(SCHEMES)}") from None
    return fn(u, dt, dx, viscosity)
