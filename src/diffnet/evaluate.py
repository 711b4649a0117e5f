"""Stage `evaluate`: errors of DiffNet and of the FEM against the exact entropy solution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from diffnet import io
from diffnet.config import ExperimentConfig

METRIC_ATTRS = {
    "rel_l2": {"units": "1", "long_name": "relative L2 error over all space-time nodes"},
    "l1": {"units": "1", "long_name": "space-time L1 error (sum |e| dt dx)"},
    "linf": {"units": "1", "long_name": "maximum absolute error"},
}


def error_norms(u: np.ndarray, ref: np.ndarray, dt: float, dx: float) -> dict[str, np.ndarray]:
    """Per-sample errors of u(sample, t, x) against ref: relative L2, space-time L1, max norm."""
    e = (u - ref).reshape(len(u), -1)
    r = ref.reshape(len(ref), -1)
    return {
        "rel_l2": np.linalg.norm(e, axis=1) / np.linalg.norm(r, axis=1),
        "l1": np.abs(e).sum(axis=1) * dt * dx,
        "linf": np.abs(e).max(axis=1),
    }


def evaluate(exp: ExperimentConfig, prediction_path: str | Path, reference_path: str | Path,
             out_nc: str | Path, out_csv: str | Path) -> xr.Dataset:
    pred = io.read_prediction(prediction_path)
    ref = io.read_reference(reference_path)
    param = ref.attrs.get("parameter", "c")
    if pred.sizes != ref.sizes or not np.allclose(pred[param].values, ref[param].values):
        raise io.ContractError(f"'{prediction_path}' and '{reference_path}' hold different samples or grids; "
                               "rerun infer and reference from the same ics.nc")
    t, x = ref["t"].values, ref["x"].values
    dt, dx = t[1] - t[0], x[1] - x[0]
    exact = ref["u_exact"].values.astype(np.float64)
    methods = {"diffnet": pred["u"].values, "fem": ref["u_fem"].values}
    norms = {m: error_norms(u.astype(np.float64), exact, dt, dx) for m, u in methods.items()}
    data = {
        name: (("solver", "sample"), np.stack([norms[m][name] for m in methods]), attrs)
        for name, attrs in METRIC_ATTRS.items()
    }
    data[param] = ref[param]
    data["seconds_per_solution"] = (
        ("solver", "sample"),
        np.stack([pred["seconds_infer"].values, ref["seconds_fem"].values]),
        {"units": "s", "long_name": "wall time per solution"},
    )
    ds = xr.Dataset(data, coords={"solver": ("solver", list(methods), {"long_name": "solution method"}),
                                  "sample": ref["sample"]},
                    attrs=io.provenance(exp, "DiffNet error metrics against the exact entropy solution"))
    ds.attrs["parameter"] = param
    io.write_dataset(ds, out_nc)
    table = ds[[*METRIC_ATTRS, param]].to_dataframe().reset_index()
    with io.atomic_path(out_csv) as tmp:
        table[["sample", param, "solver", *METRIC_ATTRS]].to_csv(tmp, index=False, float_format="%.6g")
    return ds


def summary(ds: xr.Dataset) -> str:
    lines = []
    for m in ds["solver"].values:
        r = ds["rel_l2"].sel(solver=m).values
        lines.append(f"{m}: rel L2 median {np.median(r):.4f} max {np.max(r):.4f}; "
                     f"L1 median {np.median(ds['l1'].sel(solver=m).values):.4g}")
    return "\n".join(lines)
