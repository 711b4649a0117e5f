"""Stage `report`: figures a person would rather look at than read, plus a timing table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from diffnet import breakeven, io
from diffnet.config import config_from_yaml


def _save(fig, path: Path) -> None:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def _label(da) -> str:
    """Axis or colour-bar label from CF attributes: 'long_name [units]' (xarray's convention)."""
    name = da.attrs.get("long_name", da.name)
    units = da.attrs.get("units")
    return f"{name} [{units}]" if units else str(name)


def _picks(values: np.ndarray, n_show: int) -> np.ndarray:
    order = np.argsort(values)
    return order[np.linspace(0, len(values) - 1, min(n_show, len(values))).round().astype(int)]


def plot_fields(pred, ref, path: Path, n_show: int = 3, order_by: np.ndarray | None = None) -> None:
    """Per sample (lowest, median, highest of ``order_by``): the 2D inputs, DiffNet, each reference, error.

    Fields share colour limits taken from the data; the error map is symmetric about 0. Inputs spanning
    more than a decade (a diffusivity) are drawn on a log scale.
    """
    truth = ref.attrs.get("truth", "exact")
    methods = str(ref.attrs.get("methods", "exact fem")).split()
    dims = pred["u"].dims[1:]
    inputs = [n for n in str(pred.attrs.get("inputs", "")).split() if n in pred and pred[n].dims[1:] == dims]
    order_by = order_by if order_by is not None else np.arange(pred.sizes["sample"])
    picks = _picks(order_by, n_show)
    outer, inner = (pred[d].values for d in dims)
    extent = (inner[0], inner[-1], outer[0], outer[-1])
    ncols = len(inputs) + 1 + len(methods) + 1
    fig, axes = plt.subplots(len(picks), ncols, figsize=(3.6 * ncols, 3.2 * len(picks)), squeeze=False,
                             constrained_layout=True)
    params = str(pred.attrs.get("parameters", "")).split()
    for row, s in zip(axes, picks, strict=True):
        title = ", ".join(f"{k} = {pred[k].values[s]:.2f}" for k in params if pred[k].ndim == 1)
        for ax, name in zip(row, inputs, strict=False):
            f = pred[name].values[s]
            norm = matplotlib.colors.LogNorm() if f.min() > 0 and f.max() / f.min() > 10 else None
            im = ax.imshow(f, origin="lower", aspect="auto", extent=extent, cmap="cividis", norm=norm)
            ax.set_title(f"input {name}")
            fig.colorbar(im, ax=ax, label=_label(pred[name]), shrink=0.9)
        solutions = [("DiffNet", pred["u"].values[s])] + [(m, ref[f"u_{m}"].values[s]) for m in methods]
        lo = min(f.min() for _, f in solutions)
        hi = max(max(f.max() for _, f in solutions), lo + 1e-12)
        panels = row[len(inputs) : len(inputs) + len(solutions)]
        for ax, (name, f) in zip(panels, solutions, strict=True):
            im = ax.imshow(f, origin="lower", aspect="auto", extent=extent, vmin=lo, vmax=hi, cmap="viridis")
            ax.set_title(f"{name}" + (f" ({title})" if name == "DiffNet" and title else ""))
        fig.colorbar(im, ax=list(panels), label=f"u [{pred['u'].attrs.get('units', '1')}]", shrink=0.9)
        err = pred["u"].values[s] - ref[f"u_{truth}"].values[s]
        lim = max(np.abs(err).max(), 1e-12)
        im = row[-1].imshow(err, origin="lower", aspect="auto", extent=extent, vmin=-lim, vmax=lim, cmap="RdBu_r")
        rel = np.linalg.norm(err) / np.linalg.norm(ref[f"u_{truth}"].values[s])
        row[-1].set_title(f"DiffNet - {truth} (rel L2 {rel:.3f})")
        fig.colorbar(im, ax=row[-1], label="error in u")
        for ax in row:
            ax.set_xlabel(_label(pred[dims[1]]))
            ax.set_ylabel(_label(pred[dims[0]]))
    _save(fig, path)


def plot_error_vs_parameter(metrics, path: Path) -> None:
    """Errors of every solver against the family's summary parameter (c, or the diffusivity's contrast)."""
    name = io.summary_of(metrics)
    values = metrics[name].values
    order = np.argsort(values)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for m, marker in zip(metrics["solver"].values, "os^v", strict=False):
        for ax, key in ((axes[0], "rel_l2"), (axes[1], "l1")):
            ax.plot(values[order], metrics[key].sel(solver=m).values[order], marker=marker, label=str(m))
    if "rel_l2_discrete" in metrics:
        axes[0].plot(values[order], metrics["rel_l2_discrete"].values[order], marker="x", ls=":",
                     label="DiffNet vs its discrete solution")
    for ax, key in ((axes[0], "rel_l2"), (axes[1], "l1")):
        ax.set_xlabel(_label(metrics[name]))
        ax.set_ylabel(metrics[key].attrs.get("long_name", key).split(" against")[0])
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle(f"Error against the {metrics.attrs.get('truth', 'exact')} solution, held-out samples")
    _save(fig, path)


def plot_self_check(metrics, path: Path) -> None:
    """The self-check against the true error, per held-out sample: does the residual predict the error?"""
    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    if "residual" not in metrics:
        ax.text(0.5, 0.5, "no self-check in this prediction\n(model trained before the self-check existed)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        err = metrics["rel_l2"].sel(solver="diffnet").values
        res = metrics["residual"].values
        trusted = metrics["trusted"].values.astype(bool)
        ax.loglog(res[trusted], err[trusted], "o", label="trusted")
        if (~trusted).any():
            ax.loglog(res[~trusted], err[~trusted], "x", color="C3", label="untrusted")
        rho = metrics.attrs.get("spearman_residual_vs_rel_l2", float("nan"))
        ax.set_title(f"Self-check vs true error (Spearman {rho:.2f})")
        ax.set_xlabel(_label(metrics["residual"]).replace("self-check: ", ""))
        ax.set_ylabel(f"DiffNet relative L2 error vs {metrics.attrs.get('truth', 'exact')}")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    _save(fig, path)


def plot_loss(training: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    columns = [c for c in training.columns if c == "loss" or c.startswith("loss_")]
    # A residual loss is positive and spans decades (log scale); an energy has no sign (linear scale).
    positive = all(np.all(training[c].to_numpy() >= 0) for c in columns)
    for col in columns:
        values = training[col].to_numpy()
        if col != "loss" and len(columns) == 2 and np.allclose(values, training["loss"].to_numpy()):
            continue  # a single term is the total
        if np.any(values != 0):
            (ax.semilogy if positive else ax.plot)(training["step"], values,
                                                   label="total" if col == "loss" else col.removeprefix("loss_"))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over the global batch)")
    ax.set_title(f"Training loss ({int(training['ranks'].iloc[-1])} MPI ranks)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    _save(fig, path)


def timing_table(training: pd.DataFrame, pred, ref, n_train: int, batch: int) -> pd.DataFrame:
    seconds = float(training["seconds"].iloc[-1])
    steps = int(training["step"].iloc[-1])
    steps_per_epoch = max(1, n_train // batch)
    rows = [
        ("training wall time", seconds, "s"),
        ("training time per epoch", seconds / steps * steps_per_epoch, "s"),
        ("training throughput", steps * batch / seconds, "samples/s"),
        ("DiffNet inference per solution", float(pred["seconds_infer"].mean()), "s"),
        *((f"{m} per solution", float(ref[f"seconds_{m}"].mean()), "s")
          for m in str(ref.attrs.get("methods", "exact fem")).split()),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value", "unit"])


def plot_cost_vs_error(metrics, cost: breakeven.TrainingCost, path: Path) -> None:
    """Error against cost per query: the classical ladder as a curve, DiffNet as points with and without its
    training shared over 10^3 and 10^5 queries. Lower-left wins; a DiffNet point right of the curve at its
    own error height is a query the classical solver answers faster at equal error."""
    chosen = [m for m in ("rel_l2", "rel_h1", "qoi_error") if m in metrics["metric"].values]
    fig, axes = plt.subplots(1, len(chosen), figsize=(5.2 * len(chosen), 4.2), squeeze=False,
                             constrained_layout=True)
    t_net = float(metrics["network_seconds"])
    seconds = metrics["seconds_ladder"].mean("sample").values
    for ax, metric in zip(axes[0], chosen, strict=True):
        errors = np.median(metrics[f"ladder_{metric}"].values, axis=1)
        for solver in dict.fromkeys(metrics["rung_solver"].values):
            on = metrics["rung_solver"].values == solver
            ax.loglog(seconds[on], errors[on], "o-", label=f"classical: {solver}")
            for t, e, n in zip(seconds[on], errors[on], metrics["rung_nodes"].values[on], strict=True):
                ax.annotate(str(int(n)), (t, e), textcoords="offset points", xytext=(4, 4), fontsize=8)
        err = float(metrics["network_error"].sel(metric=metric))
        ax.loglog([t_net], [err], "*", ms=14, color="C3", label="DiffNet, inference only")
        for queries, marker in ((1e5, "s"), (1e3, "D")):
            t = float(breakeven.amortised_seconds(t_net, cost.wall_seconds, np.array([queries]))[0])
            ax.loglog([t], [err], marker, color="C3", mfc="none", label=f"DiffNet + training / {queries:.0e} queries")
        ax.set_xlabel("wall seconds per query")
        ax.set_ylabel(f"median {metric} over the held-out samples")
        ax.grid(alpha=0.3, which="both")
        ax.set_title(metrics[metric].attrs.get("long_name", metric).split(" against")[0], fontsize=9, wrap=True)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Error against cost, against the {metrics.attrs.get('truth', 'exact')} solution "
                 "(numbers: nodes of each classical grid)")
    _save(fig, path)


def stage_times(directory: Path) -> list[tuple[str, float, str]]:
    """Wall time of each finished stage, from Snakemake's `benchmark:` files (absent outside Snakemake)."""
    rows = []
    for tsv in sorted(directory.glob("*.tsv")) if directory.is_dir() else []:
        try:
            seconds = float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1])
        except (KeyError, IndexError, ValueError, pd.errors.ParserError):
            continue
        rows.append((f"stage {tsv.stem} wall time (Snakemake benchmark)", seconds, "s"))
    return rows


def report(prediction_path, reference_path, metrics_path, training_csv, out_dir: str | Path,
           stage_benchmarks: str | Path | None = None, chain: list[str | Path] | None = None) -> None:
    """Figures, timing.csv and break_even.csv. ``chain``: training.csv of every model this one was initialised
    from (directly or through others), whose training the break-even counts too."""
    out_dir = Path(out_dir)
    pred = io.read_prediction(prediction_path)
    ref = io.read_reference(reference_path)
    metrics = io.read_metrics(metrics_path)
    histories = [Path(training_csv), *(Path(c) for c in chain or [])]
    for path in histories:
        if not path.is_file():
            raise io.ContractError(f"input file '{path}' not found; it is written by `diffnet train`")
    if "matched_rung" not in metrics:
        raise io.ContractError(f"'{metrics_path}' has no error-matched comparison (written by an older diffnet); "
                               "rerun `diffnet reference` and `diffnet evaluate`")
    training = pd.read_csv(training_csv)
    cost = breakeven.training_cost(histories)
    summary = io.summary_of(metrics)
    plot_fields(pred, ref, out_dir / "fields.png", order_by=metrics[summary].values)
    plot_error_vs_parameter(metrics, out_dir / "error_vs_parameter.png")
    plot_loss(training, out_dir / "loss.png")
    plot_self_check(metrics, out_dir / "self_check.png")
    exp = config_from_yaml(ref.attrs["config"], ref.attrs["experiment"])
    table = timing_table(training, pred, ref, exp.sampling.n_train, exp.train.batch_size)
    plot_cost_vs_error(metrics, cost, out_dir / "cost_vs_error.png")
    matched = breakeven.table(metrics, cost, int(pred.attrs.get("threads", 1)))
    with io.atomic_path(out_dir / "break_even.csv") as tmp:
        matched.to_csv(tmp, index=False, float_format="%.6g")
    for _, row in matched.iterrows():
        print(breakeven.sentence(row))
    rel = matched.set_index("metric").loc["rel_l2"]
    table = pd.concat([table, pd.DataFrame([
        (f"training wall time, chain of {cost.runs} model(s)", cost.wall_seconds, "s"),
        (f"training core-hours, chain of {cost.runs} model(s)", cost.core_seconds / 3600.0, "core-h"),
        ("error-matched classical solve per solution (rel_l2)", rel["classical_seconds"], "s"),
        ("error-matched ratio t_classical / t_network (rel_l2)", rel["ratio_classical_over_diffnet"], "1"),
        (f"break-even queries (rel_l2): {rel['break_even_queries']}",
         float(rel["break_even_queries"]) if rel["break_even_queries"].isdigit() else float("nan"), "queries"),
    ], columns=table.columns)], ignore_index=True)
    if stage_benchmarks is not None:
        extra = pd.DataFrame(stage_times(Path(stage_benchmarks)), columns=table.columns)
        table = pd.concat([table, extra], ignore_index=True)
    with io.atomic_path(out_dir / "timing.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def plot_ensemble(ens, problem, out_dir: Path) -> None:
    """The many-query run: QoI histogram (network vs spot-check solves), mean and std maps, spot-check table."""
    out_dir = Path(out_dir)
    q = ens["qoi"]
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    bins = np.histogram_bin_edges(q.values, bins=min(40, max(5, int(np.sqrt(len(q))))))
    ax.hist(q.values, bins=bins, density=True, alpha=0.6, label=f"DiffNet, {len(q)} draws")
    if "spot_qoi_reference" in ens:
        ax.hist(ens["spot_qoi_reference"].values, bins=bins, density=True, histtype="step", lw=2,
                label=f"reference solver, {ens.sizes['spot']} spot checks")
    for source, style in zip(ens["estimator"].values, ("-", "--"), strict=False):
        row = ens.sel(estimator=source)
        ax.axvline(float(row["estimate_qoi_mean"]), color="k", ls=style, lw=1,
                   label=f"mean, {source} [{float(row['estimate_qoi_mean_low']):.4g}, "
                         f"{float(row['estimate_qoi_mean_high']):.4g}]")
    ax.set_xlabel(_label(q))
    ax.set_ylabel("density")
    title = "Quantity of interest over the ensemble"
    if "break_even" in ens.attrs:
        title += "\n" + str(ens.attrs["break_even"])
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    _save(fig, out_dir / "qoi.png")

    dims = ens["u_mean"].dims
    outer, inner = (ens[d].values for d in dims)
    extent = (inner[0], inner[-1], outer[0], outer[-1])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, name, cmap in ((axes[0], "u_mean", "viridis"), (axes[1], "u_std", "magma")):
        im = ax.imshow(ens[name].values, origin="lower", aspect="auto", extent=extent, cmap=cmap)
        ax.set_title(ens[name].attrs["long_name"])
        ax.set_xlabel(_label(ens[dims[1]]))
        ax.set_ylabel(_label(ens[dims[0]]))
        fig.colorbar(im, ax=ax)
    _save(fig, out_dir / "fields.png")

    columns = [v for v in ens.data_vars if v.startswith("spot_")]
    table = ens[columns].to_dataframe().reset_index(drop=True) if columns else pd.DataFrame()
    if columns:
        table.insert(1, "qoi_diffnet", ens["qoi"].values[: len(table)])
    with io.atomic_path(out_dir / "spot_checks.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
