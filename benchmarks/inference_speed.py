"""Inference per solution against today's eager float32: torch.compile, bf16 and the batch, side by side.

    python benchmarks/inference_speed.py [--quick] [--out benchmarks/results/inference_speed.md]

Timing: the elliptic cascade of config/config.yaml (poisson256's architecture: depth 4, one cascade level
per doubling above 64^2) at 256^2, 512^2 and 1024^2, through the product's own path (`diffnet infer`:
`selfcheck.predict`, and `infer.compiled` for --compile). Timing does not depend on the weights, so
these networks are untrained (seeded); every mode runs in a fresh process on 2 threads, best of 3 after
a warm-up. The baseline is today's path: eager float32 at the batch elliptic_inference_vs_fem.py uses
(8, 4, 2). Each mode is timed at batch 1 and at that batch, and its faster one is reported.

Accuracy: compiled float32 must agree with eager float32 within 1e-3 (rel L2, on the timed networks and
on the trained burgers256 and poisson256 cascades of results/ where present); bf16 must leave the
learning error (against the family's discrete solution where it has one, else its truth) of the trained
models within 0.1 percentage points. --quick: 256^2 only, today's batch, 2 repeats, no trained models (about 3 minutes).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline import REPO, Run, rel_l2
from _report import Report, best_of, cpu_description
from elliptic_inference_vs_fem import cascade_levels

from diffnet import infer, io, problems, selfcheck
from diffnet.config import experiment_from_dict, load_document
from diffnet.machine import native_bf16
from diffnet.models import build_model

THREADS = 2
TODAY_BATCH = {256: 8, 512: 4, 1024: 2}
MODES = [("eager", "fp32"), ("eager", "bf16"), ("compiled", "fp32"), ("compiled", "bf16")]
TRAINED = ["burgers256", "poisson256"]


def cascade_experiment(n: int):
    """poisson256 of config/config.yaml at an n^2 grid, with the cascade levels that grid needs."""
    doc = load_document(REPO / "config" / "config.yaml", resolved=True)
    entry = copy.deepcopy(doc["experiments"]["poisson256"])
    entry["grid"].update(nx=n, ny=n)
    entry["model"].update(cascade_levels=cascade_levels(n), activation_checkpointing=False)
    entry["train"]["init_from"] = None  # no training here: the weights are untrained
    return experiment_from_dict(f"poisson{n}", entry)


def prepared(problem, model, cond: np.ndarray, compiled: bool, bf16: bool, channels_last: bool = True):
    """The model as `diffnet infer` runs it (compiled on the batch, as --compile does), and the compile time."""
    if not compiled:
        return model, 0.0
    torch._dynamo.reset()  # a fresh graph per batch: a second shape would otherwise recompile as dynamic
    t0 = time.perf_counter()
    fast, mode = infer.compiled(problem, model, cond, channels_last, bf16)
    if mode != "inductor":
        raise RuntimeError("torch.compile fell back to eager; this benchmark measures compiled inference")
    return fast, time.perf_counter() - t0


def worker(n: int, compiled: bool, precision: str, batches: list[int], repeats: int, save: str) -> None:
    """One mode at one grid, in its own process: seconds per solution for each batch, compile time, peak RSS."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    exp = cascade_experiment(n)
    problem = problems.from_config(exp)
    model = build_model(exp.model, exp.grid.shape, problem.input_channels).eval()
    params = problem.sample_parameters(max(batches), np.random.default_rng(0))
    cond = problem.condition({**params, **problem.input_fields(params)})
    bf16 = precision == "bf16"
    out: dict[str, object] = {"seconds": {}, "compile_s": {}}
    for b in batches:
        net, compile_s = prepared(problem, model, cond[:b], compiled, bf16)

        def run(net=net, b=b):
            return selfcheck.predict(problem, net, cond[:b], True, batch=b, progress=False, bf16=bf16)

        u = run()  # warm-up: oneDNN primitive caches, first-call allocations
        out["seconds"][b] = best_of(run, repeats) / b
        out["compile_s"][b] = compile_s
    np.save(save, u[:1])
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def timed(n: int, compiled: bool, precision: str, batches: list[int], repeats: int, save: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(n), "compiled" if compiled else "eager", precision,
           ",".join(map(str, batches)), str(repeats), str(save)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{n}^2 {precision} {'compiled' if compiled else 'eager'} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def trained_accuracy(name: str) -> dict[str, float] | None:
    """Learning error of a trained model of results/ in each mode, and compiled fp32's distance from eager."""
    path = REPO / "results" / name / "model.pt"
    if not path.is_file():
        return None
    torch.set_num_threads(THREADS)
    exp, state = infer.read_model(path)
    problem = problems.from_config(exp)
    samples = io.select_split(io.read_samples(Run(REPO / "results" / name).samples), "test")
    params, cond = io.parameters_of(samples), problem.condition(io.record_of(samples))
    against = problem.solvers.discrete or problem.solvers.truth
    reference = problem.reference(params, methods=(against,)).fields[against]
    fields = {}
    for compiled, precision in MODES:
        model = infer.model_from_state(exp, state)
        net, _ = prepared(problem, model, cond[:1], compiled == "compiled", precision == "bf16",
                          exp.train.channels_last)
        fields[(compiled, precision)] = selfcheck.predict(
            problem, net, cond, exp.train.channels_last, batch=1, progress=False,
            bf16=precision == "bf16").astype(np.float64)
    errors = {f"{c} {p}": float(np.median(rel_l2(u, reference))) for (c, p), u in fields.items()}
    errors["against"] = against
    errors["compiled_vs_eager_fp32"] = float(np.max(rel_l2(fields[("compiled", "fp32")],
                                                            fields[("eager", "fp32")])))
    return errors


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        n, mode, precision, batches, repeats, save = sys.argv[2:]
        worker(int(n), mode == "compiled", precision, [int(b) for b in batches.split(",")], int(repeats), save)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    sizes = (256,) if a.quick else (256, 512, 1024)
    repeats = 2 if a.quick else 3
    report = Report()
    emit = report.emit
    emit(f"# Inference per solution: compiled and bf16 against eager float32 ({'quick' if a.quick else 'full'}), "
         f"{time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Machine: {cpu_description()}; bf16 {'native' if native_bf16() else 'emulated'}; torch {torch.__version__}, "
         f"{THREADS} threads, one fresh process per mode, best of {repeats} after a warm-up. Load average at the "
         f"start: {os.getloadavg()[0]:.1f}. Network: poisson256's cascade (depth 4, base 16) with the levels each "
         "grid needs, "
         "untrained (timing does not depend on the weights).\n")
    emit("| grid | mode | batch | s/solution | speed-up over eager fp32 | compile s | peak MiB | "
         "vs eager fp32 (rel L2) |")
    emit("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            batches = [TODAY_BATCH[n]] if a.quick else sorted({1, TODAY_BATCH[n]})
            rows, first = {}, {}
            for compiled, precision in MODES:
                save = Path(tmp) / f"{n}_{compiled}_{precision}.npy"
                rows[(compiled, precision)] = timed(n, compiled == "compiled", precision, batches, repeats, save)
                first[(compiled, precision)] = np.load(save).astype(np.float64)
            base = rows[("eager", "fp32")]["seconds"][str(TODAY_BATCH[n])]
            best_speedup = 0.0
            for (compiled, precision), r in rows.items():
                batch, seconds = min(r["seconds"].items(), key=lambda kv: kv[1])
                apart = float(rel_l2(first[(compiled, precision)], first[("eager", "fp32")])[0])
                speedup = base / seconds
                emit(f"| {n}^2 | {compiled} {precision} | {batch} | {seconds:.4f} | {speedup:.2f}x | "
                     f"{r['compile_s'][batch]:.1f} | {r['peak_mib']:.0f} | {apart:.1e} |")
                report.results.append((f"speedup_{compiled}_{precision}_{n}", speedup, "info"))
                if (compiled, precision) == ("compiled", "fp32"):
                    report.results.append((f"compiled_fp32_vs_eager_rel_l2_{n}", apart, "<=1e-3"))
                best_speedup = max(best_speedup, speedup)
            report.results.append((f"best_inference_speedup_{n}", best_speedup, ">=2"))
    emit("\nToday's path is the eager float32 row at the batch elliptic_inference_vs_fem.py uses "
         f"({', '.join(f'{n}^2: {b}' for n, b in TODAY_BATCH.items() if n in sizes)}). 'vs eager fp32' compares "
         "the first sample's field with eager float32's (same weights, same input); bf16 rows differ by bf16 "
         "rounding, which the trained models below put in terms of learning error.\n")
    emit("## Trained models of results/ (held-out samples, batch 1)\n")
    emit("| model | against | eager fp32 | eager bf16 | compiled fp32 | compiled bf16 | "
         "compiled fp32 vs eager (max rel L2) |")
    emit("|---|---|---|---|---|---|---|")
    for name in [] if a.quick else TRAINED:
        acc = trained_accuracy(name)
        if acc is None:
            emit(f"| {name} | not trained here | | | | | |")
            continue
        emit(f"| {name} | {acc['against']} | {acc['eager fp32']:.5f} | {acc['eager bf16']:.5f} | "
             f"{acc['compiled fp32']:.5f} | {acc['compiled bf16']:.5f} | {acc['compiled_vs_eager_fp32']:.1e} |")
        added = 100 * (max(acc["eager bf16"], acc["compiled bf16"]) - acc["eager fp32"])
        report.results += [(f"{name}_compiled_fp32_vs_eager_rel_l2", acc["compiled_vs_eager_fp32"], "<=1e-3"),
                           (f"{name}_bf16_added_learning_error_pp", added, "<=0.1")]
    report.finish(a.out)


if __name__ == "__main__":
    main()
