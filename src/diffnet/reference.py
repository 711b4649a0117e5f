"""Stage `reference`: classical solutions of the test ICs (exact entropy solution and FEM), timed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffnet import io, problems
from diffnet.config import ExperimentConfig
from diffnet.problems import ReferenceSolution
from diffnet.progress import track


def reference(exp: ExperimentConfig, ics_path: str | Path, out: str | Path, split: str = "test",
              chunk: int = 8) -> None:
    problem = problems.from_config(exp)
    ics = io.select_split(io.read_ics(ics_path), split)
    params = ics[ics.attrs.get("parameter", "c")].values
    # Solved in chunks of samples: still batched, and long high-resolution runs show progress.
    chunks = [params[k : k + chunk] for k in range(0, len(params), chunk)]
    parts = [problem.reference(part) for part in track(chunks, len(chunks), "reference (chunks)")]
    sol = ReferenceSolution(
        fields={m: np.concatenate([p.fields[m] for p in parts]) for m in parts[0].fields},
        seconds={m: np.concatenate([p.seconds[m] for p in parts]) for m in parts[0].seconds},
    )
    g = problem.grid
    extra = {
        f"seconds_{m}": ("sample", sol.seconds[m],
                         {"units": "s", "long_name": f"{m} solve wall time per sample (batched solve / count)"})
        for m in sol.fields
    }
    ds = io.field_dataset(
        exp, g.t, g.x, params, problem.parameter_name, problem.parameter_attrs,
        {f"u_{m}": (f, f"{m} solution of u") for m, f in sol.fields.items()},
        extra=extra, title="DiffNet reference solutions",
    )
    ds["u_exact"].attrs["long_name"] = "exact entropy solution (Lax-Oleinik)"
    ds["u_fem"].attrs["long_name"] = "discontinuous Galerkin FEM solution"
    io.write_dataset(ds, out)

