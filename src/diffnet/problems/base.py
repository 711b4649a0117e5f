"""The interface every PDE family implements, and the space-time grid it lives on.

The pipeline (sample, train, infer, reference, evaluate, report) only talks to a ``Problem``. A new
family (Poisson with variable diffusivity, reaction-diffusion) is a new module implementing it; the
engine and the workflow do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class Grid:
    """Uniform node grid: x_i = i/(nx-1) on [0, 1], t_j = j t_end/(nt-1). Fields are (t, x)."""

    nx: int
    nt: int
    t_end: float

    @property
    def x(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.nx)

    @property
    def t(self) -> np.ndarray:
        return np.linspace(0.0, self.t_end, self.nt)

    @property
    def dx(self) -> float:
        return 1.0 / (self.nx - 1)

    @property
    def dt(self) -> float:
        return self.t_end / (self.nt - 1)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nt, self.nx)


@dataclass(frozen=True)
class ReferenceSolution:
    """Reference fields u(sample, t, x) with wall seconds per sample, keyed by method name."""

    fields: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]


class Problem(Protocol):
    """A parametric PDE family on a space-time grid.

    Parameters (e.g. the wavenumber c) are an array of shape (sample,); the initial data they define
    is what the network sees. Losses are returned per sample, so the engine can sum them over any
    split of the batch and divide by the global count (the result cannot depend on the rank count).
    """

    name: str
    grid: Grid
    parameter_name: str
    parameter_attrs: dict[str, str]

    def sample_parameters(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def initial_condition(self, params: np.ndarray) -> np.ndarray:
        """u0(sample, x) on the grid."""
        ...

    def network_input(self, u0: torch.Tensor) -> torch.Tensor:
        """(batch, channels, nt, nx) input of the generator for initial rows u0(batch, nx)."""
        ...

    @property
    def input_channels(self) -> int: ...

    def assemble(self, raw: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
        """Field u(batch, nt, nx) from the generator's raw output (imposes hard constraints)."""
        ...

    def loss_terms(self, u: torch.Tensor, raw: torch.Tensor, u0: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample loss terms {'pde', 'ic', 'bc'} (each shape (batch,)) and their weighted 'total'."""
        ...

    def reference(self, params: np.ndarray, methods: tuple[str, ...] = ("exact", "fem")) -> ReferenceSolution:
        ...
