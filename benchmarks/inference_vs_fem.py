"""Time per solution: batched DiffNet inference vs the DG FEM, the exact solution and first-order Godunov FV.

    python benchmarks/inference_vs_fem.py [--quick] [--out benchmarks/results/inference_vs_fem.md]

All four are measured side by side in this run, on one core each (torch and numpy single-threaded),
for a batch of Burgers ICs with c in [3, 6], at 256^2, 512^2 and 1024^2 space-time nodes. DiffNet uses
*untrained* weights of the default U-Net (base 16, depth 3): inference cost does not depend on the
weights. Ends with `RESULT` lines (ratios; there is no target: the comparison is reported as it falls).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from diffnet.models.unet import UNet
from diffnet.numerics import burgers_dg, exact, fv
from diffnet.problems import Burgers, Grid

sys.path.insert(0, str(Path(__file__).parent))
from _report import Report, best_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller batches, 1024^2 skipped for FEM (about 2 min)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    sizes = (256, 512, 1024)
    batch = {256: 16, 512: 8, 1024: 4} if not a.quick else {256: 8, 512: 4, 1024: 2}
    repeats = 1 if a.quick else 2
    report = Report()
    emit, results = report.emit, report.results

    emit(f"# DiffNet inference vs classical solvers ({'quick' if a.quick else 'full'}), "
         f"{time.strftime('%Y-%m-%d %H:%M')}")
    emit("One core for every method. Seconds per solution = wall time of one batched call / batch size, "
         f"best of {repeats}. DiffNet weights are untrained (timing only).\n")
    emit("| grid | batch | DiffNet inference | DG FEM (P1, 4 cells per node spacing) | exact (Lax-Oleinik) | "
         "Godunov FV (first order) | FEM / DiffNet | FV / DiffNet |")
    emit("|---|---|---|---|---|---|---|---|")
    model = UNet(3, 16, 3).eval().to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    for n in sizes:
        b = batch[n]
        grid = Grid(n, n, 1 / 3)
        problem = Burgers(grid)
        c = rng.uniform(3, 6, b)
        u0, primitive, du0 = exact.cosine_family(c)
        u0_grid = torch.tensor(problem.initial_condition(c), dtype=torch.float32)

        @torch.inference_mode()
        def diffnet(u0_grid=u0_grid, problem=problem):
            x = problem.network_input(u0_grid).contiguous(memory_format=torch.channels_last)
            return problem.assemble(model(x), u0_grid)

        def fem_solve(u0=u0, grid=grid):
            return burgers_dg.dg_solve(u0, grid.x, grid.t)

        def exact_solve(u0=u0, primitive=primitive, du0=du0, grid=grid):
            return exact.lax_oleinik(u0, primitive, grid.x, grid.t, du0=du0)

        def fv_solve(primitive=primitive, grid=grid, n=n):
            edges = np.linspace(0.0, 1.0, n + 1)
            cells = fv.godunov_fv(fv.cell_averages(primitive, edges), 1.0 / n, grid.t)
            return cells

        t_net = best_of(diffnet, repeats) / b
        t_fem = best_of(fem_solve, repeats) / b if not (a.quick and n == 1024) else float("nan")
        t_exact = best_of(exact_solve, repeats) / b
        t_fv = best_of(fv_solve, repeats) / b
        emit(f"| {n}^2 | {b} | {t_net:.4f} s | {t_fem:.4f} s | {t_exact:.4f} s | {t_fv:.4f} s | "
             f"{t_fem / t_net:.2f} | {t_fv / t_net:.3f} |")
        results.append((f"fem_over_diffnet_{n}", t_fem / t_net, "none"))
        results.append((f"fv_over_diffnet_{n}", t_fv / t_net, "none"))
    emit("\nRatios above 1 mean DiffNet is faster. The seed reported FEM/DiffNet = 6.4 at 512^2 and 40 at "
         "1024^2 against a slow FEM.")
    emit("Amortisation: a trained network answers a whole batch of new ICs in one forward pass; the training "
         "cost (minutes to hours) is paid once and is not in these figures.")
    report.finish(a.out)


if __name__ == "__main__":
    main()
