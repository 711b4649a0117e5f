"""Runge-Kutta discontinuous Galerkin (RKDG) reference solver for inviscid Burgers on [0, 1].

Solves u_t + (u^2/2)_x = 0 for a whole batch of initial conditions at once, with u(0, t) = 0 at the
inflow boundary and free outflow at x = 1, and returns the entropy solution sampled on an output grid.

Method (Cockburn & Shu's RKDG, the standard choice for a scalar conservation law):

* Space: a uniform mesh of ``n_elements`` cells; on each cell u is a polynomial of degree ``order``
  (1 or 2) in the Lagrange basis of scikit-fem's ``ElementDG(ElementLineP1/P2())``. scikit-fem supplies
  the reference basis, its derivatives, the Gauss quadrature and the element mass matrix; because the
  mesh is uniform these operators are the same in every cell, so they are assembled once on the
  reference element and applied as small dense matrix products over (sample, element, dof) arrays.
* Fluxes: the exact Godunov flux of Burgers (:func:`diffnet.numerics.fluxes.godunov_flux`) at every
  interface. Boundaries use ghost states: u = 0 at x = 0 (the Dirichlet inflow value; for u >= 0 the
  Godunov flux there is 0) and the interior trace at x = 1 (supersonic outflow, no boundary data).
  The volume term integrates f(u_h) exactly (Gauss rule of degree 3p - 1).
* Limiter: the Cockburn-Shu generalised slope limiter (the scalar case needs no characteristic
  decomposition). Each cell's deviations of its end values from its mean are compared, through the
  (TVB-)minmod function, with the jumps of the neighbouring cell means; where either would be changed
  the cell is flagged and replaced by its mean plus the minmod-limited linear part (higher modes
  dropped). ``"minmod"`` is the TVD version (it also flattens smooth extrema: P1 keeps its L1 order 2
  with about twice the error, P2 drops to about order 2.4), ``"tvb"`` skips cells whose deviation is
  below M h^2 with M = (2/3) max|u0''| estimated per sample (full order at smooth extrema, but
  over/undershoots at shocks, ~5e-3 with 64 cells, ~5e-4 with 256), ``"none"`` disables limiting
  (smooth solutions only; after shocks form P1 overshoots by ~20%).
  Ghost means for the limiter: 0 left of x = 0 (the boundary value) and a copy of the last mean right
  of x = 1 (zero-gradient outflow; under ``"minmod"`` the outflow cell is therefore flat, first order
  in that one cell, but a shock leaving the domain cannot undershoot there).
* Time: third-order SSP Runge-Kutta (Shu-Osher), limiter applied after every stage. The step is
  dt <= cfl * h / u_max with one u_max for the whole run, max|u0| over the batch rounded up to 8
  significant bits (the entropy solution obeys the maximum principle and the boundary value 0 lies
  inside the range), shrunk so that an integer number of equal steps lands exactly on every output
  time. The default Courant numbers 0.3 (P1) / 0.15 (P2) are below the linear stability limits of
  RKDG-P1/P2 with SSP-RK3 (0.409 / 0.209).
* Initial data: L2 projection onto the DG space with a high-order Gauss rule per cell.
* Output: the DG polynomial is evaluated at the output nodes. A node that coincides with an interior
  interface gets the average of the left and right traces (the midpoint of the jump, also the value
  a centred reading of a discontinuous field would give). Row t = 0 is set to u0 at the nodes
  exactly, and the column x = 0 to the boundary value 0 for t > 0.

Accuracy: in smooth regions the error is O(h^(p+1)) (observed L1 orders before breaking: 2.0 for P1
with ``"minmod"``, 3.0 for P2 with ``"none"`` or ``"tvb"``); shocks are captured within one to two
cells without overshoot (``"minmod"`` keeps every value in [0, 1]), so once shocks exist the L1 error
is O(h) and the relative L2 error O(h^(1/2)), whatever p. On the cosine family (c in [3, 6],
T = 1/3) with the default mesh the median rel L2 on the output grid is 3.3% / 2.3% / 1.7% / 1.2% at
128^2 / 256^2 / 512^2 / 1024^2 (L1 order 1.0, rel L2 order 0.5; ``benchmarks/fem_convergence.py``).
P2 buys nothing there: the shocks dominate and the limiter reduces the shocked cells to P1.

Cost: O(S * n_elements * (order + 1)^2) per stage, three stages per step, and
n_steps ~ T u_max n_elements / cfl, i.e. O(S * n_elements^2) in total; only the time loop is in
Python. Measured on a shared 2-core x86 machine (P1, default mesh): about 0.2 s for a batch of 16 at
64^2, 0.6-0.9 s per solution at 512^2 and 3.5 s at 1024^2; the cost is linear in the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from numpy.polynomial import legendre
from skfem import Basis, BilinearForm, ElementDG, ElementLineP1, ElementLineP2, MeshLine
from skfem.quadrature import get_quadrature
from skfem.refdom import RefLine

from diffnet.numerics.fluxes import godunov_flux

__all__ = ["default_n_elements", "dg_solve"]

_ELEMENTS = {1: ElementLineP1, 2: ElementLineP2}
# Courant numbers max|u| dt / h, about 75% of the SSP-RK3 linear stability limits 0.409 (P1), 0.209 (P2).
_DEFAULT_CFL = {1: 0.3, 2: 0.15}
# Gauss order of the initial L2 projection: u0 may oscillate a few times per coarse cell, and this runs
# once, so it can afford to be generous.
_PROJECTION_INTORDER = 19
# Elements per output spacing of the default mesh (see default_n_elements).
_REFINE = 4


@dataclass(frozen=True)
class _Reference:
    """Operators on the reference cell [0, 1], shared by every cell of the uniform mesh."""

    order: int
    nodes: np.ndarray  # (nd,) Lagrange node positions (scikit-fem's dof order)
    minv: np.ndarray  # (nd, nd) inverse reference mass matrix
    vol: np.ndarray  # (nq, nd): maps f(u) at quadrature points to M^-1 (f, phi_i') on the reference cell
    vq: np.ndarray  # (nd, nq): nodal values -> values at the flux quadrature points
    lift_left: np.ndarray  # (nd,) M^-1 phi(0)
    lift_right: np.ndarray  # (nd,) M^-1 phi(1)
    trace_left: np.ndarray  # (nd,) phi(0): nodal values -> left trace
    trace_right: np.ndarray  # (nd,) phi(1)
    to_modal: np.ndarray  # (nd, nd): nodal -> Legendre coefficients on [0, 1]
    to_nodal: np.ndarray  # (nd, nd): Legendre coefficients -> nodal values

    def basis_at(self, xi: np.ndarray) -> np.ndarray:
        """Reference basis values phi_i(xi), shape (len(xi), nd)."""
        elem = _ELEMENTS[self.order]()
        pts = np.atleast_1d(np.asarray(xi, dtype=float))[None, :]
        return np.stack([elem.lbasis(pts, i)[0] for i in range(len(self.nodes))], axis=-1)


@lru_cache(maxsize=4)
def _reference(order: int) -> _Reference:
    if order not in _ELEMENTS:
        raise ValueError(f"order must be 1 or 2, got {order}")
    elem = _ELEMENTS[order]()
    nd = order + 1
    # Mass matrix of the DG element assembled by scikit-fem on a one-cell mesh = the reference cell.
    basis = Basis(MeshLine(np.array([0.0, 1.0])), ElementDG(elem), intorder=2 * order)
    mass = BilinearForm(lambda u, v, _: u * v).assemble(basis).toarray()
    minv = np.linalg.inv(mass)
    nodes = elem.doflocs[:, 0].copy()

    # f(u) = u^2/2 times phi' has degree 3p - 1: this Gauss rule integrates the volume term exactly.
    xq, wq = get_quadrature(RefLine, 3 * order - 1)
    phi = np.stack([elem.lbasis(xq, i)[0] for i in range(nd)], axis=0)  # (nd, nq)
    dphi = np.stack([elem.lbasis(xq, i)[1][0] for i in range(nd)], axis=0)  # (nd, nq)
    vol = (minv @ (dphi * wq)).T

    ends = np.stack([elem.lbasis(np.array([[0.0, 1.0]]), i)[0] for i in range(nd)], axis=0)  # (nd, 2)
    # Legendre polynomials shifted to [0, 1]: the limiter works on mean and slope, i.e. modes 0 and 1.
    to_nodal = legendre.legvander(2.0 * nodes - 1.0, order)  # (nd nodes, nd modes)
    return _Reference(
        order=order,
        nodes=nodes,
        minv=minv,
        vol=vol,
        vq=phi,
        lift_left=minv @ ends[:, 0],
        lift_right=minv @ ends[:, 1],
        trace_left=ends[:, 0],
        trace_right=ends[:, 1],
        to_modal=np.linalg.inv(to_nodal),
        to_nodal=to_nodal,
    )


def default_n_elements(nx: int) -> int:
    """Default mesh for an output grid of ``nx`` nodes: 4 cells per output spacing.

    The error against the exact solution on the output grid is dominated by the few nodes that fall
    inside a smeared shock (one to two cells wide), so it is governed by the cell size relative to the
    output spacing, not by the polynomial degree. Measured median rel L2 at 512^2 for c in [3, 6]:
    3.3% / 2.3% / 1.7% / 1.2% with 1 / 2 / 4 / 8 cells per spacing. Four cells put the reference's own
    error at a third of the 5% target, so it adds little when models are scored against it, for about
    0.6-0.9 s per solution at 512^2; eight cost 4-5 times more for a smaller gain. Output nodes then sit
    on every fourth interface.
    """
    return _REFINE * max(nx - 1, 1)


def _minmod(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    # With s = sign(a), min(|a|, s b, s c) is negative exactly when b or c disagrees in sign with a.
    s = np.sign(a)
    return s * np.maximum(np.minimum(np.minimum(np.abs(a), s * b), s * c), 0.0)


class _Solver:
    """RKDG state operators for one (mesh, order, limiter) on a batch of shape (S, K, nd)."""

    def __init__(self, ref: _Reference, n_elements: int, limiter: str, tvb_mh2: np.ndarray | None) -> None:
        self.ref = ref
        self.k = n_elements
        self.h = 1.0 / n_elements
        self.limiter = limiter
        self.tvb_mh2 = tvb_mh2  # (S, 1) threshold M h^2, or None for the plain TVD minmod
        # (nq + 2, nd): [f(u) at quadrature points, left flux, right flux] -> du/dt in nodal values.
        self.cell_operator = np.vstack([ref.vol, ref.lift_left, -ref.lift_right]) / self.h

    def rhs(self, u: np.ndarray) -> np.ndarray:
        ref = self.ref
        left = u @ ref.trace_left  # (S, K) left trace of each cell
        right = u @ ref.trace_right
        zeros = np.zeros_like(left[:, :1])
        # Interface states: ghost 0 at the inflow, copy of the interior trace at the outflow.
        ul = np.concatenate([zeros, right], axis=1)
        ur = np.concatenate([left, right[:, -1:]], axis=1)
        flux = godunov_flux(ul, ur)  # (S, K + 1)
        # Volume and both face terms in one small matrix product: broadcasting the face fluxes against
        # the lifting vectors separately costs three times as much.
        nq = ref.vq.shape[1]
        g = np.empty((*u.shape[:2], nq + 2))
        uq = u @ ref.vq
        np.multiply(uq, 0.5 * uq, out=g[..., :nq])
        g[..., nq] = flux[:, :-1]
        g[..., nq + 1] = flux[:, 1:]
        return g @ self.cell_operator

    def limit(self, u: np.ndarray) -> np.ndarray:
        if self.limiter == "none":
            return u
        ref = self.ref
        modal = u @ ref.to_modal.T  # (S, K, nd): mean, Legendre slope, ...
        jumps = np.diff(modal[..., 0], axis=1, prepend=0.0)  # mean_j - mean_{j-1}; ghost 0 at x = 0
        back = jumps
        # Zero-gradient ghost at x = 1: linear extrapolation would let a shock leaving the domain pull
        # the outflow trace below the neighbouring means (seen: u = -0.4 at x = 1 for c = 6).
        fwd = np.concatenate([jumps[:, 1:], np.zeros_like(jumps[:, :1])], axis=1)

        def mtilde(a: np.ndarray) -> np.ndarray:
            limited = _minmod(a, fwd, back)
            if self.tvb_mh2 is not None:
                limited = np.where(np.abs(a) <= self.tvb_mh2, a, limited)
            return limited

        slope = mtilde(modal[..., 1])
        if ref.order == 1:
            # Both end deviations equal the slope coefficient, so "flagged" is exactly "slope changed".
            modal[..., 1] = slope
        else:
            dev_right = modal[..., 1:].sum(axis=-1)  # u(1) - mean, since P_k(1) = 1
            dev_left = modal[..., 1:] @ -((-1.0) ** np.arange(1, ref.order + 1))  # mean - u(0)
            flagged = (mtilde(dev_right) != dev_right) | (mtilde(dev_left) != dev_left)
            modal[..., 1] = np.where(flagged, slope, modal[..., 1])
            modal[..., 2:] *= ~flagged[..., None]
        return modal @ ref.to_nodal.T

    def step(self, u: np.ndarray, dt: float) -> np.ndarray:
        u1 = self.limit(u + dt * self.rhs(u))
        u2 = self.limit(0.75 * u + 0.25 * (u1 + dt * self.rhs(u1)))
        return self.limit(u / 3.0 + (2.0 / 3.0) * (u2 + dt * self.rhs(u2)))


def _output_matrix(ref: _Reference, n_elements: int, x_out: np.ndarray) -> sp.csr_matrix:
    """Sparse (Nx, K * nd) map from flattened DG coefficients to values at ``x_out``.

    Nodes within 1e-9 of an interior interface (output nodes i / (Nx - 1) hit interfaces only up to
    round-off) average the two traces.
    """
    nd = ref.order + 1
    s = np.clip(np.asarray(x_out, dtype=float), 0.0, 1.0) * n_elements
    on_face = np.abs(s - np.rint(s)) < 1e-9 * n_elements  # 1e-9 in x, s is in cell units
    cell = np.where(on_face, np.rint(s), np.floor(s)).astype(int)
    cell = np.clip(cell, 0, n_elements - 1)
    xi = np.where(on_face, np.rint(s) - cell, s - cell)
    rows, cols, vals = [], [], []
    idx = np.arange(len(s))
    interior = on_face & (np.rint(s) > 0) & (np.rint(s) < n_elements)
    # Right cell (or the only cell), weight 1/2 where an interior interface is shared with the left cell.
    w_main = np.where(interior, 0.5, 1.0)
    phi = ref.basis_at(xi)
    for i in range(nd):
        rows.append(idx)
        cols.append(cell * nd + i)
        vals.append(w_main * phi[:, i])
    phi_left_cell = ref.basis_at(np.ones(int(interior.sum())))
    for i in range(nd):
        rows.append(idx[interior])
        cols.append((cell[interior] - 1) * nd + i)
        vals.append(0.5 * phi_left_cell[:, i])
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(s), n_elements * nd),
    )


def _project(ref: _Reference, n_elements: int, u0: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """L2 projection of the batch u0 onto the DG space, shape (S, K, nd)."""
    xq, wq = get_quadrature(RefLine, _PROJECTION_INTORDER)
    phi = ref.basis_at(xq[0])  # (nq, nd)
    h = 1.0 / n_elements
    y = ((np.arange(n_elements)[:, None] + xq[0][None, :]) * h).reshape(-1)
    vals = _call_batch(u0, y).reshape(-1, n_elements, len(wq))
    return (vals * wq) @ phi @ ref.minv.T


def _call_batch(u0: Callable[[np.ndarray], np.ndarray], y: np.ndarray) -> np.ndarray:
    """Evaluate the batched u0 at points y (M,), returning (S, M) float64."""
    # The batch size lives inside the closure: a one-point probe reveals it.
    n_samples = np.asarray(u0(np.zeros((1, 1)))).shape[0]
    out = np.asarray(u0(np.broadcast_to(y, (n_samples, y.size)).copy()), dtype=np.float64)
    return np.broadcast_to(out, (n_samples, y.size))


def dg_solve(
    u0: Callable[[np.ndarray], np.ndarray],
    x_out: np.ndarray,
    t_out: np.ndarray,
    *,
    n_elements: int | None = None,
    order: int = 1,
    cfl: float | None = None,
    limiter: str = "minmod",
) -> np.ndarray:
    """Entropy solution of Burgers on [0, 1] with u(0, t) = 0, for a batch of initial conditions.

    Args:
        u0: batched initial condition. It is called with y of shape (S, M) (row s holds the points for
            sample s) and returns (S, M); it closes over the batch of parameters. It is first probed
            with a (1, 1) array to learn S, so it must broadcast a single row (numpy-style code
            such as ``0.5 * (1 - np.cos(2 * np.pi * c[:, None] * y))`` does).
        x_out: output nodes in [0, 1], shape (Nx,).
        t_out: output times, non-decreasing and >= 0, shape (Nt,).
        n_elements: number of DG cells. ``None`` -> :func:`default_n_elements`: 4 cells per output
            spacing, because the rel L2 on the output grid is dominated by the nodes inside smeared
            shocks (1.7% at 512^2, against 3.3% with one cell per spacing).
        order: polynomial degree, 1 or 2.
        cfl: Courant number max|u| dt / h; ``None`` -> 0.3 (P1) or 0.15 (P2).
        limiter: ``"minmod"`` (TVD), ``"tvb"`` (TVB, M from max|u0''| per sample) or ``"none"``.

    Returns:
        u(sample, t, x), float64 array of shape (S, Nt, Nx). Nodes on an interior interface get the
        average of the two traces; row t = 0 (if present) is u0 at the nodes, column x = 0 is 0 for
        t > 0.
    """
    if limiter not in ("minmod", "tvb", "none"):
        raise ValueError(f"unknown limiter {limiter!r}")
    x_out = np.asarray(x_out, dtype=np.float64)
    t_out = np.asarray(t_out, dtype=np.float64)
    if np.any(np.diff(t_out) < 0) or (t_out.size and t_out[0] < 0):
        raise ValueError("t_out must be non-decreasing and non-negative")
    ref = _reference(order)
    k = default_n_elements(x_out.size) if n_elements is None else int(n_elements)
    h = 1.0 / k
    cfl = _DEFAULT_CFL[order] if cfl is None else float(cfl)

    u = _project(ref, k, u0)  # (S, K, nd)
    n_samples = u.shape[0]
    tvb_mh2 = None
    if limiter == "tvb":
        tvb_mh2 = (2.0 / 3.0) * _max_second_derivative(u0, k) * h * h
    solver = _Solver(ref, k, limiter, tvb_mh2)
    u = solver.limit(u)

    # Speed bound for the whole run from the maximum principle (the boundary value 0 is in range),
    # rounded up to 8 significant bits so that samples sharing a bound (e.g. a family normalised to
    # max 1, sampled slightly differently per c) get the same time steps alone as in any batch.
    mantissa, exponent = np.frexp(max(float(np.abs(_call_batch(u0, _fine_grid(k))).max()), 1e-12))
    u_max = float(np.ldexp(np.ceil(mantissa * 256.0) / 256.0, exponent))
    dt_max = cfl * h / u_max

    out_map = _output_matrix(ref, k, x_out)
    result = np.empty((n_samples, t_out.size, x_out.size))
    t = 0.0
    for j, t_next in enumerate(t_out):
        span = t_next - t
        if span > 0:
            n_steps = int(np.ceil(span / dt_max * (1.0 - 1e-12)))
            dt = span / n_steps
            for _ in range(n_steps):
                u = solver.step(u, dt)
            t = t_next
        result[:, j] = (out_map @ u.reshape(n_samples, -1).T).T

    if t_out.size and t_out[0] == 0.0:
        result[:, 0] = _call_batch(u0, x_out)
    if x_out.size and x_out[0] == 0.0:
        result[:, t_out > 0, 0] = 0.0
    return result


def _fine_grid(n_elements: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, 8 * n_elements + 1)


def _max_second_derivative(u0: Callable[[np.ndarray], np.ndarray], n_elements: int) -> np.ndarray:
    """Per-sample max|u0''| from second differences on a fine grid, shape (S, 1)."""
    y = _fine_grid(n_elements)
    vals = _call_batch(u0, y)
    d2 = np.abs(np.diff(vals, 2, axis=1)) / (y[1] - y[0]) ** 2
    return d2.max(axis=1, keepdims=True)
