"""Stage `sample`: draw the family's parameters and write samples.nc (train and test splits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffnet import io, problems
from diffnet.config import ExperimentConfig


def sample(exp: ExperimentConfig, out: str | Path) -> None:
    problem = problems.from_config(exp)
    s = exp.sampling
    rng = np.random.default_rng(s.seed)
    # Train and test come from one stream and are disjoint by construction: a test sample is never seen.
    params = problem.sample_parameters(s.n_train + s.n_test, rng)
    split = np.array(["train"] * s.n_train + ["test"] * s.n_test)
    ds = io.samples_dataset(exp, problem, params, problem.input_fields(params), split)
    io.write_dataset(ds, out)
