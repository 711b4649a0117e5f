"""Row-by-row solvers of the training residuals' discrete equations (numpy, batched over samples).

They give the exact discrete solution that a network trained on the same residual tries to reach, which
splits the network's error into discretisation (discrete vs exact) and learning (network vs discrete).
"""

from __future__ import annotations

import numpy as np


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
