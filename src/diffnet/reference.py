"""Stage `reference`: the family's classical solutions of the test samples (exact, FEM, ...), timed, and the
same samples solved on a ladder of coarser and finer grids for the error-matched comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffnet import io, problems
from diffnet.config import ExperimentConfig
from diffnet.progress import track


def reference(exp: ExperimentConfig, samples_path: str | Path, out: str | Path, split: str = "test",
              chunk: int = 8) -> None:
    problem = problems.from_config(exp)
    samples = io.select_split(io.read_samples(samples_path), split)
    io.check_grid(samples, problem, samples_path, "the config's grid")
    params = io.parameters_of(samples)
    count = len(samples["sample"])
    solvers = problem.solvers
    # Solved in chunks of samples: still batched, and long high-resolution runs show progress.
    chunks = [{k: v[i : i + chunk] for k, v in params.items()} for i in range(0, count, chunk)]
    parts = [problem.reference(part) for part in track(chunks, len(chunks), "reference (chunks)")]
    fields = {m: np.concatenate([p.fields[m] for p in parts]) for m in solvers.methods}
    seconds = {m: np.concatenate([p.seconds[m] for p in parts]) for m in solvers.methods}
    qoi = {m: np.concatenate([p.qoi[m] for p in parts]) for m in solvers.methods}
    factors = tuple(exp.reference.ladder_factors)
    rungs = [problem.ladder(part, factors) for part in track(chunks, len(chunks), "reference ladder (chunks)")]
    ladder = problems.Ladder(fields=np.concatenate([r.fields for r in rungs], axis=1),
                             seconds=np.concatenate([r.seconds for r in rungs], axis=1),
                             qoi=np.concatenate([r.qoi for r in rungs], axis=1),
                             solver=rungs[0].solver, nodes=rungs[0].nodes)
    qoi_attrs = problem.qoi_attrs
    extra = {}
    for m in solvers.methods:
        extra[f"seconds_{m}"] = ("sample", seconds[m], {"units": "s", "long_name": f"{m} solve wall time per sample"})
        extra[f"qoi_{m}"] = ("sample", qoi[m], {**qoi_attrs, "long_name": f"{qoi_attrs['long_name']} ({m})"})
    ds = io.field_dataset(exp, problem, params, {f"u_{m}": (fields[m], solvers.long_names[m]) for m in solvers.methods},
                          extra=extra, title="DiffNet reference solutions")
    ds = io.with_ladder(ds, problem, ladder)
    ds.attrs["methods"] = " ".join(solvers.methods)
    ds.attrs["truth"] = solvers.truth
    if solvers.discrete:
        ds.attrs["discrete"] = solvers.discrete
    io.write_dataset(ds, out)
