"""The many-query job: poisson64's ensemble of 1024 Sobol draws through Snakemake, and how right it is.

    python benchmarks/ensemble.py [--quick] [--experiment poisson64] [--out benchmarks/results/ensemble.md]

Needs the experiment trained by the workflow (results/<exp>/model.pt). Builds its metrics first (reference
and evaluate, untimed), then times `snakemake results/<exp>/ensemble.nc` with the ensemble configured in
config/config.yaml (chunks as jobs on 2 cores, spot checks in the gather). Then solves every one of the same
draws with the reference solver (the 2x refined Q1 FEM) and compares the two Monte Carlo estimates of the
QoI's mean: the network's 95% interval is statistical only, the reference's is the target's.

--quick: 128 draws (set on the command line), and 128 reference solves.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline import REPO, snakemake
from _report import Report, cpu_description

from diffnet import ensemble, problems
from diffnet.config import load_experiment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--experiment", default="poisson64")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    exp_name = a.experiment
    run = REPO / "results" / exp_name
    if not (run / "model.pt").is_file():
        raise SystemExit(f"no trained model in {run}; run `snakemake --cores 2 {run.relative_to(REPO)}/model.pt` first")
    report = Report()
    emit = report.emit
    mode = "quick" if a.quick else "full"
    emit(f"# Ensemble: many queries of {exp_name} ({mode}), {time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Machine: {cpu_description()}.\n")
    snakemake(f"results/{exp_name}/metrics.nc")
    extra = ["--config", f"ensembles={{{exp_name}: {{n: 128, chunks: 4, spot_checks: 16}}}}"] if a.quick else []
    start = time.perf_counter()
    snakemake(f"results/{exp_name}/ensemble.nc", "--forcerun", "ensemble_chunk", *extra)
    seconds = time.perf_counter() - start
    ens = xr.open_dataset(run / "ensemble.nc")
    n = ens.sizes["sample"]
    emit(f"`snakemake results/{exp_name}/ensemble.nc` (forced: {ens.attrs['ensemble_chunks']} chunk jobs + the "
         f"gather with {ens.sizes.get('spot', 0)} spot checks): **{seconds:.1f} s** wall for {n} draws "
         f"({1e3 * float(ens['seconds'].mean()):.2f} ms of inference per draw, batched).\n")
    emit(ensemble.summary(ens).replace("\n", "  \n") + "\n")

    problem = problems.from_config(load_experiment(run / "config.yaml"))
    truth = problem.solvers.truth
    params = {name: ens[name].values for name in problem.parameters}
    start = time.perf_counter()
    solved = problem.reference(params, methods=(truth,))
    solve_seconds = time.perf_counter() - start
    ref = solved.qoi[truth]
    net = ens["qoi"].values
    m_ref, lo, hi = ensemble.mean_interval(ref)
    m_net, nlo, nhi = ensemble.mean_interval(net)
    rel = np.abs(net - ref) / np.abs(ref)
    emit(f"Reference: the {truth} solver on all {n} draws took {solve_seconds:.1f} s "
         f"({1e3 * solve_seconds / n:.1f} ms per solve).\n")
    emit("| estimator | draws | E[QoI] | 95% interval |")
    emit("|---|---|---|---|")
    emit(f"| DiffNet | {n} | {m_net:.6g} | [{nlo:.6g}, {nhi:.6g}] |")
    emit(f"| reference solver | {n} | {m_ref:.6g} | [{lo:.6g}, {hi:.6g}] |")
    emit(f"\nPer draw, DiffNet's QoI against the reference: relative error median {np.median(rel):.3g}, 95th "
         f"percentile {np.quantile(rel, 0.95):.3g}, max {rel.max():.3g}; mean bias "
         f"{np.mean(net - ref):.3g} ({np.mean(net - ref) / m_ref:.3g} relative). The two estimates use the same "
         "draws, so their difference is the network's bias alone.")
    inside = lo <= m_net <= hi
    report.results += [
        ("ensemble_snakemake_seconds", seconds, "info" if a.quick else "<=300"),
        ("network_mean_inside_reference_interval", float(inside), ">=1"),
        ("qoi_relative_error_median", float(np.median(rel)), "info"),
    ]
    report.finish(a.out)


if __name__ == "__main__":
    main()
