"""Gaussian random fields on the periodic unit square with covariance (-Laplace + tau^2 I)^-alpha, drawn by FFT.

The field is FNO's (Li et al. 2020, ``GaussianRF``): on an image of ``size`` x ``size`` Fourier modes,

    g(x, y) = Re sum_{k, l} c_kl exp(2 pi i (l x + k y)),  c_kl = sqrt(2) s lambda_kl^(1/2) (xi + i eta),
    lambda_kl = (4 pi^2 (k^2 + l^2) + tau^2)^-alpha,  s = tau^(alpha - 1),  xi, eta ~ N(0, 1),

wavenumbers k, l in [-size/2, size/2), the mean mode c_00 = 0. Its pointwise variance is
2 s^2 sum_{kl != 0} lambda_kl (``variance``).

One draw is one set of coefficients: a band-limited field defined at *every* point of the square, so
any grid (the network's Gauss points, a 2x refined FEM's, a coarse ladder rung's) samples the same image
exactly (``evaluate``, a separable trigonometric sum: two matrix products). ``image`` is the same field
on the size x size periodic pixel grid by one inverse FFT.

Pure numpy; draws are seeded per sample (``coefficients(seed)``), so a file needs to store only the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GaussianRandomField"]


@dataclass(frozen=True)
class GaussianRandomField:
    """The law of the field: tau (inverse length scale), alpha (smoothness), size (Fourier modes per axis)."""

    tau: float = 3.0
    alpha: float = 2.0
    size: int = 256

    def __post_init__(self) -> None:
        if self.size < 2 or self.size % 2:
            raise ValueError(f"GRF image size must be an even number >= 2, got {self.size}")
        if self.tau <= 0 or self.alpha <= 0:
            raise ValueError(f"GRF needs tau > 0 and alpha > 0, got tau={self.tau}, alpha={self.alpha}")

    @property
    def wavenumbers(self) -> np.ndarray:
        """The integer wavenumbers in FFT order: 0, 1, ..., size/2 - 1, -size/2, ..., -1."""
        return np.fft.fftfreq(self.size, d=1.0 / self.size)

    def eigenvalues(self) -> np.ndarray:
        """lambda_kl (size, size), rows k (along y), columns l (along x), FFT order; the mean mode is 0."""
        k = self.wavenumbers
        lam = (4.0 * math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + self.tau**2) ** (-self.alpha)
        lam[0, 0] = 0.0  # a zero-mean field (FNO sets the constant mode to zero)
        return lam

    @property
    def scale(self) -> float:
        """s = tau^(alpha - 1) = tau^((2 alpha - d)/2) for d = 2, FNO's normalisation."""
        return self.tau ** (self.alpha - 1.0)

    def variance(self) -> float:
        """Pointwise variance of g: 2 s^2 sum lambda (each coefficient's real part contributes s^2 lambda twice)."""
        return float(2.0 * self.scale**2 * self.eigenvalues().sum())

    def coefficients(self, seed: int) -> np.ndarray:
        """c_kl (size, size) complex of the draw with this seed (numpy's default generator, PCG64)."""
        rng = np.random.default_rng(int(seed))
        z = rng.standard_normal((2, self.size, self.size))
        return math.sqrt(2.0) * self.scale * np.sqrt(self.eigenvalues()) * (z[0] + 1j * z[1])

    def image(self, coeff: np.ndarray) -> np.ndarray:
        """g on the size x size periodic pixel grid (y_j, x_i) = (j, i)/size: one inverse FFT."""
        return np.fft.ifft2(coeff, norm="forward").real

    def evaluate(self, coeff: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """g at the tensor points (y_j, x_i): (len(y), len(x)), exact (no interpolation), any coordinates.

        sum_kl c_kl e_k(y) e_l(x) = E_y C E_x^T with E_x[i, l] = exp(2 pi i l x_i): two matrix products,
        the smaller one first.
        """
        k = self.wavenumbers
        ex = np.exp(2j * math.pi * np.outer(np.asarray(x, dtype=np.float64), k))
        ey = np.exp(2j * math.pi * np.outer(np.asarray(y, dtype=np.float64), k))
        if len(y) <= len(x):
            return ((ey @ coeff) @ ex.T).real
        return (ey @ (coeff @ ex.T)).real
