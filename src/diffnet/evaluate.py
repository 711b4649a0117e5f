"""Stage `evaluate`: errors of DiffNet and of the classical solvers against the family's truth (Burgers: the
exact entropy solution; elliptic families: the refined FEM), DiffNet's learning error where the family has
the solution of the discrete problem it trains on, and the error-matched comparison: for every error
measure, the cheapest classical solve of the reference ladder that is at least as accurate as DiffNet."""

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
QOI_ERROR = "qoi_error"


def error_norms(u: np.ndarray, ref: np.ndarray, cell: float) -> dict[str, np.ndarray]:
    """Per-sample errors of u(sample, n0, n1) against ref: relative L2, L1 (cell = node area), max norm."""
    e = (u - ref).reshape(len(u), -1)
    r = ref.reshape(len(ref), -1)
    return {
        "rel_l2": np.linalg.norm(e, axis=1) / np.linalg.norm(r, axis=1),
        "l1": np.abs(e).sum(axis=1) * cell,
        "linf": np.abs(e).max(axis=1),
    }


def metric_attrs(problem: problems.Problem) -> dict[str, dict[str, str]]:
    """Every error measure evaluate reports for this family, in order: generic, the family's, the QoI's."""
    family = {k: {"units": m.units, "long_name": m.long_name} for k, m in problem.field_metrics.items()}
    qoi = {"units": "1", "long_name": f"relative error of the {problem.qoi_attrs['long_name']}"}
    return {**METRIC_ATTRS, **family, QOI_ERROR: qoi}


def all_errors(problem: problems.Problem, u: np.ndarray, qoi: np.ndarray, truth: np.ndarray,
               truth_qoi: np.ndarray, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every measure of ``metric_attrs`` for fields u (sample, *axes) and their QoIs against the truth."""
    cell = float(np.prod([a.spacing for a in problem.axes]))
    u = np.asarray(u, dtype=np.float64)
    return {**error_norms(u, truth, cell), **problem.field_errors(u, truth, params),
            QOI_ERROR: np.abs(qoi - truth_qoi) / np.abs(truth_qoi)}


def match(network_error: np.ndarray, network_seconds: float, ladder_errors: np.ndarray,
          ladder_seconds: np.ndarray) -> dict[str, float]:
    """The cheapest rung whose median error is at most the network's median error.

    ``ladder_errors`` (rung, sample), ``ladder_seconds`` (rung, sample). Returns the rung index (-1 when
    no rung is as accurate: the network beats the whole ladder), its median error and mean seconds per
    solve, and the ratio t_classical / t_network (> 1: the network answers a query faster).
    """
    target = float(np.median(network_error))
    medians = np.median(ladder_errors, axis=1)
    cost = np.mean(ladder_seconds, axis=1)
    ok = np.flatnonzero(medians <= target)
    if ok.size == 0:
        return {"rung": -1, "error": float("nan"), "seconds": float("nan"), "ratio": float("nan"),
                "network_error": target}
    best = int(ok[np.argmin(cost[ok])])
    return {"rung": best, "error": float(medians[best]), "seconds": float(cost[best]),
            "ratio": float(cost[best] / network_seconds), "network_error": target}


def evaluate(exp: ExperimentConfig, prediction_path: str | Path, reference_path: str | Path,
             out_nc: str | Path, out_csv: str | Path) -> xr.Dataset:
    """Errors of DiffNet and of the other classical solvers against the family's truth, per sample."""
    problem = problems.from_config(exp)
    pred = io.read_prediction(prediction_path)
    ref = io.read_reference(reference_path)
    params = io.parameters_of(ref)
    same = all(pred.sizes[d] == ref.sizes[d] for d in pred["u"].dims) and \
        all(np.allclose(pred[k].values, v) for k, v in params.items() if k in pred)
    if not same:
        raise io.ContractError(f"'{prediction_path}' and '{reference_path}' hold different samples or grids; "
                               "rerun infer and reference from the same samples.nc")
    if "u_ladder" not in ref:
        raise io.ContractError(f"'{reference_path}' has no ladder of classical solves (written by an older "
                               "diffnet); rerun `diffnet reference`")
    solvers = problem.solvers
    attrs = metric_attrs(problem)
    truth = ref[f"u_{solvers.truth}"].values.astype(np.float64)
    truth_qoi = ref[f"qoi_{solvers.truth}"].values
    fields = {"diffnet": pred["u"].values, **{m: ref[f"u_{m}"].values for m in solvers.methods if m != solvers.truth}}
    qois = {"diffnet": problem.qoi(pred["u"].values, params),
            **{m: ref[f"qoi_{m}"].values for m in fields if m != "diffnet"}}
    errors = {m: all_errors(problem, u, qois[m], truth, truth_qoi, params) for m, u in fields.items()}
    methods = list(fields)
    data = {
        name: (("solver", "sample"), np.stack([errors[m][name] for m in methods]),
               {**a, "long_name": f"{a['long_name']} against the {solvers.truth} solution"})
        for name, a in attrs.items()
    }
    q = problem.qoi_attrs
    data["qoi"] = (("solver", "sample"), np.stack([qois[m] for m in methods]), q)
    data["qoi_truth"] = ("sample", truth_qoi, {**q, "long_name": f"{q['long_name']} ({solvers.truth})"})
    if solvers.discrete:
        # The network can at best reach the discrete problem it is trained on: this is its learning error.
        discrete = ref[f"u_{solvers.discrete}"].values.astype(np.float64)
        data["rel_l2_discrete"] = ("sample", error_norms(pred["u"].values.astype(np.float64), discrete, 1.0)["rel_l2"],
                                   {"units": "1", "long_name": f"relative L2 error of DiffNet against the "
                                    f"{solvers.discrete} solution of the discrete problem it is trained on"})
    name, values, summary_attrs = problem.summary(params)
    data[name] = ("sample", values, summary_attrs)
    for var in ("residual", "trusted"):
        if var in pred:  # the prediction's self-check, beside the true error it is meant to predict
            data[var] = pred[var]
    seconds = np.stack([pred["seconds_infer"].values, *(ref[f"seconds_{m}"].values for m in methods if m != "diffnet")])
    data["seconds_per_solution"] = (("solver", "sample"), seconds,
                                    {"units": "s", "long_name": "wall time per solution"})
    data.update(_ladder_and_match(problem, ref, params, truth, truth_qoi, errors["diffnet"],
                                  float(np.mean(pred["seconds_infer"].values)), attrs))
    ds = xr.Dataset(data, coords={"solver": ("solver", methods, {"long_name": "solution method"}),
                                  "sample": ref["sample"], "rung": ref["rung"], "rung_solver": ref["rung_solver"],
                                  "rung_nodes": ref["rung_nodes"],
                                  "metric": ("metric", list(attrs), {"long_name": "error measure"})},
                    attrs=io.provenance(exp, f"DiffNet error metrics against the {solvers.truth} solution"))
    ds.attrs["truth"] = solvers.truth
    if "residual" in pred and len(pred["residual"]) > 2:
        rho = spearmanr(pred["residual"].values, errors["diffnet"]["rel_l2"]).statistic
        ds.attrs["spearman_residual_vs_rel_l2"] = float(rho)
    ds.attrs["summary"] = name
    ds.attrs["parameter"] = name  # read by tools written against the first Burgers files
    io.write_dataset(ds, out_nc)
    table = ds[[*attrs, "qoi", name]].to_dataframe().reset_index()
    with io.atomic_path(out_csv) as tmp:
        table[["sample", name, "solver", *attrs, "qoi"]].to_csv(tmp, index=False, float_format="%.6g")
    return ds


def _ladder_and_match(problem, ref: xr.Dataset, params, truth, truth_qoi, network_errors, network_seconds, attrs
                      ) -> dict[str, tuple]:
    """Errors of every ladder rung, and per error measure the cheapest rung as accurate as DiffNet."""
    u_ladder = ref["u_ladder"].values
    rung_errors = [all_errors(problem, u_ladder[r], ref["qoi_ladder"].values[r], truth, truth_qoi, params)
                   for r in range(u_ladder.shape[0])]
    seconds = ref["seconds_ladder"].values
    out: dict[str, tuple] = {
        f"ladder_{k}": (("rung", "sample"), np.stack([e[k] for e in rung_errors]),
                        {**a, "long_name": f"{a['long_name']} of the ladder rung"})
        for k, a in attrs.items()
    }
    out["seconds_ladder"] = (("rung", "sample"), seconds, dict(ref["seconds_ladder"].attrs))
    matched = {k: match(network_errors[k], network_seconds, out[f"ladder_{k}"][1], seconds) for k in attrs}
    col = {key: np.array([matched[k][key] for k in attrs]) for key in ("rung", "error", "seconds", "ratio",
                                                                       "network_error")}
    out["matched_rung"] = ("metric", col["rung"].astype(np.int32),
                           {"long_name": "cheapest ladder rung at least as accurate as DiffNet (median over "
                            "samples; -1: none is)"})
    out["matched_error"] = ("metric", col["error"], {"units": "1", "long_name": "median error of the matched rung"})
    out["network_error"] = ("metric", col["network_error"], {"units": "1", "long_name": "median error of DiffNet"})
    out["matched_seconds"] = ("metric", col["seconds"],
                              {"units": "s", "long_name": "mean wall time per solve of the matched rung"})
    out["network_seconds"] = ((), network_seconds, {"units": "s", "long_name": "DiffNet inference per solution"})
    out["matched_ratio"] = ("metric", col["ratio"],
                            {"units": "1", "long_name": "error-matched ratio t_classical / t_network (> 1: DiffNet "
                             "answers a query faster)"})
    return out


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
    if "matched_rung" in ds:
        for metric in ds["metric"].values:
            row = ds.sel(metric=metric)
            rung = int(row["matched_rung"])
            if rung < 0:
                lines.append(f"error-matched ({metric}): DiffNet {float(row['network_error']):.3g} is more accurate "
                             "than every rung of the ladder")
            else:
                lines.append(f"error-matched ({metric}): DiffNet {float(row['network_error']):.3g} ~ "
                             f"{ds['rung_solver'].values[rung]} on {int(ds['rung_nodes'].values[rung])} nodes "
                             f"({float(row['matched_error']):.3g}, {float(row['matched_seconds']):.3g} s/solve); "
                             f"t_classical / t_network = {float(row['matched_ratio']):.3g}")
    return "\n".join(lines)
