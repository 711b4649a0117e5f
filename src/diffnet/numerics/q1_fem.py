"""Classical Q1 finite-element reference for the elliptic families on [0, 1]^2 (scikit-fem + pyamg).

Problems (nu > 0 given pointwise, kappa >= 0 a constant):

* Poisson:             -div(nu grad u) = 0, u = 1 at x = 0, u = 0 at x = 1, zero flux at y = 0, 1.
* Reaction-diffusion:  -div(nu grad u) + kappa^2 u = f, u = 0 on the whole boundary.

Discretisation: Q1 (bilinear) elements on the cells of the uniform node grid x_i = i/(nx-1),
y_j = j/(ny-1); every integral (nu, the mass term, the load f) uses the 2 x 2 Gauss rule per cell with
nu and f evaluated *at the Gauss points*. These are exactly the points and weights of
``diffnet.numerics.energy`` (``energy.gauss_points``), so the FEM solution here is the minimiser of
the discrete energy a network is trained on, not merely a solution of the same PDE. 2 x 2 Gauss is
exact for the Q1 mass matrix and keeps the optimal orders (2 in L2, 1 in the H1 seminorm) for smooth
nu and f.

Nodal arrays are laid out (ny, nx) (row index = y); the global node (and DOF) number of node (j, i) is
j * nx + i, so a solution vector reshapes straight to the grid.

Solvers: conjugate gradients preconditioned by one V-cycle of pyamg smoothed aggregation, started from
x0 = 0 with relative residual tolerance ``tol`` (deterministic: the same input gives bitwise the same
output, see ``_solve_amg``), or a sparse LU factorisation (SuperLU with a symmetric ordering). Dirichlet nodes are
eliminated (condensed) so the system stays symmetric positive definite.

Two assemblies of the same matrix: scikit-fem's generic ``asm`` and a vectorised numpy stencil
assembly for the structured grid (all element matrices at once, one COO scatter). They agree to
round-off; the second shows how much of the FEM time is assembly overhead rather than solving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyamg
import scipy.sparse as sp
from scipy.sparse.linalg import cg, splu
from skfem import Basis, BilinearForm, ElementQuad1, LinearForm, MeshQuad
from skfem.helpers import dot, grad

from diffnet.numerics import q1

Field = Callable[[np.ndarray, np.ndarray], np.ndarray]
Solver = Literal["amg", "direct"]
Assembly = Literal["skfem", "stencil"]
Dirichlet = Literal["all", "left_right"]

# The 2-point Gauss-Legendre rule on [0, 1] of energy.gauss_points, from the torch-free numerics.q1.
_G = np.array([q1.G0, q1.G1])


@dataclass(frozen=True)
class FemTiming:
    """Wall-clock seconds of one solve, split by phase.

    ``assembly`` covers evaluating nu/f at the quadrature points, building the matrix and load and
    eliminating the Dirichlet nodes; ``setup`` is the AMG hierarchy (0 for the direct solver);
    ``solve`` is the CG iteration, or factorisation plus triangular solves for the direct solver;
    ``iterations`` is the number of CG iterations (0 for the direct solver).
    """

    assembly: float
    setup: float
    solve: float
    iterations: int

    @property
    def total(self) -> float:
        return self.assembly + self.setup + self.solve


def grid_mesh(nx: int, ny: int) -> MeshQuad:
    """The structured quadrilateral mesh of the node grid, node (j, i) numbered j * nx + i.

    Built by hand rather than with ``MeshQuad.init_tensor`` (which numbers x-major) so that DOF
    vectors reshape directly to (ny, nx). Cells are listed counter-clockwise from the lower-left
    corner, so the reference point (xi, eta) of cell (j, i) maps to (x_i + xi hx, y_j + eta hy).
    """
    x = np.linspace(0.0, 1.0, nx)
    y = np.linspace(0.0, 1.0, ny)
    xx, yy = np.meshgrid(x, y)
    p = np.vstack([xx.ravel(), yy.ravel()])
    return MeshQuad(p, np.ascontiguousarray(_connectivity(nx, ny).T))


def _connectivity(nx: int, ny: int) -> np.ndarray:
    """(cells, 4) node numbers of cell (j, i) = row j * (nx-1) + i: (j, i), (j, i+1), (j+1, i+1), (j+1, i)."""
    node = np.arange(nx * ny).reshape(ny, nx)
    corners = (node[:-1, :-1], node[:-1, 1:], node[1:, 1:], node[1:, :-1])
    return np.stack([c.ravel() for c in corners], axis=1)


def gauss_rule() -> tuple[np.ndarray, np.ndarray]:
    """The 2 x 2 Gauss rule on the reference square [0, 1]^2: points (2, 4), weights (4,) summing to 1."""
    xi, eta = np.meshgrid(_G, _G)
    return np.vstack([xi.ravel(), eta.ravel()]), np.full(4, 0.25)


def grid_basis(nx: int, ny: int) -> Basis:
    """Q1 basis on ``grid_mesh`` with the 2 x 2 Gauss rule of ``gauss_rule`` (the scheme's quadrature)."""
    return Basis(grid_mesh(nx, ny), ElementQuad1(), quadrature=gauss_rule())


@BilinearForm
def _diffusion_reaction(u, v, w):
    return w.nu * dot(grad(u), grad(v)) + w.k2 * u * v


@LinearForm
def _load(v, w):
    return w.f * v


def assemble_skfem(
    nu: Field, nx: int, ny: int, *, kappa: float = 0.0, f: Field | None = None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Matrix of int nu grad u . grad v + kappa^2 u v and load int f v with scikit-fem, all nodes.

    nu and f are evaluated once at the global quadrature points and passed in as arrays (a callable
    inside the form would be re-evaluated for each of the 16 local basis pairs).
    """
    basis = grid_basis(nx, ny)
    x, y = np.asarray(basis.global_coordinates())
    a = _diffusion_reaction.assemble(basis, nu=nu(x, y), k2=float(kappa) ** 2).tocsr()
    b = _load.assemble(basis, f=f(x, y)) if f is not None else np.zeros(nx * ny)
    return a, b


def _reference_q1() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q1 shape functions and their reference derivatives at the 4 Gauss points, each (4 points, 4 nodes).

    Gauss point order is (q, p) row-major (q along y); local node order is (0,0), (1,0), (1,1), (0,1) in
    (xi, eta), i.e. nodes (j, i), (j, i+1), (j+1, i+1), (j+1, i).
    """
    eta, xi = (g.ravel() for g in np.meshgrid(_G, _G, indexing="ij"))
    n = np.stack([(1 - xi) * (1 - eta), xi * (1 - eta), xi * eta, (1 - xi) * eta], axis=1)
    dxi = np.stack([-(1 - eta), 1 - eta, eta, -eta], axis=1)
    deta = np.stack([-(1 - xi), -xi, xi, 1 - xi], axis=1)
    return n, dxi, deta


def _cell_values(field: Field, nx: int, ny: int) -> np.ndarray:
    """field at the Gauss points, as (cells, 4 points) in the (q, p) order of ``_reference_q1``."""
    hx, hy = 1.0 / (nx - 1), 1.0 / (ny - 1)
    gx = (np.arange(nx - 1)[:, None] * hx + _G * hx).ravel()
    gy = (np.arange(ny - 1)[:, None] * hy + _G * hy).ravel()
    values = np.asarray(field(gx[None, :], gy[:, None]), dtype=float)
    values = np.broadcast_to(values, (gy.size, gx.size))
    # (2(ny-1), 2(nx-1)) -> (j, q, i, p) -> (j, i, q, p) -> (cells, 4)
    return values.reshape(ny - 1, 2, nx - 1, 2).transpose(0, 2, 1, 3).reshape(-1, 4)


def assemble_stencil(
    nu: Field, nx: int, ny: int, *, kappa: float = 0.0, f: Field | None = None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """The same matrix and load as ``assemble_skfem``, by vectorised element matrices on the structured grid.

    Every cell has the same geometry, so the element matrix is sum_q w nu_q G_q + kappa^2 M with
    constant per-point outer products G_q and a constant mass matrix M; all cells are formed with one
    einsum and scattered with one COO -> CSR conversion (which sums the duplicates).
    """
    hx, hy = 1.0 / (nx - 1), 1.0 / (ny - 1)
    w = 0.25 * hx * hy
    n, dxi, deta = _reference_q1()
    gx, gy = dxi / hx, deta / hy
    stiff_q = np.einsum("qa,qb->qab", gx, gx) + np.einsum("qa,qb->qab", gy, gy)  # (4, 4, 4)
    mass = w * n.T @ n
    nu_c = _cell_values(nu, nx, ny)
    ke = w * np.einsum("cq,qab->cab", nu_c, stiff_q)
    if kappa:
        ke += float(kappa) ** 2 * mass
    conn = _connectivity(nx, ny)
    rows = np.broadcast_to(conn[:, :, None], ke.shape).ravel()
    cols = np.broadcast_to(conn[:, None, :], ke.shape).ravel()
    a = sp.coo_matrix((ke.ravel(), (rows, cols)), shape=(nx * ny, nx * ny)).tocsr()
    if f is None:
        b = np.zeros(nx * ny)
    else:
        be = w * _cell_values(f, nx, ny) @ n  # (cells, 4 nodes)
        b = np.bincount(conn.ravel(), weights=be.ravel(), minlength=nx * ny)
    return a, b


def dirichlet_mask(nx: int, ny: int, dirichlet: Dirichlet) -> np.ndarray:
    """Boolean (ny, nx) mask of the Dirichlet nodes: the whole boundary, or only the sides x = 0 and x = 1."""
    mask = np.zeros((ny, nx), dtype=bool)
    mask[:, 0] = mask[:, -1] = True
    if dirichlet == "all":
        mask[0, :] = mask[-1, :] = True
    elif dirichlet != "left_right":
        raise ValueError(f"unknown Dirichlet boundary {dirichlet!r}")
    return mask


def _solve_amg(a: sp.csr_matrix, b: np.ndarray, tol: float) -> tuple[np.ndarray, float, float, int]:
    t0 = time.perf_counter()
    # pyamg's default prolongation smoother scales Jacobi by a spectral radius estimated by Arnoldi
    # from np.random.rand, so two set-ups differ in the last bits (and it draws from the global
    # RNG). "local" weighting uses the Gershgorin bound of each row instead: deterministic, and on
    # these problems the set-up is ~4x cheaper, which outweighs the extra CG iterations (11-13
    # instead of 7-9 at 257^2 and 513^2 with m = 4 KL fields).
    # The symmetric Gauss-Seidel smoothers keep the V-cycle symmetric, as CG requires.
    precond = pyamg.smoothed_aggregation_solver(
        a, smooth=("jacobi", {"omega": 4.0 / 3.0, "weighting": "local"})
    ).aspreconditioner(cycle="V")
    t1 = time.perf_counter()
    iterations = 0

    def count(_: np.ndarray) -> None:
        nonlocal iterations
        iterations += 1

    # x0 = 0 explicitly (not a random start) so repeated solves are bitwise identical.
    x, info = cg(a, b, x0=np.zeros_like(b), rtol=tol, atol=0.0, maxiter=10 * b.size, M=precond, callback=count)
    if info != 0:
        raise RuntimeError(f"AMG-preconditioned CG did not reach rtol={tol} (info={info})")
    return x, t1 - t0, time.perf_counter() - t1, iterations


def _solve_direct(a: sp.csr_matrix, b: np.ndarray) -> tuple[np.ndarray, float, float, int]:
    t0 = time.perf_counter()
    # A symmetric fill-reducing ordering (minimum degree on A^T + A) and diagonal pivoting: the
    # system is SPD. COLAMD (the spsolve default) has ~1.7x the fill and ~2x the time at 513^2.
    lu = splu(a.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    x = lu.solve(b)
    return x, 0.0, time.perf_counter() - t0, 0


def solve_q1(
    nu: Field,
    nx: int,
    ny: int | None = None,
    *,
    kappa: float = 0.0,
    f: Field | None = None,
    g: Field | None = None,
    dirichlet: Dirichlet = "all",
    solver: Solver = "amg",
    assembly: Assembly = "skfem",
    tol: float = 1e-10,
) -> tuple[np.ndarray, FemTiming]:
    """Q1 solution (ny, nx) of -div(nu grad u) + kappa^2 u = f with u = g on the Dirichlet nodes.

    nu, f and g are pointwise functions of coordinate arrays (x, y); f defaults to 0 and g to 0. The
    rest of the boundary gets the natural (zero-flux) condition. g is imposed by nodal interpolation.
    ``tol`` is CG's relative residual tolerance (ignored by the direct solver).
    """
    ny = nx if ny is None else ny
    if nx < 2 or ny < 2:
        raise ValueError(f"need at least 2 x 2 nodes, got {nx} x {ny}")
    if solver not in ("amg", "direct"):
        raise ValueError(f"unknown solver {solver!r}")
    if assembly not in ("skfem", "stencil"):
        raise ValueError(f"unknown assembly {assembly!r}")
    t0 = time.perf_counter()
    assemble = assemble_skfem if assembly == "skfem" else assemble_stencil
    a, b = assemble(nu, nx, ny, kappa=kappa, f=f)
    fixed = dirichlet_mask(nx, ny, dirichlet).ravel()
    free = ~fixed
    u = np.zeros(nx * ny)
    if g is not None:
        xx, yy = np.meshgrid(np.linspace(0.0, 1.0, nx), np.linspace(0.0, 1.0, ny))
        u[fixed] = np.broadcast_to(g(xx, yy), (ny, nx)).ravel()[fixed]
    a_free = a[free]
    rhs = b[free] - a_free[:, fixed] @ u[fixed]
    a_ff = a_free[:, free].tocsr()
    t_assembly = time.perf_counter() - t0
    if solver == "amg":
        x, t_setup, t_solve, iterations = _solve_amg(a_ff, rhs, tol)
    else:
        x, t_setup, t_solve, iterations = _solve_direct(a_ff, rhs)
    u[free] = x
    return u.reshape(ny, nx), FemTiming(t_assembly, t_setup, t_solve, iterations)


def _exp(log_nu: Field) -> Field:
    return lambda x, y: np.exp(log_nu(x, y))


def solve_poisson(
    log_nu: Field,
    n: int,
    *,
    solver: Solver = "amg",
    assembly: Assembly = "skfem",
    tol: float = 1e-10,
) -> tuple[np.ndarray, FemTiming]:
    """Poisson family on the n x n grid: -div(nu grad u) = 0, u = 1 - x on x = 0, 1, zero flux on y = 0, 1."""
    return solve_q1(
        _exp(log_nu),
        n,
        g=lambda x, _y: 1.0 - x,
        dirichlet="left_right",
        solver=solver,
        assembly=assembly,
        tol=tol,
    )


def solve_reaction_diffusion(
    log_nu: Field,
    kappa: float,
    f: Field,
    n: int,
    *,
    solver: Solver = "amg",
    assembly: Assembly = "skfem",
    tol: float = 1e-10,
) -> tuple[np.ndarray, FemTiming]:
    """Reaction-diffusion family on the n x n grid: -div(nu grad u) + kappa^2 u = f, u = 0 on the boundary."""
    return solve_q1(_exp(log_nu), n, kappa=kappa, f=f, dirichlet="all", solver=solver, assembly=assembly, tol=tol)


def restrict_to_coarse(u_fine: np.ndarray) -> np.ndarray:
    """Injection of a (..., 2n-1, 2m-1) nodal field of the once-refined grid onto the (..., n, m) grid.

    Every coarse node is a fine node (x_i = 2i / (2(n-1))), so no interpolation is involved.
    """
    ny, nx = u_fine.shape[-2:]
    if ny % 2 == 0 or nx % 2 == 0:
        raise ValueError(f"a once-refined grid has an odd number of nodes per side, got {ny} x {nx}")
    return u_fine[..., ::2, ::2]


def q1_errors(
    u: np.ndarray,
    exact: Field,
    exact_grad: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    intorder: int = 6,
) -> tuple[float, float]:
    """(L2 error, H1-seminorm error) of the Q1 interpolant of nodal u (ny, nx) against an exact solution.

    Integrated with a high-order rule (not the 2 x 2 one of the scheme), so quadrature error does not
    pollute observed convergence orders.
    """
    ny, nx = u.shape
    basis = Basis(grid_mesh(nx, ny), ElementQuad1(), intorder=intorder)
    x, y = np.asarray(basis.global_coordinates())
    uh = basis.interpolate(u.ravel())
    gx, gy = exact_grad(x, y)
    l2 = np.sum(basis.dx * (np.asarray(uh) - exact(x, y)) ** 2)
    h1 = np.sum(basis.dx * ((uh.grad[0] - gx) ** 2 + (uh.grad[1] - gy) ** 2))
    return float(np.sqrt(l2)), float(np.sqrt(h1))
