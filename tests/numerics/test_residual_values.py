"""Residual values on fields where every stencil is exact, worked out by hand (docs/mutation.md).

On u = a t + b x + c x^2 central differences are exact, the Sobel smoothing (3, 10, 3)/16 averages
equal values, and the Godunov flux of a positive increasing field is the left state's f(u) = u^2/2, so
each scheme's residual has a closed form. The grids have dt != dx, so swapping them shows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffnet.numerics import residuals

DT, DX = 0.1, 0.25
A, B, C = 0.7, 1.3, 0.4


def _field(nt: int = 5, nx: int = 6, c: float = C, dtype=torch.float64) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    t = DT * np.arange(nt)[:, None]
    x = DX * np.arange(nx)[None, :]
    u = 0.2 + A * t + B * x + c * x**2
    return torch.tensor(u[None], dtype=dtype), t, x


@pytest.mark.parametrize("viscosity", [0.0, 0.05])
def test_sobel_residual_is_dt_times_the_pointwise_pde_on_a_quadratic(viscosity):
    u, _t, x = _field()
    r = residuals.sobel(u, DT, DX, viscosity)[0].numpy()
    xc, uc = x[:, 1:-1], u[0, 1:-1, 1:-1].numpy()
    # u_t = A, u_x = B + 2 C x exactly (central differences of a quadratic), u_xx = 2 C.
    expected = DT * (A + uc * (B + 2 * C * xc) - viscosity * 2 * C)
    assert r.shape == (3, 4)
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    if viscosity == 0.0:  # inviscid unless told otherwise
        np.testing.assert_allclose(residuals.sobel(u, DT, DX)[0].numpy(), expected, rtol=1e-12)


def test_sobel_keeps_the_dtype_and_smooths_with_weights_3_10_3():
    u32, _, _ = _field(dtype=torch.float32)
    assert residuals.sobel(u32, DT, DX).dtype == torch.float32
    # A spike at (row 0, column 3); u = 0 on the interior row, so only u_t counts there:
    # u_t at (row 1, column c) = -(1/2) w[4 - c] / DT, the smoothing weight w = (3, 10, 3)/16 of that column.
    u = torch.zeros(1, 3, 5, dtype=torch.float64)
    u[0, 0, 3] = 1.0
    r = residuals.sobel(u, DT, DX)[0].numpy()  # the interior row, columns 1..3
    np.testing.assert_allclose(r, [[0.0, -3 / 32, -10 / 32]], atol=1e-15)


def _upwind_increasing(u: np.ndarray) -> np.ndarray:
    """(F_{i+1/2} - F_{i-1/2}) / dx for a positive increasing field with first-order states, outflow f(u_N-1)."""
    f = 0.5 * u**2
    return (f[..., 1:] - f[..., :-1]) / DX


def test_godunov1_residual_on_a_positive_increasing_field():
    u, _, _ = _field()
    r = residuals.godunov1(u, DT, DX)[0].numpy()
    un = u[0].numpy()
    expected = un[1:, 1:] - un[:-1, 1:] + DT * _upwind_increasing(un[1:])
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    # The same with viscosity: -nu (u_{i+1} - 2 u_i + u_{i-1}) / dx^2, ghost u_N = u_{N-1} at the outflow.
    np.testing.assert_allclose(residuals.godunov1(u, DT, DX, viscosity=0.0)[0].numpy(), r, rtol=0, atol=0)
    rv = residuals.godunov1(u, DT, DX, 0.05)[0].numpy()
    right = np.concatenate([un[1:, 2:], un[1:, -1:]], axis=1)
    lap = (right - 2 * un[1:, 1:] + un[1:, :-1]) / DX**2
    np.testing.assert_allclose(rv, expected - DT * 0.05 * lap, rtol=1e-12)


def _operator_on_a_linear_field(u: np.ndarray, limiter, viscosity: float) -> np.ndarray:
    """L(u) at columns 1..N-1 of a positive field linear in x (every difference B DX), by hand.

    With a limiter, interior slopes are B DX (equal differences); node 0 sees the ghost 0, so its slope
    is the limiter of (u_0, B DX); node N-1 sees the outflow ghosts, slope 0. Without one (first order)
    every slope is 0. With positive states the Godunov flux is f(left state): F_{k+1/2} = f(u_k + s_k/2),
    k < N-1, and F_{N-1/2} = f(u_{N-1}). The outflow ghost gives u_xx = -B / DX at the last node, 0 elsewhere.
    """
    left = u[..., :-1] + (0.5 * B * DX if limiter else 0.0)
    if limiter:
        left[..., 0] = u[..., 0] + 0.5 * limiter(u[..., 0], B * DX)
    flux = 0.5 * np.concatenate([left, u[..., -1:]], axis=-1) ** 2  # interfaces 1/2 .. N-1/2
    lap = np.zeros_like(u[..., 1:])
    lap[..., -1] = -B / DX
    return (flux[..., 1:] - flux[..., :-1]) / DX - viscosity * lap


def _van_leer(a, b):
    return 2 * a * b / (a + b)


def _superbee(a, b):
    return np.maximum(np.minimum(2 * a, b), np.minimum(a, 2 * b))


@pytest.mark.parametrize("viscosity", [0.0, 0.05])
@pytest.mark.parametrize("scheme", ["tvd2", "tvd2_cn", "godunov1_bdf2", "godunov1_cn"])
def test_muscl_schemes_on_a_linear_field_against_hand_computed_residuals(scheme, viscosity):
    u, _, _ = _field(nt=4, nx=6, c=0.0)
    un = u[0].numpy()
    limiter = {"tvd2": _van_leer, "tvd2_cn": _superbee}.get(scheme)  # the twins: no reconstruction
    lu = _operator_on_a_linear_field(un, limiter, viscosity)
    if scheme in ("tvd2", "godunov1_bdf2"):
        # Backward Euler on row 1, then BDF2 divided by 3/2.
        expected = np.concatenate([un[1:2, 1:] - un[:1, 1:] + DT * lu[1:2],
                                   un[2:, 1:] - (4 * un[1:-1, 1:] - un[:-2, 1:]) / 3 + 2 * DT / 3 * lu[2:]])
    else:  # Crank-Nicolson
        expected = un[1:, 1:] - un[:-1, 1:] + 0.5 * DT * (lu[1:] + lu[:-1])
    r = residuals.residual(scheme, u, DT, DX, viscosity)[0].numpy()
    assert r.shape == (3, 5)
    np.testing.assert_allclose(r, expected, rtol=1e-12, atol=1e-15)
    if viscosity == 0.0:  # inviscid unless told otherwise
        np.testing.assert_allclose(getattr(residuals, scheme)(u, DT, DX)[0].numpy(), expected, rtol=1e-12, atol=1e-15)


def test_unknown_scheme_names_the_choices():
    with pytest.raises(ValueError, match=r"^unknown residual scheme 'upwind'; choose one of godunov1, tvd2, "
                                         r"tvd2_cn, sobel$"):
        residuals.residual("upwind", torch.zeros(1, 3, 3), DT, DX)


@pytest.mark.parametrize("scheme", ["tvd2_cn", "godunov1_cn"])
def test_a_negative_field_is_upwinded_from_the_right_state(scheme):
    # u = -(0.2 + A t + B x) < 0 everywhere (a network's output can go negative): the Godunov flux of two
    # negative states is f(right state). Interior slopes are -B DX (either limiter), the slope at N-1 is 0
    # (outflow ghosts), so F_{k+1/2} = f(u_{k+1} + B DX / 2) for k + 1 < N-1 and f(u_{N-1}) at the last two
    # interfaces; without reconstruction F_{k+1/2} = f(u_{k+1}). The outflow ghost gives u_xx = B / DX there.
    u, _, _ = _field(nt=3, nx=6, c=0.0)
    u = -u
    un = u[0].numpy()
    half = 0.5 * B * DX if scheme == "tvd2_cn" else 0.0
    right = np.concatenate([un[:, 1:-1] + half, un[:, -1:], un[:, -1:]], axis=1)  # interfaces 1/2 .. N-1/2
    flux = 0.5 * right**2
    lap = np.zeros_like(un[:, 1:])
    lap[:, -1] = B / DX
    lu = (flux[:, 1:] - flux[:, :-1]) / DX - 0.05 * lap
    expected = un[1:, 1:] - un[:-1, 1:] + 0.5 * DT * (lu[1:] + lu[:-1])
    r = residuals.residual(scheme, u, DT, DX, 0.05)[0].numpy()
    np.testing.assert_allclose(r, expected, rtol=1e-12, atol=1e-15)
