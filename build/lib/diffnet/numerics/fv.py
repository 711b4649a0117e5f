"""First-order Godunov finite volumes for inviscid Burgers on [0, 1], batched over samples.

Cell averages u_j on M uniform cells are advanced by forward Euler,

    u_j <- u_j - dt / dx (F(u_j, u_{j+1}) - F(u_{j-1}, u_j)),

with the exact Godunov flux F of ``fluxes.godunov_flux``, a left ghost cell u = 0 (inflow Dirichlet,
matching u(0, t) = 0) and a right ghost copying the last cell (outflow). The step obeys
dt max|u| / dx = cfl <= 1, under which the scheme is conservative, monotone (so it satisfies the
maximum principle and converges to the entropy solution) and first-order accurate: L1 error O(dx).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from diffnet.numerics.fluxes import godunov_flux


def cell_averages(primitive: Callable[[np.ndarray], np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Exact cell averages (U0(e_{j+1}) - U0(e_j)) / (e_{j+1} - e_j) from the primitive U0 of u0.

    Parameters
    ----------
    primitive : maps y of shape (S, M) (a (1, M) input broadcasts) to (S, M).
    edges : (M + 1,) increasing cell edges.

    Returns
    -------
    (S, M) cell averages.
    """
    edges = np.asarray(edges, dtype=np.float64)
    big_u = np.atleast_2d(primitive(edges[None, :]))
    return np.diff(big_u, axis=1) / np.diff(edges)


def interface_fluxes(u: np.ndarray) -> np.ndarray:
    """Godunov fluxes (S, M + 1) at all M + 1 interfaces, boundary ghosts included (0 left, copy right)."""
    s, m = u.shape
    ext = np.empty((s, m + 2))
    ext[:, 0] = 0.0
    ext[:, 1:-1] = u
    ext[:, -1] = u[:, -1]
    return godunov_flux(ext[:, :-1], ext[:, 1:])


def godunov_fv(u0_cells: np.ndarray, dx: float, t_out: np.ndarray, cfl: float = 0.9) -> np.ndarray:
    """Godunov finite-volume solution at the requested times.

    Parameters
    ----------
    u0_cells : (S, M) cell averages on M uniform cells of width dx covering [0, 1].
    dx : cell width.
    t_out : sorted output times, t_out[0] >= 0 (the initial data are at t = 0).
    cfl : Courant number dt max|u| / dx, in (0, 1].

    Returns
    -------
    (S, len(t_out), M) cell averages. The step uses the current max |u| over the whole batch (one dt
    for all samples keeps the update a single array operation); the last step before each output time
    is shortened to land on it exactly.
    """
    u0_cells = np.asarray(u0_cells, dtype=np.float64)
    t_out = np.asarray(t_out, dtype=np.float64)
    if u0_cells.ndim != 2:
        raise ValueError("u0_cells must have shape (S, M)")
    if t_out.ndim != 1 or (t_out.size and (t_out[0] < 0 or np.any(np.diff(t_out) < 0))):
        raise ValueError("t_out must be sorted with t_out[0] >= 0")
    if not 0.0 < cfl <= 1.0:
        raise ValueError("cfl must lie in (0, 1]")
    s, m = u0_cells.shape
    out = np.empty((s, t_out.size, m))
    # The state lives inside the ghost-padded array so that each step needs no concatenation.
    ext = np.empty((s, m + 2))
    ext[:, 0] = 0.0
    ext[:, 1:-1] = u0_cells
    u = ext[:, 1:-1]
    t = 0.0
    for n, t_next in enumerate(t_out):
        while t < t_next:
            a_max = float(np.abs(u).max())
            dt = cfl * dx / a_max if a_max > 0.0 else t_next - t
            # Land exactly on the output time; also absorb a remainder below 1e-12 of a step, which
            # would otherwise cost a useless extra step from round-off in t.
            if t + dt * (1.0 + 1e-12) >= t_next:
                dt, t = t_next - t, t_next
            else:
                t += dt
            ext[:, -1] = ext[:, -2]
            flux = godunov_flux(ext[:, :-1], ext[:, 1:])
            u -= (dt / dx) * (flux[:, 1:] - flux[:, :-1])
        out[:, n, :] = u
    return out


def cells_to_nodes(u_cells: np.ndarray, edges: np.ndarray, x: np.ndarray,
                   left_value: float | None = 0.0) -> np.ndarray:
    """Sample cell averages at nodes by linear interpolation between cell centres.

    Parameters
    ----------
    u_cells : (..., M) cell averages.
    edges : (M + 1,) cell edges.
    x : (Nx,) nodes inside [edges[0], edges[-1]].
    left_value : value at x = edges[0] used between it and the first centre (the inflow state 0, so
        u(0, t) = 0 is reproduced); None extrapolates the first cell as a constant. Right of the last
        centre the last cell is extended as a constant (outflow).

    Returns
    -------
    (..., Nx) node values. Second-order accurate where the solution is smooth; an O(1) error is
    confined to the O(1) nodes within a cell of a shock.
    """
    u_cells = np.asarray(u_cells, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    xs = 0.5 * (edges[:-1] + edges[1:])
    vals = u_cells
    if left_value is not None:
        xs = np.concatenate(([edges[0]], xs))
        pad = np.full((*u_cells.shape[:-1], 1), float(left_value))
        vals = np.concatenate((pad, u_cells), axis=-1)
    if xs.size == 1:
        return np.repeat(vals, x.size, axis=-1)
    j = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, xs.size - 2)
    w = np.clip((x - xs[j]) / (xs[j + 1] - xs[j]), 0.0, 1.0)
    return vals[..., j] * (1.0 - w) + vals[..., j + 1] * w
