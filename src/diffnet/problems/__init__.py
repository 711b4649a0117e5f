"""PDE families behind one interface (``base.Problem``); ``from_config`` picks one by name."""

from __future__ import annotations

from diffnet.config import ExperimentConfig
from diffnet.problems.base import Grid, Problem, ReferenceSolution
from diffnet.problems.burgers import Burgers

__all__ = ["Burgers", "Grid", "Problem", "ReferenceSolution", "from_config"]


def from_config(exp: ExperimentConfig) -> Problem:
    grid = Grid(nx=exp.grid.nx, nt=exp.grid.nt, t_end=exp.problem.t_end)
    if exp.problem.name == "burgers":
        return Burgers(
            grid=grid,
            c_min=exp.problem.c_min,
            c_max=exp.problem.c_max,
            scheme=exp.loss.scheme,
            residual_form=exp.loss.residual_form,
            constraint=exp.loss.constraint,
            penalty_weight=exp.loss.penalty_weight,
            viscosity=exp.loss.viscosity,
            fem_order=exp.reference.fem_order,
            fem_refine=exp.reference.fem_refine,
        )
    raise ValueError(f"unknown problem '{exp.problem.name}'")
