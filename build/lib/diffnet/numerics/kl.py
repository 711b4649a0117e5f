"""Karhunen-Loeve expansion of the 1D exponential covariance, and the separable log-diffusivity built from it.

The diffusivity of the elliptic families is

    log nu(x, y) = sum_{i=1..m} omega_i sqrt(lambda_i) phi_i(x) phi_i(y),

where (lambda_i, phi_i) are the eigenpairs of C(s, s') = exp(-|s - s'| / eta) on [0, 1], i.e. of the
integral operator (C phi)(s) = int_0^1 C(s, s') phi(s') ds'. With c = 1 / eta the eigenpairs are known
in closed form up to one scalar root per mode (Ghanem & Spanos, ch. 2; Xiu, "Numerical methods for
stochastic computations", sec. 4.2):

    phi(s) = (w cos(w s) + c sin(w s)) / N(w),     lambda = 2 c / (w^2 + c^2),

where w > 0 solves  tan(w) = 2 c w / (w^2 - c^2),  i.e.  (w^2 - c^2) sin(w) = 2 c w cos(w).
(Note the sign: the form "(c^2 - w^2) sin w = 2 c w cos w" is *not* equivalent to the tan form and
its roots do not satisfy the integral equation.)

Root finding. The equation as written has poles (tan at odd multiples of pi/2, the right-hand side at
w = c) and the trivial root w = 0, so it is not bracketed directly. Instead it is factored through the
half angle t = tan(w/2): tan(w) = 2cw/(w^2 - c^2) is equivalent to (c - w t)(w + c t) = 0, and each
factor, multiplied by a cosine, gives a pole-free function:

    odd modes  (roots in (2j pi, (2j+1) pi)):   h1(w) = w sin(w/2) - c cos(w/2),
    even modes (roots in ((2j-1) pi, 2j pi)):   h2(w) = w cos(w/2) + c sin(w/2).

On each of those intervals the factor changes sign exactly once (w tan(w/2) increases from 0 to +inf,
resp. tan(w/2) increases from -inf to 0 while -w/c decreases), so the k-th root lies in
((k-1) pi, k pi), the end points are never roots, and brentq on [(k-1) pi, k pi] is safe for every
c > 0. The roots therefore come out increasing, i.e. with decreasing eigenvalues.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq


def _odd_mode(w: float, c: float) -> float:
    return w * np.sin(0.5 * w) - c * np.cos(0.5 * w)


def _even_mode(w: float, c: float) -> float:
    return w * np.cos(0.5 * w) + c * np.sin(0.5 * w)


def kl_frequencies(m: int, eta: float) -> np.ndarray:
    """First m positive roots w_k of tan(w) = 2 c w / (w^2 - c^2), c = 1/eta, in increasing order.

    The k-th root (k = 1, 2, ...) is bracketed by [(k-1) pi, k pi] on the pole-free half-angle factor
    of its parity (see the module docstring), so no bracket ever straddles a pole of tan.
    Increasing w means decreasing eigenvalue 2c / (w^2 + c^2).
    """
    if m < 0:
        raise ValueError(f"m must be >= 0, got {m}")
    if eta <= 0:
        raise ValueError(f"eta must be > 0, got {eta}")
    c = 1.0 / eta
    roots = np.empty(m)
    for k in range(1, m + 1):
        f = _odd_mode if k % 2 == 1 else _even_mode
        # xtol/rtol at machine precision: w enters phi through cos(w s), so any slack in the root
        # shows up directly as a residual of the integral equation.
        roots[k - 1] = brentq(f, (k - 1) * np.pi, k * np.pi, args=(c,), xtol=1e-15, rtol=4 * np.finfo(float).eps)
    return roots


def _norms(w: np.ndarray, c: float) -> np.ndarray:
    """L2(0, 1) norms of w cos(w s) + c sin(w s), in closed form (exact integrals of cos^2, sin^2, sin cos).

    The formula holds for any w > 0, not only at roots, so it does not depend on the root accuracy.
    """
    sq = 0.5 * (w**2 + c**2) + (w**2 - c**2) * np.sin(2.0 * w) / (4.0 * w) + c * np.sin(w) ** 2
    return np.sqrt(sq)


def _modes(s: np.ndarray, w: np.ndarray, c: float, norms: np.ndarray) -> np.ndarray:
    """phi_k(s) for every k, shape (len(w), *s.shape)."""
    s = np.asarray(s, dtype=float)
    shape = (-1,) + (1,) * s.ndim
    ws = w.reshape(shape) * s
    return (w.reshape(shape) * np.cos(ws) + c * np.sin(ws)) / norms.reshape(shape)


def kl_eigenpairs(s: np.ndarray, m: int, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """First m eigenpairs of exp(-|s - s'|/eta) on [0, 1]: lambda (m,) decreasing, phi (m, len(s)).

    The eigenfunctions are L2(0, 1)-orthonormal and sampled at the points s (any points, not
    necessarily a grid), so the same modes can be evaluated at grid nodes and at quadrature points.
    """
    c = 1.0 / eta
    w = kl_frequencies(m, eta)
    lam = 2.0 * c / (w**2 + c**2)
    phi = _modes(np.asarray(s, dtype=float).reshape(-1), w, c, _norms(w, c))
    return lam, phi


def log_diffusivity(omega: np.ndarray, x: np.ndarray, y: np.ndarray, eta: float) -> np.ndarray:
    """log nu on the tensor grid (y, x) for a batch of KL coefficients: omega (n, m) -> (n, len(y), len(x)).

    The field is separable mode by mode, so it is a single matrix product of the scaled coefficients
    omega_i sqrt(lambda_i) with the m outer products phi_i(y) phi_i(x).
    """
    omega = np.atleast_2d(np.asarray(omega, dtype=float))
    n, m = omega.shape
    x = np.asarray(x, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float).reshape(-1)
    lam, phi_x = kl_eigenpairs(x, m, eta)
    _, phi_y = kl_eigenpairs(y, m, eta)
    outer = phi_y[:, :, None] * phi_x[:, None, :]  # (m, ny, nx)
    field = (omega * np.sqrt(lam)) @ outer.reshape(m, -1)
    return field.reshape(n, y.size, x.size)


def kl_log_nu_function(omega_row: np.ndarray, eta: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """log nu(x, y) for one coefficient vector omega (m,), as a pointwise function of coordinate arrays.

    The FEM reference evaluates the diffusivity at its own quadrature points (arbitrary arrays of any
    shape), so the roots are computed once here and the returned closure only evaluates cosines.
    x and y must broadcast against each other; the result has their broadcast shape.
    """
    omega_row = np.asarray(omega_row, dtype=float).reshape(-1)
    m = omega_row.size
    c = 1.0 / eta
    w = kl_frequencies(m, eta)
    norms = _norms(w, c)
    coeff = omega_row * np.sqrt(2.0 * c / (w**2 + c**2))

    def log_nu(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        # Modes are evaluated on x and y as given and only their product is broadcast, so tensor-grid
        # inputs (x of shape (1, nx), y of shape (ny, 1)) cost O(m (nx + ny)) cosines, not O(m nx ny).
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ndim = max(x.ndim, y.ndim)
        x = x.reshape((1,) * (ndim - x.ndim) + x.shape)
        y = y.reshape((1,) * (ndim - y.ndim) + y.shape)
        return np.tensordot(coeff, _modes(x, w, c, norms) * _modes(y, w, c, norms), axes=1)

    return log_nu
