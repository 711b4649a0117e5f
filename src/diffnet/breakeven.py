"""Is training worth it? The break-even of a trained model against the cheapest classical solve of equal error.

A surrogate answers N queries for T_train + N t_network; the error-matched classical solver (evaluate's
``matched_*``) for N t_classical. They cost the same at

    N* = T_train / (t_classical - t_network),

and the surrogate never pays off when t_network >= t_classical. T_train is the whole chain's: a model
initialised from another (coarse-to-fine, a cascade) also paid for the models below it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr


@dataclass(frozen=True)
class TrainingCost:
    """Wall seconds and core-seconds of every training in a chain, the model's own first."""

    wall_seconds: float
    core_seconds: float
    runs: int


def training_cost(histories: Sequence[str | Path]) -> TrainingCost:
    """Sum the final ``seconds`` of each training.csv, and seconds x ranks x threads per rank as core-seconds.

    Files written before training.csv had a ``threads`` column count one thread per rank.
    """
    wall = core = 0.0
    for path in histories:
        history = pd.read_csv(path)
        if history.empty:
            raise ValueError(f"'{path}' records no training steps; rerun `diffnet train`")
        last = history.iloc[-1]
        threads = float(last["threads"]) if "threads" in history else 1.0
        wall += float(last["seconds"])
        core += float(last["seconds"]) * float(last["ranks"]) * threads
    return TrainingCost(wall_seconds=wall, core_seconds=core, runs=len(histories))


def break_even(t_train: float, t_classical: float, t_network: float) -> float:
    """Queries N* after which the surrogate is cheaper in total; inf when it never is, nan when unmatched."""
    if math.isnan(t_classical):
        return float("nan")
    if t_network >= t_classical:
        return float("inf")
    return t_train / (t_classical - t_network)


def describe(n: float) -> str:
    if math.isnan(n):
        return "no ladder rung is as accurate"
    if math.isinf(n):
        return "never"
    return f"{math.ceil(n):d}"


def table(metrics: xr.Dataset, cost: TrainingCost, network_threads: int) -> pd.DataFrame:
    """One row per error measure: DiffNet's error, the matched classical solve, the ratio and the break-even.

    Core-hours count the network's queries at ``network_threads`` cores and a classical solve at one (the
    reference solvers are single-threaded scipy/numpy code).
    """
    rows = []
    t_net = float(metrics["network_seconds"])
    for metric in metrics["metric"].values:
        row = metrics.sel(metric=metric)
        rung = int(row["matched_rung"])
        t_c = float(row["matched_seconds"])
        n_wall = break_even(cost.wall_seconds, t_c, t_net)
        n_core = break_even(cost.core_seconds, t_c, t_net * network_threads)
        rows.append({
            "metric": str(metric),
            "diffnet_error": float(row["network_error"]),
            "classical_solver": str(metrics["rung_solver"].values[rung]) if rung >= 0 else "",
            "classical_nodes": int(metrics["rung_nodes"].values[rung]) if rung >= 0 else -1,
            "classical_error": float(row["matched_error"]),
            "classical_seconds": t_c,
            "diffnet_seconds": t_net,
            "ratio_classical_over_diffnet": float(row["matched_ratio"]),
            "training_seconds": cost.wall_seconds,
            "training_core_hours": cost.core_seconds / 3600.0,
            "break_even_queries": describe(n_wall),
            "break_even_queries_core_hours": describe(n_core),
        })
    return pd.DataFrame(rows)


def sentence(row: pd.Series) -> str:
    """The break-even in plain words, for the log and the README."""
    if row["classical_nodes"] < 0:
        return (f"{row['metric']}: DiffNet ({row['diffnet_error']:.3g}) is more accurate than every rung of the "
                "ladder; extend reference.ladder_factors to find its error-matched classical solve")
    head = (f"{row['metric']}: DiffNet {row['diffnet_error']:.3g} vs {row['classical_solver']} on "
            f"{row['classical_nodes']} nodes {row['classical_error']:.3g}; per query {row['diffnet_seconds']:.3g} s "
            f"vs {row['classical_seconds']:.3g} s")
    if row["break_even_queries"] == "never":
        return f"{head}: training never pays off (the classical solve of equal error is faster)"
    return (f"{head}: training ({row['training_seconds']:.0f} s) pays off after {row['break_even_queries']} "
            "queries")


def amortised_seconds(t_network: float, t_train: float, queries: np.ndarray) -> np.ndarray:
    """DiffNet's cost per query when the training is shared by ``queries`` queries."""
    return t_network + t_train / np.asarray(queries, dtype=np.float64)
