"""Q1 (bilinear) quantities of nodal fields on uniform grids of [0, 1]^2, in numpy: no torch, no FEM.

What the error-matched comparison needs from any solution, whoever made it (the network, a FEM on a
coarser or finer grid): its integral, its weighted Dirichlet integral int nu |grad u|^2 (the
effective conductivity of the Poisson family), the H1 seminorm of an error, and its interpolant on
another grid. Every integral uses the 2 x 2 Gauss rule per cell with the points of
``numerics.energy.gauss_points``: for a Q1 field, int nu |grad u|^2 here is exactly twice the energy
the network is trained on.

Fields are (..., ny, nx), row index = y, nodes at i/(n-1).
"""

from __future__ import annotations

import math

import numpy as np

# The 2-point Gauss-Legendre nodes on the unit interval (the constants of numerics.energy).
G0 = 0.5 - 0.5 / math.sqrt(3.0)
G1 = 0.5 + 0.5 / math.sqrt(3.0)


def gauss_points(n: int) -> np.ndarray:
    """The 2(n-1) Gauss coordinates on [0, 1] of a uniform grid of n nodes, increasing (two per cell)."""
    if n < 2:
        raise ValueError(f"need at least 2 nodes, got {n}")
    left = np.arange(n - 1) / (n - 1)
    return np.stack([left + G0 / (n - 1), left + G1 / (n - 1)], axis=-1).reshape(-1)


def _at_gauss(d: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of d along ``axis`` to the two Gauss points of every interval (interleaved)."""
    a = np.take(d, np.arange(d.shape[axis] - 1), axis=axis)
    b = np.take(d, np.arange(1, d.shape[axis]), axis=axis)
    both = np.stack([a + G0 * (b - a), a + G1 * (b - a)], axis=axis + 1 if axis >= 0 else axis)
    shape = list(a.shape)
    shape[axis] *= 2
    return both.reshape(shape)


def _repeat_gauss(d: np.ndarray, axis: int) -> np.ndarray:
    """A per-cell quantity that is constant along ``axis`` within a cell, at both Gauss points."""
    return np.repeat(d, 2, axis=axis)


def gradient_at_gauss(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u_x, u_y) of the Q1 interpolant at the Gauss points: each (..., 2(ny-1), 2(nx-1)).

    u_x is constant along x within a cell and linear along y (and u_y the other way round).
    """
    ny, nx = u.shape[-2:]
    ux = np.diff(u, axis=-1) * (nx - 1)  # (..., ny, nx-1): along x between nodes, on every row
    uy = np.diff(u, axis=-2) * (ny - 1)  # (..., ny-1, nx)
    return (_repeat_gauss(_at_gauss(ux, -2), -1), _at_gauss(_repeat_gauss(uy, -2), -1))


def dirichlet_form(u: np.ndarray, v: np.ndarray, nu_gauss: np.ndarray | None = None) -> np.ndarray:
    """int nu grad u . grad v over [0, 1]^2 per field (...,), nu given at the Gauss points (or nu = 1)."""
    ux, uy = gradient_at_gauss(np.asarray(u, dtype=np.float64))
    vx, vy = gradient_at_gauss(np.asarray(v, dtype=np.float64))
    density = ux * vx + uy * vy
    if nu_gauss is not None:
        density = density * nu_gauss
    ny, nx = u.shape[-2:]
    # Four Gauss points per cell, weight 1/4 each, cell area 1/((nx-1)(ny-1)).
    return density.sum(axis=(-2, -1)) / (4.0 * (nx - 1) * (ny - 1))


def dirichlet_integral(u: np.ndarray, nu_gauss: np.ndarray | None = None) -> np.ndarray:
    """int nu |grad u|^2 over [0, 1]^2 per field (...,), nu given at the Gauss points (or nu = 1)."""
    return dirichlet_form(u, u, nu_gauss)


def boundary_flux(u: np.ndarray, nu_gauss: np.ndarray, side: int = -1) -> np.ndarray:
    """Outward flux -int nu du/dn through the side x = 1 (side -1) or x = 0 (side 0), in its weak (reaction)
    form -int nu grad u . grad phi with phi the Q1 function that is 1 on that side's nodes: for a Q1 solution
    the flux its equations balance, accurate to the solver's tolerance (the pointwise derivative is not)."""
    phi = np.zeros(u.shape[-2:])
    phi[:, side] = 1.0
    return -dirichlet_form(u, np.broadcast_to(phi, np.shape(u)), nu_gauss)


def integral(u: np.ndarray) -> np.ndarray:
    """int u over [0, 1]^2 of the Q1 interpolant per field: the trapezoidal rule, exact for Q1."""
    u = np.asarray(u, dtype=np.float64)
    ny, nx = u.shape[-2:]
    wy = np.full(ny, 1.0 / (ny - 1))
    wx = np.full(nx, 1.0 / (nx - 1))
    wy[[0, -1]] *= 0.5
    wx[[0, -1]] *= 0.5
    return np.einsum("...yx,y,x->...", u, wy, wx)


def interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear interpolation between uniform node grids of [0, 1]."""
    x_in = np.linspace(0.0, 1.0, n_in)
    x_out = np.linspace(0.0, 1.0, n_out)
    j = np.clip(np.searchsorted(x_in, x_out, side="right") - 1, 0, n_in - 2)
    w = np.clip((x_out - x_in[j]) * (n_in - 1), 0.0, 1.0)
    p = np.zeros((n_out, n_in))
    p[np.arange(n_out), j] = 1.0 - w
    p[np.arange(n_out), j + 1] += w
    return p


def interpolate(u: np.ndarray, n_out: int | tuple[int, int]) -> np.ndarray:
    """The Q1 interpolant of nodal u (..., ny, nx) on a uniform grid of the unit square (or of any rectangle:
    only the node counts matter) evaluated at the nodes of an n_out x n_out (or (ny_out, nx_out)) grid."""
    ny, nx = u.shape[-2:]
    oy, ox = (n_out, n_out) if isinstance(n_out, int) else n_out
    if (ny, nx) == (oy, ox):
        return np.array(u, dtype=np.float64)
    py, px = interpolation_matrix(ny, oy), interpolation_matrix(nx, ox)
    return np.einsum("oy,...yx,px->...op", py, u, px, optimize=True)


def relative_h1_seminorm_error(u: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|u - ref|_H1 / |ref|_H1 per field (the gradient's error, 2 x 2 Gauss on u's grid)."""
    num = dirichlet_integral(np.asarray(u, dtype=np.float64) - ref)
    return np.sqrt(num / dirichlet_integral(ref))
