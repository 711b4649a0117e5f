"""The contract every PDE family implements, and the grids fields live on.

The stages (sample, train, infer, reference, evaluate, report), the engine and the workflow only talk
to a ``Problem``: what the field's axes are, which parameters a sample has (with their own dims), which
input fields are stored, what the network sees, which loss terms it is trained on, which reference
solvers exist and which of them is the truth. A new family is a new module here plus its numerics;
nothing else changes.

The per-sample ``condition`` is the one array the engine moves around: a (sample, ...) float array that
the family derives from a sample's parameters and inputs (Burgers: the IC row u0; the elliptic families:
the KL coefficients omega, plus kappa). The engine shards it over ranks and hands shards back to the
family's ``network_input``, ``assemble`` and ``loss_terms``; it never looks inside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class Grid:
    """Uniform space-time node grid: x_i = i/(nx-1) on [0, 1], t_j = j t_end/(nt-1). Fields are (t, x)."""

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
class Axis:
    """One named field axis with its node coordinates and CF attributes."""

    name: str
    values: np.ndarray
    attrs: dict[str, str]

    @property
    def size(self) -> int:
        return len(self.values)

    @property
    def spacing(self) -> float:
        return float(self.values[1] - self.values[0])


@dataclass(frozen=True)
class Variable:
    """A per-sample variable a family declares: its dims after ``sample`` and its CF attributes.

    ``shape``: sizes of ``dims`` where they are not field axes (omega's mode count).
    ``low``/``high`` (parameters only) are the range a sample may take when training; values outside it
    are extrapolation. ``valid`` says which values the family can take at all (see ``check_values``).
    """

    dims: tuple[str, ...]
    attrs: dict[str, str]
    shape: tuple[int, ...] = ()
    low: float | None = None
    high: float | None = None
    valid: str = "finite"  # "finite", "positive" or "nonnegative"


@dataclass(frozen=True)
class ReferenceSolution:
    """Reference fields u(sample, *axes) with wall seconds per sample, keyed by method name.

    ``qoi``: the family's quantity of interest per sample and method, each computed on the method's
    own grid (what a user of that solver would get), keyed like ``fields``.
    """

    fields: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]
    qoi: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Ladder:
    """Classical solves of the same samples on a ladder of grids (rungs), for the error-matched comparison.

    ``fields``: (rung, sample, *axes), each rung's solution on the network's grid (interpolated or
    sampled there). ``seconds``: (rung, sample) wall time per solve, that transfer included. ``qoi``:
    (rung, sample), computed on the rung's own grid. ``solver``: the method of each rung, ``nodes``:
    its node count along x (its cost grows with it).
    """

    fields: np.ndarray
    seconds: np.ndarray
    qoi: np.ndarray
    solver: tuple[str, ...]
    nodes: tuple[int, ...]


@dataclass(frozen=True)
class Metric:
    """An error measure the family reports beside the generic ones: its CF attributes."""

    long_name: str
    units: str = "1"


@dataclass(frozen=True)
class Solvers:
    """The classical solutions a family provides, and how the metrics use them.

    ``truth``: what every error is measured against. ``discrete``: the solution of the very discrete
    problem the network is trained on (its distance from the network is pure learning error), or None
    when the family has no such solver in its reference. ``long_names``: one per method.
    """

    long_names: dict[str, str]
    truth: str
    discrete: str | None = None
    extra_coords: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.long_names)


class Problem(Protocol):
    """A parametric PDE family on a 2D node grid (space-time or space-space).

    Losses are returned per sample, so the engine can sum them over any split of the batch and divide
    by the global count (the result cannot depend on the rank count).
    """

    name: str

    @property
    def axes(self) -> tuple[Axis, Axis]:
        """The field's two axes, outer first: (t, x) or (y, x)."""
        ...

    @property
    def parameters(self) -> dict[str, Variable]:
        """Sampled parameters, e.g. {'c': dims ()} or {'omega': dims ('mode',), 'kappa': dims ()}."""
        ...

    @property
    def inputs(self) -> dict[str, Variable]:
        """Input fields stored beside the parameters, e.g. {'u0': dims ('x',)} or {'nu': ('y', 'x')}."""
        ...

    @property
    def loss_names(self) -> tuple[str, ...]:
        """Per-sample loss terms ('total' excluded): the columns loss_<name> of training.csv."""
        ...

    @property
    def solvers(self) -> Solvers: ...

    @property
    def field_attrs(self) -> dict[str, str]: ...

    @property
    def input_channels(self) -> int: ...

    def sample_parameters(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]: ...

    def input_fields(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The stored input fields of these samples."""
        ...

    def condition(self, record: Mapping[str, np.ndarray]) -> np.ndarray:
        """(sample, ...) array the network and the loss take, from parameters and input fields."""
        ...

    def network_input(self, cond: torch.Tensor) -> torch.Tensor:
        """(batch, channels, n0, n1) generator input."""
        ...

    def assemble(self, raw: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Field u(batch, n0, n1) from the generator's raw output (imposes hard constraints)."""
        ...

    def loss_terms(self, u: torch.Tensor, raw: torch.Tensor, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample terms (each shape (batch,)), keyed by ``loss_names``, and their weighted 'total'."""
        ...

    def residual(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Per-sample self-check of a prediction (batch,): how far u is from solving its discrete problem."""
        ...

    def reference(self, params: Mapping[str, np.ndarray], methods: tuple[str, ...] | None = None
                  ) -> ReferenceSolution: ...

    def summary(self, params: Mapping[str, np.ndarray]) -> tuple[str, np.ndarray, dict[str, str]]:
        """One scalar per sample to plot errors against: (name, values, attrs)."""
        ...

    def reach(self) -> int:
        """Nodes along the widest axis that information travels: what the generator must see."""
        ...

    @property
    def qoi_attrs(self) -> dict[str, str]:
        """CF attributes of the quantity of interest (long_name, units, and a ``definition``)."""
        ...

    def qoi(self, u: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """The quantity of interest (sample,) of fields u(sample, *axes) on this family's grid."""
        ...

    @property
    def field_metrics(self) -> dict[str, Metric]:
        """Errors this family reports beyond rel_l2, l1 and linf (e.g. the gradient's); may be empty."""
        ...

    def field_errors(self, u: np.ndarray, truth: np.ndarray, params: Mapping[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        """Per-sample values (sample,) of ``field_metrics`` for fields u against the truth, on this grid."""
        ...

    def ladder(self, params: Mapping[str, np.ndarray], factors: tuple[float, ...]) -> Ladder:
        """Classical solves on grids of ``factors`` times this grid's intervals, timed, on this grid."""
        ...


class ParameterError(ValueError):
    """A parameter value the family cannot take (NaN, infinite, wrong length, out of its domain)."""


def check_values(problem: Problem, params: Mapping[str, np.ndarray]) -> list[str]:
    """Validate parameter arrays against the family's declarations; return the trained-range warnings.

    Raises ParameterError (one line, naming the parameter) for missing parameters, a wrong vector
    length, NaN or infinite values, and values the family cannot take (``valid``). Values outside the
    trained range [low, high] are allowed and reported, one line per parameter.
    """
    warnings = []
    for name, spec in problem.parameters.items():
        if name not in params:
            raise ParameterError(f"parameter '{name}' is missing; this {problem.name} model needs "
                                 f"{', '.join(problem.parameters)}")
        values = np.asarray(params[name], dtype=np.float64)
        if values.ndim != 1 + len(spec.dims):
            raise ParameterError(f"parameter '{name}' has shape {values.shape[1:]} per sample; expected "
                                 f"{len(spec.dims)} dims ({', '.join(spec.dims) or 'a scalar'})")
        if not np.all(np.isfinite(values)):
            raise ParameterError(f"parameter '{name}' holds NaN or infinite values; give finite numbers")
        if spec.shape and values.shape[1:] != spec.shape:
            raise ParameterError(f"parameter '{name}' needs {spec.shape[0]} values per sample ({spec.dims[0]} "
                                 f"count of this model), got {values.shape[-1]}")
        if spec.valid == "positive" and np.any(values <= 0):
            raise ParameterError(f"parameter '{name}' must be > 0 for the {problem.name} family "
                                 f"(got {values.min():g})")
        if spec.valid == "nonnegative" and np.any(values < 0):
            raise ParameterError(f"parameter '{name}' must be >= 0 for the {problem.name} family "
                                 f"(got {values.min():g})")
        if spec.low is not None and spec.high is not None:
            outside = (values < spec.low) | (values > spec.high)
            if np.any(outside):
                warnings.append(f"parameter '{name}': {int(np.sum(outside))} value(s) outside the trained range "
                                f"[{spec.low:g}, {spec.high:g}] (extrapolation; expect larger errors)")
    return warnings


def outside_trained_range(problem: Problem, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per parameter, which samples (bool (sample,)) lie outside the trained range [low, high]."""
    out = {}
    for name, spec in problem.parameters.items():
        if spec.low is None or spec.high is None:
            continue
        values = np.asarray(params[name], dtype=np.float64).reshape(len(params[name]), -1)
        out[name] = np.any((values < spec.low) | (values > spec.high), axis=1)
    return out


def accepts_fields(problem: Problem) -> bool:
    """Whether the family takes a user's own input fields (``diffnet infer --inputs``).

    Such a family implements ``from_inputs(fields) -> parameters``: the per-sample parameters of samples
    given by their input fields alone (Darcy: nu(sample, y, x)); its ``condition`` then works on them.
    """
    return callable(getattr(problem, "from_inputs", None))


def check_fields(problem: Problem, fields: Mapping[str, np.ndarray]) -> None:
    """Validate a user's input fields (sample, *dims) against the family's declarations (``Variable.valid``).

    Raises ParameterError (one line, naming the field, where the first bad value is, and the fix) for NaN or
    infinite values and values the family cannot take (nu <= 0).
    """
    for name, spec in problem.inputs.items():
        values = np.asarray(fields[name], dtype=np.float64)
        bad = ~np.isfinite(values)
        what, fix = "NaN or infinite", "give finite values everywhere"
        if not bad.any() and spec.valid in ("positive", "nonnegative"):
            bad = values <= 0 if spec.valid == "positive" else values < 0
            what = "non-positive" if spec.valid == "positive" else "negative"
            fix = f"{name} must be {'> 0' if spec.valid == 'positive' else '>= 0'} at every node"
        if bad.any():
            first = np.unravel_index(np.flatnonzero(bad)[0], values.shape)
            where = ", ".join(f"{d} {i}" for d, i in zip(("sample", *spec.dims), first, strict=True))
            raise ParameterError(f"input field '{name}' holds {int(bad.sum())} {what} value(s) (first at {where}: "
                                 f"{values[first]:g}); {fix}")
