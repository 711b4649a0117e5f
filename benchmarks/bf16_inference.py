"""bf16 inference of the trained experiments: how much faster, and what it costs in accuracy.

    python benchmarks/bf16_inference.py [--quick] [--experiments burgers64 poisson64 ...]
                                        [--out benchmarks/results/bf16_inference.md]

For each experiment the workflow has trained (results/<exp>/model.pt), predicts the held-out samples in
float32 and under bf16 autocast (the U-Net's last layer stays float32, as in training), side by side in one
run on 2 threads, and compares both with the family's truth. --quick: burgers64 and poisson64 only.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline import REPO, Run, rel_l2
from _report import Report, best_of, cpu_description

from diffnet import io, problems, selfcheck
from diffnet.infer import model_from_state, read_model
from diffnet.machine import native_bf16

FULL = ["burgers64", "burgers128", "burgers256", "poisson64", "poisson128", "poisson256", "reacdiff64"]


def predict(problem, model, cond: np.ndarray, channels_last: bool, bf16: bool) -> np.ndarray:
    # selfcheck.predict sets autocast itself (an autocast around it would be switched off inside)
    return selfcheck.predict(problem, model, cond, channels_last, progress=False, bf16=bf16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--experiments", nargs="+", default=FULL)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    torch.set_num_threads(2)
    report = Report()
    emit = report.emit
    emit(f"# bf16 inference against float32 ({'quick' if a.quick else 'full'}), {time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Machine: {cpu_description()}; bf16 {'native' if native_bf16() else 'emulated'}; 2 threads, held-out "
         "samples in one batch, best of 3. Errors: median rel L2 of u against the family's truth.\n")
    emit("| experiment | fp32 error | bf16 error | bf16 vs fp32 (rel L2) | fp32 ms/solution | bf16 ms/solution | "
         "speed-up |")
    emit("|---|---|---|---|---|---|---|")
    for name in ["burgers64", "poisson64"] if a.quick else a.experiments:
        path = REPO / "results" / name / "model.pt"
        if not path.is_file():
            emit(f"| {name} | not trained here | | | | | |")
            continue
        exp, state = read_model(path)
        problem = problems.from_config(exp)
        samples = io.select_split(io.read_samples(Run(REPO / "results" / name).samples), "test")
        params, cond = io.parameters_of(samples), problem.condition(io.record_of(samples))
        model = model_from_state(exp, state)
        fields, seconds = {}, {}
        for precision in ("fp32", "bf16"):
            run = functools.partial(predict, problem, model, cond, exp.train.channels_last, precision == "bf16")
            fields[precision] = run().astype(np.float64)
            seconds[precision] = best_of(run, 3) / len(cond)
        truth = problem.reference(params, methods=(problem.solvers.truth,)).fields[problem.solvers.truth]
        err = {k: float(np.median(rel_l2(u, truth))) for k, u in fields.items()}
        apart = float(np.median(rel_l2(fields["bf16"], fields["fp32"])))
        speedup = seconds["fp32"] / seconds["bf16"]
        emit(f"| {name} | {err['fp32']:.5f} | {err['bf16']:.5f} | {apart:.2e} | {1e3 * seconds['fp32']:.2f} | "
             f"{1e3 * seconds['bf16']:.2f} | {speedup:.2f}x |")
        report.results += [(f"bf16_inference_speedup_{name}", speedup, "info"),
                           (f"bf16_error_ratio_{name}", err["bf16"] / err["fp32"], "info")]
    report.finish(a.out)


if __name__ == "__main__":
    main()
