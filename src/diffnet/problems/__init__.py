"""PDE families behind one contract (``base.Problem``); ``from_config`` picks one by name."""

from __future__ import annotations

from diffnet.config import ExperimentConfig
from diffnet.problems.base import (
    Axis,
    Grid,
    Ladder,
    Metric,
    ParameterError,
    Problem,
    ReferenceSolution,
    Solvers,
    Variable,
    accepts_fields,
    check_fields,
    check_values,
    outside_trained_range,
)
from diffnet.problems.burgers import Burgers
from diffnet.problems.darcy import Darcy
from diffnet.problems.elliptic import Poisson, ReactionDiffusion

__all__ = ["Axis", "Burgers", "Darcy", "Grid", "Ladder", "Metric", "ParameterError", "Poisson", "Problem",
           "ReactionDiffusion", "ReferenceSolution", "Solvers", "Variable", "accepts_fields", "check_fields",
           "check_values", "from_config", "outside_trained_range"]

FAMILIES = {"burgers": Burgers, "poisson": Poisson, "reaction_diffusion": ReactionDiffusion,
            "darcy": Darcy}


def from_config(exp: ExperimentConfig) -> Problem:
    try:
        family = FAMILIES[exp.problem.name]
    except KeyError:
        raise ValueError(f"unknown problem '{exp.problem.name}' (known: {', '.join(FAMILIES)})") from None
    return family.from_config(exp)
