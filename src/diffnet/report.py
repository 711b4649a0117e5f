"""Stage `report`: figures a person would rather look at than read, plus a timing table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from diffnet import io


def _save(fig, path: Path) -> None:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_fields(pred, ref, path: Path, n_show: int = 3) -> None:
    param = ref.attrs.get("parameter", "c")
    c = ref[param].values
    order = np.argsort(c)
    picks = order[np.linspace(0, len(c) - 1, min(n_show, len(c))).round().astype(int)]
    t, x = ref["t"].values, ref["x"].values
    extent = (x[0], x[-1], t[0], t[-1])
    fig, axes = plt.subplots(len(picks), 4, figsize=(14, 3.2 * len(picks)), squeeze=False, constrained_layout=True)
    for row, s in zip(axes, picks, strict=True):
        u, ue, uf = pred["u"].values[s], ref["u_exact"].values[s], ref["u_fem"].values[s]
        vmax = max(ue.max(), u.max(), 1e-12)
        for ax, f, title in zip(row[:3], (u, ue, uf), ("DiffNet", "exact (Lax-Oleinik)", "FEM (DG)"), strict=True):
            im = ax.imshow(f, origin="lower", aspect="auto", extent=extent, vmin=0, vmax=vmax, cmap="viridis")
            ax.set_title(f"{title}, {param} = {c[s]:.2f}")
        fig.colorbar(im, ax=row[:3], label="u", shrink=0.9)
        err = u - ue
        lim = max(np.abs(err).max(), 1e-12)
        im = row[3].imshow(err, origin="lower", aspect="auto", extent=extent, vmin=-lim, vmax=lim, cmap="RdBu_r")
        rel = np.linalg.norm(err) / np.linalg.norm(ue)
        row[3].set_title(f"DiffNet - exact (rel L2 {rel:.3f})")
        fig.colorbar(im, ax=row[3], label="error in u")
        for ax in row:
            ax.set_xlabel("x")
            ax.set_ylabel("t")
    _save(fig, path)


def plot_error_vs_c(metrics, path: Path) -> None:
    param = metrics.attrs.get("parameter", "c")
    c = metrics[param].values
    order = np.argsort(c)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for m, marker in zip(metrics["solver"].values, "os", strict=False):
        for ax, name, label in ((axes[0], "rel_l2", "relative L2 error"), (axes[1], "l1", "space-time L1 error")):
            ax.plot(c[order], metrics[name].sel(solver=m).values[order], marker=marker, label=str(m))
            ax.set_xlabel(f"{param} (IC wavenumber)")
            ax.set_ylabel(label)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Error against the exact entropy solution, held-out ICs")
    _save(fig, path)


def plot_loss(training: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for col, label in (("loss", "total"), ("loss_pde", "PDE residual"), ("loss_ic", "initial condition"),
                       ("loss_bc", "boundary condition")):
        values = training[col].to_numpy()
        if np.any(values > 0):
            ax.semilogy(training["step"], values, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean squared residual (units of u^2)")
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
        ("exact solution per solution", float(ref["seconds_exact"].mean()), "s"),
        ("FEM per solution", float(ref["seconds_fem"].mean()), "s"),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value", "unit"])


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
           stage_benchmarks: str | Path | None = None) -> None:
    out_dir = Path(out_dir)
    pred = io.read_prediction(prediction_path)
    ref = io.read_reference(reference_path)
    metrics = io.read_metrics(metrics_path)
    if not Path(training_csv).is_file():
        raise io.ContractError(f"input file '{training_csv}' not found; it is written by `diffnet train`")
    training = pd.read_csv(training_csv)
    plot_fields(pred, ref, out_dir / "fields.png")
    plot_error_vs_c(metrics, out_dir / "error_vs_c.png")
    plot_loss(training, out_dir / "loss.png")
    cfg = yaml.safe_load(ref.attrs["config"])
    exp = next(iter(cfg["experiments"].values()))
    table = timing_table(training, pred, ref, exp["sampling"]["n_train"], exp["train"]["batch_size"])
    if stage_benchmarks is not None:
        extra = pd.DataFrame(stage_times(Path(stage_benchmarks)), columns=table.columns)
        table = pd.concat([table, extra], ignore_index=True)
    with io.atomic_path(out_dir / "timing.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
