"""Coarse-to-fine vs from-scratch training at a fine grid: wall time against error to the exact solution.

    python benchmarks/coarse_to_fine.py [--quick] [--out benchmarks/results/coarse_to_fine.md]

Burgers with c in [3, 6] (the range where 64^2 training converges within minutes), tvd2 residual, U-Net base 16 depth 5,
`mpiexec -n 2 diffnet train` for every stage. Two arms, both ending at the fine grid N (512; 128 with
--quick):

- from scratch: N^2 for S and for S/2 steps (two separate runs, each with its own full cosine schedule);
- coarse-to-fine: 64^2 -> 128^2 -> 256^2 -> N^2, each stage starting from the previous stage's weights.
  Every stage's network is also evaluated *at N^2* (the generator is fully convolutional), so the arm
  traces error against cumulative wall time.

The error is the median rel L2 against the exact (Lax-Oleinik) solution over held-out c, with the
scheme's own discrete solution at N^2 as the floor. The result: the wall time each arm needs to reach
the error the from-scratch arm reaches with S steps, and the ratio. Ends with `RESULT` lines.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from diffnet import io
from diffnet.infer import load_model, predict
from diffnet.numerics import exact, marching

sys.path.insert(0, str(Path(__file__).parent))
from _report import Report
from accuracy import rel_l2, train_network

C_MAX = 6.0
N_TEST = 8
DEPTH = 5


def error_at(model_path: Path, samples_path: Path, discrete: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rel L2 of the network in ``model_path``, evaluated on the grid of ``samples_path``, against the exact
    solution and against the scheme's discrete solution ``discrete``."""
    exp, model = load_model(model_path)
    samples = io.select_split(io.read_samples(samples_path), "test")
    n = samples.sizes["x"]
    exp = replace(exp, grid=replace(exp.grid, nx=n, nt=n))
    u = predict(exp, model, samples["u0"].values).astype(np.float64)
    c = samples["c"].values
    u0, prim, du0 = exact.cosine_family(c)
    t = np.linspace(0.0, exp.problem.t_end, n)
    ue = exact.lax_oleinik(u0, prim, samples["x"].values, t, du0=du0)
    return rel_l2(u, ue), rel_l2(u, discrete)


def time_to_reach(target: float, points: list[tuple[float, float]]) -> float:
    """First wall time at which a (seconds, error) trace is at or below ``target``, interpolating linearly
    between consecutive points; inf if it never is."""
    for (t0, e0), (t1, e1) in zip([(0.0, np.inf), *points[:-1]], points, strict=True):
        if e1 <= target:
            if not np.isfinite(e0) or e0 == e1:
                return t1
            return t0 + (t1 - t0) * (e0 - target) / (e0 - e1)
    return float("inf")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fine grid 128^2, short stages (about 3 minutes)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    # (grid, steps, global batch, lr, micro-batch); the last entry is the fine grid.
    if a.quick:
        stages = [(64, 150, 16, 2e-3, 0), (128, 60, 8, 1e-3, 0)]
    else:
        stages = [(64, 1000, 16, 2e-3, 0), (128, 300, 8, 1e-3, 0), (256, 100, 4, 1e-3, 0), (512, 50, 4, 5e-4, 2)]
    n, _, fine_batch, _, fine_mb = stages[-1]
    scratch_steps = 100 if a.quick else 200
    scratch_lr = 1e-3
    report = Report()
    emit, results = report.emit, report.results

    emit(f"# Coarse-to-fine vs from scratch at {n}^2 ({'quick' if a.quick else 'full'}), "
         f"{time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Burgers, c in [3, {C_MAX:g}], tvd2, U-Net base 16 depth 5, `mpiexec -n 2 diffnet train` (1 thread per "
         f"rank). Error: median rel L2 against the exact solution over {N_TEST} held-out c, every network "
         f"evaluated on the {n}^2 grid.\n")

    with tempfile.TemporaryDirectory(prefix="diffnet-c2f-") as tmp:
        tmp = Path(tmp)
        # The fine grid's ICs and the scheme's own floor, shared by both arms.
        train_network(tmp / "probe", n, "tvd2", 1, 1, 1e-3, 0, None, c_max=C_MAX, n_test=N_TEST, depth=DEPTH)
        fine_ics = tmp / "probe" / "samples.nc"
        samples = io.select_split(io.read_samples(fine_ics), "test")
        c = samples["c"].values
        u0, prim, du0 = exact.cosine_family(c)
        x = samples["x"].values
        t = np.linspace(0.0, 1.0 / 3.0, n)
        ue = exact.lax_oleinik(u0, prim, x, t, du0=du0)
        ud = marching.march("tvd2", ue[:, 0], n, t[1] - t[0], x[1] - x[0])
        floor = np.median(rel_l2(ud, ue))
        emit(f"The tvd2 scheme's own solution at {n}^2 (the floor for any network): rel L2 {floor:.4f}.\n")

        emit(f"| arm | stage | steps x batch | stage train s | cumulative s | vs exact at {n}^2 (median) | max | "
             f"vs discrete at {n}^2 (median) |")
        emit("|---|---|---|---|---|---|---|---|")
        scratch: list[tuple[float, float]] = []
        for steps in (scratch_steps // 2, scratch_steps):
            work = tmp / f"scratch{steps}"
            _, seconds = train_network(work, n, "tvd2", steps, fine_batch, scratch_lr, 0, None, c_max=C_MAX,
                                       n_test=N_TEST, micro_batch=fine_mb, depth=DEPTH)
            err, err_disc = error_at(work / "model.pt", fine_ics, ud)
            scratch.append((seconds, float(np.median(err))))
            emit(f"| from scratch | {n}^2 | {steps} x {fine_batch} | {seconds:.0f} | {seconds:.0f} | "
                 f"{np.median(err):.4f} | {np.max(err):.4f} | {np.median(err_disc):.4f} |")

        trace: list[tuple[float, float]] = []
        total, previous = 0.0, None
        for grid, steps, batch, lr, mb in stages:
            work = tmp / f"c2f{grid}"
            _, seconds = train_network(work, grid, "tvd2", steps, batch, lr, 0, previous, c_max=C_MAX,
                                       n_test=N_TEST, micro_batch=mb, depth=DEPTH)
            previous = work / "model.pt"
            total += seconds
            err, err_disc = error_at(previous, fine_ics, ud)
            trace.append((total, float(np.median(err))))
            emit(f"| coarse-to-fine | {grid}^2 | {steps} x {batch} | {seconds:.0f} | {total:.0f} | "
                 f"{np.median(err):.4f} | {np.max(err):.4f} | {np.median(err_disc):.4f} |")

    target = scratch[-1][1]
    t_scratch = scratch[-1][0]
    t_c2f = time_to_reach(target, trace)
    emit(f"\nTarget: the from-scratch arm's error after {scratch_steps} steps, {target:.4f}, reached in "
         f"{t_scratch:.0f} s from scratch; coarse-to-fine reaches it in "
         f"{t_c2f:.0f} s" + (" (never, within its stages)." if not np.isfinite(t_c2f) else "."))
    speedup = t_scratch / t_c2f
    emit(f"Speed-up of coarse-to-fine to equal error: {speedup:.2f}x. Final errors: from scratch {target:.4f} "
         f"in {t_scratch:.0f} s, coarse-to-fine {trace[-1][1]:.4f} in {trace[-1][0]:.0f} s.")
    results.append((f"c2f_speedup_to_equal_error_{n}", speedup, "info (>1: coarse-to-fine helps)"))
    results.append((f"c2f_final_error_{n}", trace[-1][1], "info"))
    results.append((f"scratch_final_error_{n}", target, "info"))
    results.append((f"tvd2_floor_{n}", floor, "info"))
    report.finish(a.out)


if __name__ == "__main__":
    main()
