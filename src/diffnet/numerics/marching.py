"""Row-by-row solvers of the training residuals' discrete equations (numpy, batched over samples).

They give the exact discrete solution that a network trained on the same residual tries to reach, which
splits the network's error into discretisation (discrete vs exact) and learning (network vs discrete).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import solve_banded

from diffnet.numerics import residuals

log = logging.getLogger(__name__)


def godunov1_march(u0: np.ndarray, nt: int, dt: float, dx: float) -> np.ndarray:
    """Solve the implicit Godunov scheme of ``residuals.godunov1`` (inviscid) exactly.

    For non-negative data the scheme is monotone, the solution stays non-negative and the Godunov
    flux is the upwind flux f(u[i-1]). Each node then obeys a scalar quadratic,
    u + lam u^2/2 = u_prev + lam f(u_left), lam = dt/dx, solved in closed form while sweeping left to
    right from the boundary value u = 0, so the residual vanishes to rounding.

    u0: (S, Nx) initial rows with u0[:, 0] == 0. Returns u(S, Nt, Nx).
    """
    u0 = np.asarray(u0, dtype=np.float64)
    if np.any(u0 < 0):
        raise ValueError("godunov1_march needs u0 >= 0 (the upwind sweep assumes right-moving waves)")
    lam = dt / dx
    s, nx = u0.shape
    u = np.zeros((s, nt, nx))
    u[:, 0] = u0
    u[:, :, 0] = 0.0
    for j in range(1, nt):
        prev = u[:, j - 1]
        row = u[:, j]
        for i in range(1, nx):
            rhs = prev[:, i] + lam * 0.5 * row[:, i - 1] ** 2
            # Stable root of lam/2 u^2 + u - rhs = 0 (no cancellation for small lam*rhs).
            row[:, i] = 2.0 * rhs / (1.0 + np.sqrt(1.0 + 2.0 * lam * rhs))
    return u


# Rows of the field that one row's residual reads (the row itself and those before it); the residual
# is evaluated on that window only and its last row kept, so a row costs the same whatever Nt.
_WINDOW = {"godunov1": 2, "tvd2": 3, "tvd2_cn": 2, "godunov1_bdf2": 3, "godunov1_cn": 2}
# Schemes that define each time row from the ones before it: those ``march`` can solve.
MARCHABLE = frozenset(_WINDOW)
# Half bandwidth of one row's Jacobian in x: a MUSCL flux difference at node i reads nodes i-2..i+2,
# a first-order one (no reconstruction; the viscous term too) nodes i-1..i+1.
_HALF_BAND = {"godunov1": 1, "tvd2": 2, "tvd2_cn": 2, "godunov1_bdf2": 1, "godunov1_cn": 1}
# One-sided difference step for the Jacobian: truncation ~ h |r''| and rounding ~ eps |r| / h both stay
# near 1e-8 relative for u = O(1), so Newton still gains ~8 digits per iteration where r is smooth, and
# at the limiters' kinks it takes a one-sided slope, as a semismooth Newton method would.
_FD_STEP = 2.0**-24


@dataclass(frozen=True)
class MarchResult:
    """Discrete solution u(S, Nt, Nx), Newton iterations per time row (row 0: 0) and step halvings."""

    u: np.ndarray
    iterations: np.ndarray
    halvings: int


def march(scheme: str, u0: np.ndarray, nt: int, dt: float, dx: float, viscosity: float = 0.0,
          tol: float = 1e-12, max_iter: int = 30) -> np.ndarray:
    """Discrete solution u(S, Nt, Nx) of ``residuals.residual(scheme, ...)``; see ``march_stats``."""
    return march_stats(scheme, u0, nt, dt, dx, viscosity, tol, max_iter).u


def march_stats(scheme: str, u0: np.ndarray, nt: int, dt: float, dx: float, viscosity: float = 0.0,
                tol: float = 1e-12, max_iter: int = 30) -> MarchResult:
    """Newton, row by row, on the training residual itself (float64, batched over samples).

    Using the torch residual the network is trained on means the two cannot disagree. Per row the
    unknowns are u[:, j, 1:] (u[:, j, 0] = 0), started from the linear extrapolation of the two rows
    before. The row's Jacobian is banded (half width 2, 1 for godunov1), so 5 (3) colored difference
    quotients give all of it in one batched residual call, and the samples' blocks are solved together
    as one banded system.
    A step that does not reduce max|r| is halved (the limiters make r only piecewise smooth).

    u0: (S, Nx) initial rows; column 0 is set to the Dirichlet value 0 on every row. Converged means
    max|r| <= tol over the row and all samples; a row that is not within ``max_iter`` iterations raises
    RuntimeError. Typical counts: 3 per row for godunov1, 4-5 for tvd2 and tvd2_cn.
    """
    if scheme not in _WINDOW:
        raise ValueError(f"no marching solver for scheme '{scheme}' (only schemes that define each row "
                         f"from the ones before it can be marched); choose one of {', '.join(_WINDOW)}")
    fn = functools.partial(residuals.residual, scheme, dt=dt, dx=dx, viscosity=viscosity)
    u0 = np.asarray(u0, dtype=np.float64)
    s, nx = u0.shape
    m, width, nc = nx - 1, _WINDOW[scheme], 2 * _HALF_BAND[scheme] + 1
    u = torch.zeros((s, nt, nx), dtype=torch.float64)
    u[:, 0] = torch.from_numpy(u0)
    u[:, :, 0] = 0.0
    # Tangent k moves every unknown of color k (column index mod nc) in the window's last row; no two
    # unknowns of one color share a residual, so each residual's change is one Jacobian entry.
    col = torch.arange(m)
    colors = torch.zeros((nc, 1, width, nx), dtype=torch.float64)
    colors[col % nc, 0, -1, col + 1] = 1.0
    iterations = np.zeros(nt, dtype=np.int64)
    halvings = 0

    def row_residual(window: torch.Tensor) -> torch.Tensor:
        return fn(window)[:, -1]

    for j in range(1, nt):
        lo = max(0, j - width + 1)
        window = u[:, lo:j + 1].clone()
        window[:, -1, 1:] = u[:, j - 1, 1:] if j == 1 else 2 * u[:, j - 1, 1:] - u[:, j - 2, 1:]
        tangents = colors[:, :, width - window.shape[1]:]
        r = row_residual(window)
        err = r.abs().max().item()
        it = 0
        while err > tol:
            if it == max_iter:
                raise RuntimeError(f"{scheme}: Newton did not converge on row {j} within {max_iter} "
                                   f"iterations (max|r| = {err:.2e} > tol = {tol:.0e})")
            it += 1
            jac = _colored_jacobian(row_residual, window, r, tangents)
            step = torch.from_numpy(_banded_solve(jac.numpy(), r.numpy()))
            lam = 1.0
            while True:
                trial = window.clone()
                trial[:, -1, 1:] -= lam * step
                r_new = row_residual(trial)
                err_new = r_new.abs().max().item()
                if err_new < err or lam < 1e-3:
                    break
                lam *= 0.5
                halvings += 1
            window, r, err = trial, r_new, err_new
        u[:, j, 1:] = window[:, -1, 1:]
        iterations[j] = it
    log.debug("%s march: Newton iterations per row mean %.2f, max %d; %d step halvings", scheme,
              iterations[1:].mean() if nt > 1 else 0.0, iterations.max(), halvings)
    return MarchResult(u.numpy(), iterations, halvings)


def _colored_jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, r: torch.Tensor,
                      tangents: torch.Tensor) -> torch.Tensor:
    """Difference quotients (f(x + h t) - f(x)) / h for the tangents t (C, 1, ...) at once: (C, S, M).

    The C shifted copies of x are stacked along the batch axis (the residual is per sample): one
    residual call on C times the data. Exact JVPs (torch.func.jvp, forward_ad) give the same Newton
    iterations but cost ~10x more in torch's forward mode, which made 256 x 256 x 16 take 10+ s.
    """
    c, s = tangents.shape[0], x.shape[0]
    shifted = (x.unsqueeze(0) + _FD_STEP * tangents).reshape(c * s, *x.shape[1:])
    return (f(shifted).reshape(c, s, -1) - r.reshape(1, s, -1)) / _FD_STEP


def _banded_solve(jac: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Solve J x = r per sample from the colored Jacobian columns jac (C, S, M), r (S, M).

    The samples' M x M blocks are stacked into one block-diagonal banded matrix: one LAPACK gbsv call
    (partial pivoting) instead of a Python loop over samples.
    """
    nc, s, m = jac.shape
    hb = (nc - 1) // 2
    rows = np.arange(m)
    ab = np.zeros((nc, s, m))
    for d in range(-hb, hb + 1):
        k = rows + d  # J[i, i + d] is entry i of the column of color (i + d) mod C
        ok = (k >= 0) & (k < m)
        # solve_banded's layout: ab[hb + i - k, k] = J[i, k].
        ab[hb - d, :, k[ok]] = jac[k[ok] % nc, :, rows[ok]]
    return solve_banded((hb, hb), ab.reshape(nc, s * m), r.reshape(-1)).reshape(s, m)


def newton_correction(scheme: str, u: np.ndarray | torch.Tensor, dt: float, dx: float,
                      viscosity: float = 0.0, jacobian: str | None = None) -> np.ndarray:
    """e = J(u)^{-1} r(u) for a whole field u(S, Nt, Nx): the residual preconditioned by a Jacobian.

    r is ``residuals.residual(scheme, ...)`` at the unknowns (rows j >= 1, columns i >= 1), shape
    (S, Nt-1, Nx-1), and J the Jacobian of the residual named ``jacobian`` (default: ``scheme``
    itself) with respect to the unknowns at u. With the scheme's own Jacobian, u - e is one Newton
    iterate towards the discrete solution, so |e| is the distance of u from it to first order,
    whatever the mode of the error. The plain residual instead charges a perturbation that restarts
    the march at row j for row j only, although it moves every later row: on fine grids low-residual
    fields can sit far from the solution. With the first-order twin (``residuals.FIRST_ORDER``) J is
    an M-matrix row by row and can always be inverted, which the scheme's own Jacobian far from the
    solution cannot promise; |e| then estimates the distance within the twin's approximation
    (defect correction). float64, no gradient.

    J is block lower triangular in time (row j reads rows j - W + 1..j, W = ``_WINDOW``) with banded
    blocks (half width 2 in x, 1 for a first-order Jacobian), so colored difference quotients give all
    of it in one residual call on W (2 half + 1) shifted copies of the batch, and e follows by forward
    substitution, one banded solve per row for all samples at once.
    """
    jacobian = jacobian or scheme
    for name in (scheme, jacobian):
        if name not in _WINDOW:
            raise ValueError(f"no Newton correction with scheme '{name}' (it needs a scheme that defines "
                             f"each row from the ones before it); choose one of {', '.join(_WINDOW)}")
    x = torch.as_tensor(u).detach().cpu().to(torch.float64)
    s, nt, nx = x.shape
    half = _HALF_BAND[jacobian]
    width, nb = _WINDOW[jacobian], 2 * half + 1
    rows, cols = nt - 1, nx - 1
    fn = functools.partial(residuals.residual, jacobian, dt=dt, dx=dx, viscosity=viscosity)
    at_u = fn(x)
    r = (at_u if jacobian == scheme else residuals.residual(scheme, x, dt, dx, viscosity)).numpy()
    # Unknown (p, q) = node (p + 1, q + 1) has color (p mod W) * B + q mod B (B = 2 half + 1): a residual
    # reads one unknown of each color at most, so each tangent's response is one Jacobian entry.
    p = torch.arange(rows)[:, None].expand(rows, cols).reshape(-1)
    q = torch.arange(cols)[None, :].expand(rows, cols).reshape(-1)
    tangents = torch.zeros((width * nb, 1, nt, nx), dtype=torch.float64)
    tangents[(p % width) * nb + q % nb, 0, p + 1, q + 1] = 1.0
    jac = _colored_jacobian(fn, x, at_u, tangents).reshape(width * nb, s, rows, cols).numpy()
    e = np.zeros((s, rows, cols))
    # Per offset d: the columns q with a neighbour q + d, that neighbour, and its color within a row.
    qs = np.arange(cols)
    shifts = [(qs[(qs + d >= 0) & (qs + d < cols)], d) for d in range(-half, half + 1)]
    shifts = [(q, q + d, (q + d) % nb) for q, d in shifts]
    for row in range(rows):
        rhs = r[:, row].copy()
        for lag in range(1, min(width, row + 1)):
            src = row - lag
            for q, k, color in shifts:
                # J[(row, q), (src, k)] is entry (row, q) of the column of unknown (src, k)'s color.
                rhs[:, q] -= jac[(src % width) * nb + color, :, row, q].T * e[:, src, k]
        diag = jac[(row % width) * nb:(row % width + 1) * nb, :, row]
        e[:, row] = _banded_solve(diag, rhs)
    return e
