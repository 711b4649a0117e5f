"""Stage `evaluate`: errors of DiffNet and of the classical solvers against the family's truth (Burgers: the
exact entropy solution; elliptic families: the refined FEM), and DiffNet's learning error where the family
has the solution of the discrete problem it trains on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from diffnet import io, problems
from diffnet.config import ExperimentConfig

METRIC_ATTRS = {
    "rel_l2": {"units": "1", "long_name": "relative L2 error over all nodes"},
    "l1": {"units": "1", "long_name": "L1 error (sum |e| times the node spacings)"},
    "linf": {"units": "1", "long_name": "maximum absolute error"},
}


def error_norms(u: np.ndarray, ref: np.ndarray, cell: float) -> dict[str, np.ndarray]:
    """Per-sample errors of u(sample, n0, n1) against ref: relative L2, L1 (cell = node area), max norm."""
    e = (u - ref).reshape(len(u), -1)
    r = ref.reshape(len(ref), -1)
    return {
        "rel_l2": np.linalg.norm(e, axis=1) / np.linalg.norm(r, axis=1),
        "l1": np.abs(e).sum(axis=1) * cell,
        "linf": np.abs(e).max(axis=1),
    }


def evaluate(exp: ExperimentConfig, prediction_path: str | Path, reference_path: str | Path,
             out_nc: str | Path, out_csv: str | Path) -> xr.Dataset:
    """Errors of DiffNet and of the other classical solvers against the family's truth, per sample."""
    problem = problems.from_config(exp)
    pred = io.read_prediction(prediction_path)
    ref = io.read_reference(reference_path)
    params = io.parameters_of(ref)
    same = pred.sizes == ref.sizes and all(np.allclose(pred[k].values, v) for k, v in params.items() if k in pred)
    if not same:
        raise io.ContractError(f"'{prediction_path}' and '{reference_path}' hold different samples or grids; "
                               "rerun infer and reference from the same ics.nc")
    solvers = problem.solvers
    cell = float(np.prod([a.spacing for a in problem.axes]))
    truth = ref[f"u_{solvers.truth}"].values.astype(np.float64)
    methods = {"diffnet": pred["u"].values, **{m: ref[f"u_{m}"].values for m in solvers.methods if m != solvers.truth}}
    norms = {m: error_norms(u.astype(np.float64), truth, cell) for m, u in methods.items()}
    data = {
        name: (("solver", "sample"), np.stack([norms[m][name] for m in methods]),
               {**attrs, "long_name": f"{attrs['long_name']} against the {solvers.truth} solution"})
        for name, attrs in METRIC_ATTRS.items()
    }
    if solvers.discrete:
        # The network can at best reach the discrete problem it is trained on: this is its learning error.
        discrete = ref[f"u_{solvers.discrete}"].values.astype(np.float64)
        data["rel_l2_discrete"] = ("sample", error_norms(pred["u"].values.astype(np.float64), discrete, cell)["rel_l2"],
                                   {"units": "1", "long_name": f"relative L2 error of DiffNet against the "
                                    f"{solvers.discrete} solution of the discrete problem it is trained on"})
    name, values, attrs = problem.summary(params)
    data[name] = ("sample", values, attrs)
    for var in ("residual", "trusted"):
        if var in pred:  # the prediction's self-check, beside the true error it is meant to predict
            data[var] = pred[var]
    data["seconds_per_solution"] = (
        ("solver", "sample"),
        np.stack([pred["seconds_infer"].values, *(ref[f"seconds_{m}"].values for m in methods if m != "diffnet")]),
        {"units": "s", "long_name": "wall time per solution"},
    )
    ds = xr.Dataset(data, coords={"solver": ("solver", list(methods), {"long_name": "solution method"}),
                                  "sample": ref["sample"]},
                    attrs=io.provenance(exp, f"DiffNet error metrics against the {solvers.truth} solution"))
    ds.attrs["truth"] = solvers.truth
    if "residual" in pred and len(pred["residual"]) > 2:
        rho = spearmanr(pred["residual"].values, norms["diffnet"]["rel_l2"]).statistic
        ds.attrs["spearman_residual_vs_rel_l2"] = float(rho)
    ds.attrs["summary"] = name
    ds.attrs["parameter"] = name  # read by tools written against the first Burgers files
    io.write_dataset(ds, out_nc)
    table = ds[[*METRIC_ATTRS, name]].to_dataframe().reset_index()
    with io.atomic_path(out_csv) as tmp:
        table[["sample", name, "solver", *METRIC_ATTRS]].to_csv(tmp, index=False, float_format="%.6g")
    return ds


def summary(ds: xr.Dataset) -> str:
    lines = []
    if "spearman_residual_vs_rel_l2" in ds.attrs:
        lines.append(f"self-check: Spearman rank correlation of residual and DiffNet rel L2 "
                     f"{ds.attrs['spearman_residual_vs_rel_l2']:.3f}; "
                     f"{int(np.sum(ds['trusted'].values == 0))} of {ds.sizes['sample']} samples untrusted")
    for m in ds["solver"].values:
        r = ds["rel_l2"].sel(solver=m).values
        lines.append(f"{m}: rel L2 median {np.median(r):.4f} max {np.max(r):.4f}; "
                     f"L1 median {np.median(ds['l1'].sel(solver=m).values):.4g}")
    return "\n".join(lines)
