"""How well the self-check predicts the true error: Spearman rank correlation and untrusted fractions.

    python benchmarks/self_check.py --model results/burgers64/model.pt --samples results/burgers64/samples.nc
                                    [--out benchmarks/results/self_check_burgers64.md]

Samples: the held-out split of ``--samples`` (inside the trained range) plus samples outside it (Burgers:
c in {2, 2.5, 6.5, 8, 9.5}; elliptic families: held-out omega scaled by 1.5, so beyond omega_max). For
each: the network's prediction, its self-check residual (what `diffnet infer` stores), and its true
relative L2 error against the family's truth (exact entropy solution; refined FEM). The trust level is
the one stored in model.pt at training end (or, for an older model, calibrated here on the held-out
residuals the same way). Ends with `RESULT` lines (no targets: the figures go into the README).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from diffnet import io, problems, selfcheck
from diffnet.infer import model_from_state, read_model

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline import rel_l2
from _report import Report, cpu_description


def outside_samples(problem, held_out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if "c" in problem.parameters:
        return {"c": np.array([2.0, 2.5, 6.5, 8.0, 9.5])}
    out = {k: v[:5].copy() for k, v in held_out.items()}
    out["omega"] = out["omega"] * 1.5 + np.sign(out["omega"]) * 0.5 * problem.parameters["omega"].high
    return out


def evaluate(problem, model, exp, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(residual, true rel L2 error) per sample."""
    record = {**params, **problem.input_fields(params)}
    cond = problem.condition(record)
    u = selfcheck.predict(problem, model, cond, exp.train.channels_last, progress=False)
    residual = selfcheck.residuals(problem, u, cond)
    truth = problem.solvers.truth
    ref = problem.reference(params, (truth,)).fields[truth]
    return residual, rel_l2(u, ref)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--samples", type=Path, required=True)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    exp, state = read_model(a.model)
    model = model_from_state(exp, state)
    problem = problems.from_config(exp)
    held = io.parameters_of(io.select_split(io.read_samples(a.samples), "test"))
    outside = outside_samples(problem, held)
    r_in, e_in = evaluate(problem, model, exp, held)
    r_out, e_out = evaluate(problem, model, exp, outside)
    calibration = state.get("self_check")
    source = "stored in model.pt"
    if calibration is None:
        calibration, source = selfcheck.calibrate(r_in), "calibrated here on the held-out residuals"
    t_in, _ = selfcheck.assess(problem, held, r_in, calibration)
    t_out, _ = selfcheck.assess(problem, outside, r_out, calibration)
    residual_only_out = r_out > calibration["residual_threshold"]
    rho_all = spearmanr(np.concatenate([r_in, r_out]), np.concatenate([e_in, e_out])).statistic
    rho_in = spearmanr(r_in, e_in).statistic

    report = Report()
    emit, results = report.emit, report.results
    emit(f"# Self-check vs true error, {exp.name} ({problem.name}), {time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Machine: {cpu_description()}. Model {a.model}; truth: {problem.solvers.truth}. Trust level "
         f"{calibration['residual_threshold']:.4g} ({source}).\n")
    emit("| samples | count | median rel L2 | median residual | untrusted | untrusted by residual alone |")
    emit("|---|---|---|---|---|---|")
    emit(f"| held-out, inside the trained range | {len(e_in)} | {np.median(e_in):.4f} | {np.median(r_in):.3g} | "
         f"{np.mean(~t_in):.0%} | {np.mean(r_in > calibration['residual_threshold']):.0%} |")
    emit(f"| outside the trained range | {len(e_out)} | {np.median(e_out):.4f} | {np.median(r_out):.3g} | "
         f"{np.mean(~t_out):.0%} | {np.mean(residual_only_out):.0%} |")
    emit("\n| sample set | parameters | residual | true rel L2 |")
    emit("|---|---|---|---|")
    for name, params, res, err in (("outside", outside, r_out, e_out), ("held-out", held, r_in, e_in)):
        for k in np.argsort(err):
            emit(f"| {name} | {selfcheck.describe(problem, params, k)} | {res[k]:.3g} | {err[k]:.4f} |")
    emit(f"\nSpearman rank correlation of residual and true error: {rho_all:.3f} over all {len(e_in) + len(e_out)} "
         f"samples, {rho_in:.3f} over the held-out ones alone.")
    results.append(("spearman_residual_vs_error_all", rho_all, "info"))
    results.append(("spearman_residual_vs_error_held_out", rho_in, "info"))
    results.append(("untrusted_fraction_inside", float(np.mean(~t_in)), "info"))
    results.append(("untrusted_fraction_outside", float(np.mean(~t_out)), "info"))
    results.append(("untrusted_by_residual_fraction_outside", float(np.mean(residual_only_out)), "info"))
    report.finish(a.out)


if __name__ == "__main__":
    main()
