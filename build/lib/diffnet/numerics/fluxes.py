"""Numerical fluxes for scalar conservation laws u_t + f(u)_x = 0 with f(u) = u^2/2.

Every function works unchanged on numpy arrays and torch tensors (only ``clip`` and arithmetic are
used), so the training loss, the marching solvers and the finite-volume references share one flux.
"""

from __future__ import annotations

from typing import TypeVar

Array = TypeVar("Array")


def burgers_flux(u: Array) -> Array:
    """Physical flux f(u) = u^2 / 2."""
    return 0.5 * u * u


def godunov_flux(ul: Array, ur: Array) -> Array:
    """Exact Godunov flux of Burgers for any signs of the left and right states.

    For a convex flux with its minimum at u = 0 the Riemann problem gives
    F(ul, ur) = max(f(max(ul, 0)), f(min(ur, 0))): upwind for one-signed data, 0 for a sonic
    rarefaction, the larger flux across a transonic shock. Network outputs can be negative, so the
    one-signed shortcut f(ul) would be wrong.
    """
    left = burgers_flux(ul.clip(min=0))
    right = burgers_flux(ur.clip(max=0))
    return left + (right - left).clip(min=0)
