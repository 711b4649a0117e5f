"""Is training worth it? Every trained experiment against the cheapest classical solve of equal error.

    python benchmarks/break_even.py [--quick] [--results results] [--experiments burgers64 poisson64 ...]
                                    [--out benchmarks/results/break_even.md]

Full run: for each experiment whose model the workflow has trained (results/<exp>/model.pt, e.g. after
`snakemake --cores 2 results/poisson256/prediction.nc`), reruns on this machine, one stage after the other
with nothing else running, `diffnet infer` (held-out samples, 2 threads), `diffnet reference` (the truth and
the ladder of classical solves, each timed) and `diffnet evaluate`, then `diffnet report` with the whole
training chain (init_from), and tabulates for every error measure DiffNet's median error, the cheapest
classical rung at least as accurate, the per-query times, their ratio and the break-even
N* = T_train / (t_classical - t_network). Training times are those recorded in each training.csv.

--quick (under 3 minutes): trains a tiny Burgers and a tiny Poisson model (32^2, a few hundred steps) and
runs the same chain on them; its numbers say nothing about the shipped experiments.

Ends with `RESULT break_even_<exp>_<metric> <N*> info` lines (inf: never; nan: no rung as accurate).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline import REPO, Run, diffnet, pipeline
from _report import Report, cpu_description

FULL = ["burgers64", "burgers128", "burgers256", "poisson64", "poisson128", "poisson256", "reacdiff64"]
QUICK = {
    "quick_burgers": {"problem": {"name": "burgers"}, "grid": {"nx": 32, "nt": 32},
                      "sampling": {"n_train": 64, "n_test": 8, "seed": 3}, "model": {"base_channels": 8, "depth": 3},
                      "train": {"steps": 300, "batch_size": 8, "lr": 0.003}},
    "quick_poisson": {"problem": {"name": "poisson"}, "grid": {"nx": 32, "ny": 32},
                      "sampling": {"n_train": 64, "n_test": 8, "seed": 3}, "model": {"base_channels": 8, "depth": 3},
                      "train": {"steps": 300, "batch_size": 8, "lr": 0.003}},
}
SHOWN = ("rel_l2", "rel_l2_deviation", "rel_h1", "qoi_error")


def chain_of(results: Path, exp: str) -> list[str]:
    """training.csv of every experiment this one was initialised from, read from the resolved configs."""
    chain, name = [], exp
    while True:
        doc = yaml.safe_load((results / name / "config.yaml").read_text())
        name = doc["experiments"][name]["train"]["init_from"]
        if not name:
            return chain
        chain.append(str(results / name / "training.csv"))


def measure(run: Path, work: Path, chain: list[str]) -> pd.DataFrame:
    """infer, reference, evaluate and report on this machine; the break-even table of report."""
    measured = Run(run, out=work, omp_threads=None)
    measured.infer(threads=2)
    measured.reference(threads=1)
    measured.evaluate()
    diffnet("report", "--prediction", str(measured.prediction), "--reference", str(measured.reference_nc),
            "--metrics", str(measured.metrics), "--training", str(run / "training.csv"), "--chain", *chain,
            "--out-dir", str(work / "report"), omp_threads=None)
    return pd.read_csv(work / "report" / "break_even.csv")


def train_quick(root: Path, name: str, exp: dict) -> Path:
    return pipeline(root / name, {name: exp}, resolve=name, until="train", threads=2, omp_threads=None).dir


def n_star(text: str) -> float:
    if text == "never":
        return math.inf
    return float(text) if text.isdigit() else math.nan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models trained here (under 3 minutes)")
    p.add_argument("--results", type=Path, default=REPO / "results", help="the workflow's results directory")
    p.add_argument("--experiments", nargs="+", default=FULL)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    report = Report()
    emit = report.emit
    emit(f"# Break-even against the error-matched classical solve ({'quick' if a.quick else 'full'}), "
         f"{time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Machine: {cpu_description()}. Inference on 2 threads, classical solves single-threaded; every "
         "time measured in this run. Errors are medians over the held-out samples against the family's truth "
         "(Burgers: the exact entropy solution; elliptic: the 2x refined Q1 FEM). The classical column is the "
         "cheapest rung of the reference ladder whose median error is at most DiffNet's; training is the "
         "whole init_from chain as recorded in its training.csv files.\n")
    with tempfile.TemporaryDirectory(prefix="diffnet-breakeven-") as tmp:
        root = Path(tmp)
        if a.quick:
            runs = {name: (train_quick(root, name, exp), []) for name, exp in QUICK.items()}
        else:
            runs = {}
            for exp in a.experiments:
                run = a.results / exp
                if not (run / "model.pt").is_file():
                    emit(f"- {exp}: no trained model in {run}; skipped (train it with snakemake first)")
                    continue
                runs[exp] = (run, chain_of(a.results, exp))
        emit("| experiment | metric | DiffNet error | classical solve of equal error | its error | classical s/query "
             "| DiffNet s/query | ratio t_c/t_n | training s (chain) | break-even N* |")
        emit("|---|---|---|---|---|---|---|---|---|---|")
        summary = []
        for exp, (run, chain) in runs.items():
            table = measure(run, root / "measured" / exp, chain)
            for _, row in table.iterrows():
                if row["metric"] not in SHOWN:
                    continue
                solve = f"{row['classical_solver']}, {int(row['classical_nodes'])} nodes" \
                    if row["classical_nodes"] >= 0 else "none of the ladder"
                emit(f"| {exp} | {row['metric']} | {row['diffnet_error']:.3g} | {solve} | "
                     f"{row['classical_error']:.3g} | {row['classical_seconds']:.3g} | {row['diffnet_seconds']:.3g} | "
                     f"{row['ratio_classical_over_diffnet']:.3g} | {row['training_seconds']:.0f} | "
                     f"{row['break_even_queries']} |")
                report.results.append((f"break_even_{exp}_{row['metric']}", n_star(str(row["break_even_queries"])),
                                       "info"))
            rel = table.set_index("metric").loc["rel_l2"]
            summary.append(f"- {exp}: {rel['break_even_queries']} (rel L2 of u)")
        emit("\nBreak-even N* by experiment, in words (\"never\": a classical solve of equal error is faster than "
             "one inference):")
        for line in summary:
            emit(line)
    report.finish(a.out)


if __name__ == "__main__":
    main()
