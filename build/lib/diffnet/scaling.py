"""Scaling study: step time, throughput, efficiency and loss integrity across rank counts.

Each run is one ``diffnet train`` of the same experiment for a few steps (``config.scaling_experiment``)
at one rank count; this module reads their training.csv files and tabulates them. The first step is not
timed (allocator, thread pools and MPI connections warm up there), and a step's time is the median of the
rest, so one disturbed step does not move the figure.

strong mode: the global batch is fixed, ideal step time falls as 1/ranks, and the loss trajectory must be
the same at every rank count (the engine's loss integrity). weak mode: the batch per rank is fixed, ideal
step time is flat, and the losses legitimately differ (a larger global batch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from diffnet import io
from diffnet.config import load_experiment
from diffnet.machine import cpu_description


class ScalingError(ValueError):
    """A run directory that cannot be part of the study (missing or inconsistent files)."""


def step_seconds(seconds: np.ndarray) -> float:
    """Median time per step from training.csv's cumulative seconds, the first step left out."""
    per_step = np.diff(np.asarray(seconds, dtype=np.float64))
    if per_step.size == 0:
        raise ScalingError("a scaling run needs at least 2 steps to time")
    return float(np.median(per_step))


def efficiency(ranks: np.ndarray, seconds: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Speed-up and parallel efficiency relative to the smallest rank count r0.

    strong: speed-up = T(r0) / T(r), efficiency = speed-up * r0 / r. weak: the work grows with r, so
    speed-up = (r / r0) T(r0) / T(r) (throughput ratio) and efficiency = T(r0) / T(r).
    """
    ranks, seconds = np.asarray(ranks, dtype=np.float64), np.asarray(seconds, dtype=np.float64)
    base = int(np.argmin(ranks))
    r0, t0 = ranks[base], seconds[base]
    if mode == "strong":
        speedup = t0 / seconds
        return speedup, speedup * r0 / ranks
    if mode == "weak":
        return (ranks / r0) * t0 / seconds, t0 / seconds
    raise ValueError(f"unknown scaling mode '{mode}'; use strong or weak")


def _read_run(run: Path) -> tuple[int, int, pd.DataFrame, str]:
    config_path, history_path = run / "config.yaml", run / "training.csv"
    for path in (config_path, history_path):
        if not path.is_file():
            raise ScalingError(f"{path}: missing; a scaling run directory holds the config.yaml it was trained "
                               "with and its training.csv")
    exp = load_experiment(config_path)
    history = pd.read_csv(history_path)
    if history.empty or "ranks" not in history:
        raise ScalingError(f"{history_path}: no training steps recorded; rerun that run")
    return int(history["ranks"].iloc[-1]), exp.train.batch_size, history, exp.name


def summarise(runs: list[Path], mode: str) -> xr.Dataset:
    """The study as a Dataset with dim ``ranks`` (sorted)."""
    read = sorted((_read_run(Path(r)) for r in runs), key=lambda item: item[0])
    names = {item[3] for item in read}
    if len(names) != 1:
        raise ScalingError(f"scaling runs of different experiments ({', '.join(sorted(names))}); give one's runs")
    ranks = np.array([r for r, *_ in read])
    if len(set(ranks.tolist())) != len(ranks):
        raise ScalingError(f"two runs with the same rank count in {ranks.tolist()}")
    steps = {len(h) for _, _, h, _ in read}
    if len(steps) != 1:
        raise ScalingError(f"scaling runs trained different numbers of steps ({sorted(steps)}); rerun them")
    batch = np.array([b for _, b, _, _ in read])
    seconds = np.array([step_seconds(h["seconds"].to_numpy()) for _, _, h, _ in read])
    speedup, eff = efficiency(ranks, seconds, mode)
    losses = np.stack([h["loss"].to_numpy(np.float64) for _, _, h, _ in read])
    # Loss integrity: the whole trajectory, not only the last loss, compared with the baseline's.
    deviation = np.max(np.abs(losses - losses[0]) / np.abs(losses[0]), axis=1)
    if mode == "weak":
        deviation = np.full_like(deviation, np.nan)
    dim = "ranks"
    ds = xr.Dataset(
        {
            "step_seconds": (dim, seconds, {"long_name": "median wall time per training step", "units": "s"}),
            "samples_per_second": (dim, batch / seconds, {"long_name": "training throughput in samples per second",
                                                          "units": "s-1"}),
            "global_batch": (dim, batch, {"long_name": "samples per optimizer step (all ranks)", "units": "1"}),
            "speedup": (dim, speedup, {"long_name": f"{mode}-scaling speed-up over {ranks[0]} rank(s)",
                                       "units": "1"}),
            "efficiency": (dim, eff, {"long_name": f"{mode}-scaling parallel efficiency", "units": "1"}),
            "final_loss": (dim, losses[:, -1], {"long_name": "training loss at the last step", "units": "1"}),
            "loss_max_rel_deviation": (dim, deviation, {
                "long_name": f"largest relative loss difference from the {ranks[0]}-rank run over all steps",
                "units": "1",
                "comment": "loss integrity: ~1e-6 (float32 summation order) in strong mode; "
                           "not applicable (NaN) in weak mode, where the global batch changes"}),
        },
        coords={dim: (dim, ranks, {"long_name": "MPI ranks", "units": "1"})},
        attrs={
            "Conventions": io.CONVENTIONS,
            "title": f"DiffNet {mode}-scaling study of {read[0][3]}",
            "experiment": read[0][3],
            "mode": mode,
            "steps": int(next(iter(steps))),
            # The job that tabulates runs beside the training jobs (same partition), not on a login node.
            "machine": cpu_description(),
            "diffnet_version": io.package_version(),
            "git_commit": io.git_commit(),
            "history": "median step time over all steps but the first",
        },
    )
    return ds


def to_table(ds: xr.Dataset) -> pd.DataFrame:
    return ds.to_dataframe().reset_index()


def plot(ds: xr.Dataset, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = ds["ranks"].to_numpy()
    mode = ds.attrs["mode"]
    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(9, 3.6))
    t = ds["step_seconds"].to_numpy()
    ax_t.plot(ranks, t, "o-", label="measured")
    ideal = t[0] * ranks[0] / ranks if mode == "strong" else np.full_like(t, t[0])
    ax_t.plot(ranks, ideal, "k--", lw=1, label="ideal")
    ax_t.set(xlabel="MPI ranks", ylabel="seconds per step", xscale="log", yscale="log",
             title=f"{ds.attrs['experiment']}: {mode} scaling")
    ax_t.set_xticks(ranks, [str(r) for r in ranks])
    ax_t.legend()
    bars = ax_e.bar([str(r) for r in ranks], ds["efficiency"].to_numpy(), color="tab:blue")
    ax_e.bar_label(bars, fmt="%.2f")
    ax_e.axhline(1.0, color="k", lw=1, ls="--")
    ax_e.set(xlabel="MPI ranks", ylabel="parallel efficiency", ylim=(0, 1.15),
             title=f"on {ds.attrs['machine'].split(' (')[0]}")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def study(runs: list[Path], mode: str, out_nc: Path, out_csv: Path, out_png: Path) -> xr.Dataset:
    """Tabulate ``runs`` and write the NetCDF, CSV and plot (each atomically)."""
    ds = summarise(runs, mode)
    io.write_dataset(ds, out_nc)
    with io.atomic_path(out_csv) as tmp:
        to_table(ds).to_csv(tmp, index=False, float_format="%.6g")
    plot(ds, out_png)
    return ds
