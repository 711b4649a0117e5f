"""`diffnet compare`: one table of errors and timings across runs, refusing apples-to-oranges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from diffnet import io


class CompareError(ValueError):
    pass


def _identity(ds: xr.Dataset, path: Path) -> dict:
    """What must match for errors to be comparable: the PDE family, its parameter range and the grid."""
    exp = next(iter(yaml.safe_load(ds.attrs["config"])["experiments"].values()))
    return {"problem": exp["problem"], "grid": exp["grid"]}


def compare(run_dirs: list[str | Path]) -> pd.DataFrame:
    paths = [Path(r) / "metrics.nc" for r in run_dirs]
    identities = []
    for path in paths:
        ds = io.read_metrics(path)
        identities.append(_identity(ds, path))
    first = identities[0]
    for path, ident in zip(paths[1:], identities[1:], strict=True):
        for key in ("problem", "grid"):
            if ident[key] != first[key]:
                raise CompareError(f"cannot compare '{path.parent}' with '{paths[0].parent}': their {key} differs "
                                   f"({ident[key]} vs {first[key]})")
    # Explicit combine arguments: the result must not depend on xarray's changing defaults.
    with xr.open_mfdataset(paths, combine="nested", concat_dim="run", data_vars="all", coords="different",
                           compat="equals", join="outer", combine_attrs="drop_conflicts") as ds:
        ds = ds.load()
    rows = []
    for k, run_dir in enumerate(run_dirs):
        run = ds.isel(run=k)
        training = Path(run_dir) / "training.csv"
        train_s = float(pd.read_csv(training)["seconds"].iloc[-1]) if training.is_file() else float("nan")
        for solver in run["solver"].values:
            sel = run.sel(solver=solver)
            rel = sel["rel_l2"].values
            rows.append({
                "run": str(run_dir), "solver": str(solver),
                "median_rel_l2": np.nanmedian(rel), "max_rel_l2": np.nanmax(rel),
                "median_l1": np.nanmedian(sel["l1"].values),
                "seconds_per_solution": np.nanmean(sel["seconds_per_solution"].values),
                "training_seconds": train_s if solver == "diffnet" else float("nan"),
            })
    return pd.DataFrame(rows)
