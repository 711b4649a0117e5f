"""What the preconditioned residual costs per training step, side by side with the other forms.

    python benchmarks/preconditioned_cost.py [--quick] [--out benchmarks/results/preconditioned_cost.md]

One process, one training step (network forward, loss, backward) of the Burgers U-Net (base 16, depth 3)
on a batch of held-out-like ICs, for each `loss.residual_form`, interleaved and repeated; the median
step time per form and its ratio to `pointwise` are taken in this one run. The correction alone
(`marching.newton_correction` with the first-order twin's Jacobian) is timed too.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from diffnet import problems
from diffnet.config import experiment_from_dict, validate
from diffnet.numerics import marching, residuals
from diffnet.train import build_model

sys.path.insert(0, str(Path(__file__).parent))
from _report import Report

FORMS = ("pointwise", "time_integrated", "preconditioned")


def step(problem, model: torch.nn.Module, u0: torch.Tensor) -> float:
    """Seconds for one forward, loss and backward."""
    start = time.perf_counter()
    raw = model(problem.network_input(u0))
    u = problem.assemble(raw, u0)
    problem.loss_terms(u, raw, u0)["total"].mean().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="128^2 and 256^2, 3 repeats (about 1 minute)")
    p.add_argument("--grids", default="128,256,512")
    p.add_argument("--batch", type=int, default=4, help="samples per step (one rank's shard)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.quick:
        a.grids, a.repeats = "128,256", 3
    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore")  # the reach warning of a depth-3 U-Net at 256^2+: timing only here
    report = Report()
    emit = report.emit
    emit(f"# Cost of the preconditioned residual per training step ({'quick' if a.quick else 'full'}), "
         f"{time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"1 process x {a.threads} threads, U-Net base 16 depth 3, batch {a.batch}, tvd2_cn; median of "
         f"{a.repeats} interleaved repeats after one warm-up each.\n")
    emit("| grid | form | step s | vs pointwise | correction alone s |")
    emit("|---|---|---|---|---|")
    for n in (int(v) for v in a.grids.split(",")):
        times: dict[str, list[float]] = {f: [] for f in FORMS}
        setups = {}
        for form in FORMS:
            doc = validate({"experiments": {"e": {"problem": {"name": "burgers"}, "grid": {"nx": n, "nt": n},
                                                  "model": {"depth": 3}, "loss": {"residual_form": form}}}})
            exp = experiment_from_dict("e", doc["experiments"]["e"])
            problem = problems.from_config(exp)
            torch.manual_seed(0)
            model = build_model(exp, problem.input_channels)
            u0 = torch.tensor(problem.initial_condition(np.linspace(3.2, 5.8, a.batch)), dtype=torch.float32)
            setups[form] = (problem, model, u0)

        for form in FORMS:
            step(*setups[form])  # warm-up
        for _ in range(a.repeats):
            for form in FORMS:
                times[form].append(step(*setups[form]))
        problem, model, u0 = setups["preconditioned"]
        with torch.no_grad():
            u = problem.assemble(model(problem.network_input(u0)), u0)
        grid = problem.grid
        corr = []
        for _ in range(a.repeats):
            start = time.perf_counter()
            marching.newton_correction("tvd2_cn", u, grid.dt, grid.dx, jacobian=residuals.FIRST_ORDER["tvd2_cn"])
            corr.append(time.perf_counter() - start)
        base = np.median(times["pointwise"])
        for form in FORMS:
            t = np.median(times[form])
            extra = f"{np.median(corr):.3f}" if form == "preconditioned" else ""
            emit(f"| {n}^2 | {form} | {t:.3f} | {t / base:.2f} | {extra} |")
            if form == "preconditioned":
                report.results.append((f"preconditioned_step_ratio_{n}", t / base, "info"))
    report.finish(a.out)


if __name__ == "__main__":
    main()
