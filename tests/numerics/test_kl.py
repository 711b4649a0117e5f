"""Tests of the Karhunen-Loeve modes of the exponential covariance against the integral equation itself."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.polynomial import legendre
from scipy.stats import qmc

from diffnet.numerics.kl import kl_eigenpairs, kl_frequencies, kl_log_nu_function, log_diffusivity


def gauss_on(a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = legendre.leggauss(n)
    return a + (b - a) * (t + 1) / 2, w * (b - a) / 2


@pytest.mark.parametrize("eta", [0.01, 0.1, 0.5, 2.0, 100.0])
def test_frequencies_solve_the_transcendental_equation_one_per_interval(eta: float) -> None:
    m, c = 40, 1.0 / eta
    w = kl_frequencies(m, eta)
    k = np.arange(1, m + 1)
    assert np.all(((k - 1) * np.pi < w) & (w < k * np.pi))
    # (w^2 - c^2) sin w = 2 c w cos w, scaled by its size so the check is meaningful for any c.
    residual = (w**2 - c**2) * np.sin(w) - 2 * c * w * np.cos(w)
    assert np.max(np.abs(residual) / (w**2 + c**2 + 2 * c * w)) < 1e-13


@pytest.mark.parametrize("eta", [0.05, 0.5, 3.0])
def test_eigenpairs_satisfy_the_covariance_integral_equation(eta: float) -> None:
    m = 25
    s = np.linspace(0.0, 1.0, 23)
    lam, phi = kl_eigenpairs(s, m, eta)
    # The kernel has a kink at s' = s: integrate each smooth half [0, s], [s, 1] with its own Gauss rule
    # (all nodes of all rules evaluated in one call).
    halves = [gauss_on(a, b, 80) for sj in s for a, b in ((0.0, sj), (sj, 1.0))]
    t = np.stack([h[0] for h in halves]).reshape(len(s), -1)  # (points s, 160 nodes)
    wt = np.stack([h[1] for h in halves]).reshape(len(s), -1)
    _, phi_t = kl_eigenpairs(t.ravel(), m, eta)
    kernel = np.exp(-np.abs(s[:, None] - t) / eta) * wt
    lhs = np.einsum("jt,kjt->kj", kernel, phi_t.reshape(m, len(s), -1))
    scale = lam[:, None] * np.max(np.abs(phi), axis=1, keepdims=True)
    assert np.max(np.abs(lhs - lam[:, None] * phi) / scale) < 1e-10


def test_eigenfunctions_are_orthonormal() -> None:
    t, wt = gauss_on(0.0, 1.0, 200)
    _, phi = kl_eigenpairs(t, 40, 0.5)
    gram = (phi * wt) @ phi.T
    np.testing.assert_allclose(gram, np.eye(40), atol=1e-12)


def test_eigenvalues_positive_decreasing_and_exhaust_the_trace() -> None:
    lam, _ = kl_eigenpairs(np.zeros(1), 200, 0.5)
    assert np.all(lam > 0)
    assert np.all(np.diff(lam) < 0)
    # trace C = int_0^1 C(s, s) ds = 1, and since w_k ~ k pi the tail after m modes is about
    # sum_{k > m} 2c / (k pi)^2 ~ 2c / (pi^2 m): 0.998 is captured at m = 200.
    partial = np.cumsum(lam)
    assert partial[-1] > 0.99
    for m in (50, 100, 200):
        tail = 1.0 - partial[m - 1]
        assert tail == pytest.approx(2 * 2.0 / (np.pi**2 * m), rel=0.05)


def test_log_diffusivity_layout_matches_pointwise_function() -> None:
    rng = np.random.default_rng(0)
    omega = rng.uniform(-3, 3, size=(3, 5))
    x = np.linspace(0.0, 1.0, 7)
    y = np.linspace(0.0, 1.0, 4)
    field = log_diffusivity(omega, x, y, 0.5)
    assert field.shape == (3, 4, 7)
    lam, phi_x = kl_eigenpairs(x, 5, 0.5)
    _, phi_y = kl_eigenpairs(y, 5, 0.5)
    # Element [n, j, i] is log nu at (x_i, y_j): row index is y.
    j, i = 2, 5
    expected = np.sum(omega[1] * np.sqrt(lam) * phi_x[:, i] * phi_y[:, j])
    assert field[1, j, i] == pytest.approx(expected, rel=1e-13)
    for n in range(3):
        log_nu = kl_log_nu_function(omega[n], 0.5)
        xx, yy = np.meshgrid(x, y)
        np.testing.assert_allclose(log_nu(xx, yy), field[n], rtol=1e-13, atol=1e-13)
    # arbitrary shapes broadcast, e.g. quadrature points (cells, points)
    assert log_nu(np.full((2, 3), 0.3), np.array([0.1, 0.2, 0.9])).shape == (2, 3)


@pytest.mark.parametrize("m", [4, 6])
def test_contrast_of_the_sobol_family(m: int) -> None:
    """Contrast max(nu)/min(nu) of omega ~ Sobol in [-3, 3]^m, eta = 0.5, 64^2 grid (printed with -s).

    Per sample, the log-range max - min of log nu is convex in omega, so its worst case over the cube
    is attained at one of the 2^m corners; the Sobol set must stay below that bound. Measured values
    (4096 scrambled points, seed 0): m = 4: median 43, max 1392 (corner bound 2801), pooled over all
    samples 8.1e4; m = 6: median 74, max 3293 (corner bound 1.03e4), pooled 3.3e5.
    """
    grid = np.linspace(0.0, 1.0, 64)
    omega = qmc.scale(qmc.Sobol(m, scramble=True, seed=0).random_base2(12), -3.0, 3.0)
    log_nu = log_diffusivity(omega, grid, grid, 0.5)
    contrast = np.exp(log_nu.max(axis=(1, 2)) - log_nu.min(axis=(1, 2)))
    corners = 3.0 * np.array(list(itertools.product([-1.0, 1.0], repeat=m)))
    log_corner = log_diffusivity(corners, grid, grid, 0.5)
    bound = np.exp(np.max(log_corner.max(axis=(1, 2)) - log_corner.min(axis=(1, 2))))
    pooled = np.exp(log_nu.max() - log_nu.min())
    print(
        f"\nm={m} eta=0.5 64^2, 4096 Sobol samples: per-sample contrast median {np.median(contrast):.3g}, "
        f"p95 {np.percentile(contrast, 95):.3g}, max {contrast.max():.4g}; corner bound {bound:.4g}; "
        f"pooled max(nu)/min(nu) {pooled:.3g}"
    )
    assert np.all(contrast <= bound * (1 + 1e-12))
    assert contrast.max() > 0.3 * bound
