"""How close to the machine's arithmetic peak do training and inference run? A roofline in one run.

    python benchmarks/roofline.py [--quick] [--out benchmarks/results/roofline.md]

1. The peak: large square torch.mm in float32 and bfloat16 on the same threads (best of several).
2. The work: the convolution (and matmul) FLOPs of one forward and one backward of the configured U-Net
   (burgers64's: base 16, depth 3) and of the 256^2 cascade, counted by torch's FlopCounterMode from the
   operators' shapes, at 64^2 to 1024^2.
3. The time: a training step split into forward, loss, backward and optimizer, and the all-reduce of the
   gradient's flat buffer between 2 MPI ranks (the buffer's size, timed alone); inference per solution.
   fp32, and bf16 autocast with the loss and the last layer in fp32 (as `train.precision: bfloat16` does).
   Achieved GFLOP/s = counted FLOPs / measured seconds, and its fraction of the measured matmul peak.
4. A torch.profiler table of the top operators of one 256^2 training step (fp32).

Timings need a quiet machine: run it alone. Ends with `RESULT` lines (the issue's targets: the fp32 256^2
training step at >= 50% of the fp32 peak; bf16 >= 1.5x fp32 where the CPU has native bf16).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from _report import Report, best_of, cpu_description

from diffnet.machine import native_bf16
from diffnet.models.unet import UNet
from diffnet.problems import Burgers, Grid

BIN = Path(sys.executable).parent


def matmul_peak(dtype: torch.dtype, n: int, repeats: int) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    return 2 * n**3 / best_of(lambda: torch.mm(a, b), repeats) / 1e9


def setup(n: int, batch: int, depth: int = 3):
    torch.manual_seed(0)
    problem = Burgers(Grid(n, n, 1 / 3))
    model = UNet(3, 16, depth).to(memory_format=torch.channels_last)
    u0 = torch.tensor(problem.initial_condition(np.linspace(3, 6, batch)), dtype=torch.float32)
    x = problem.network_input(u0).contiguous(memory_format=torch.channels_last)
    return problem, model, u0, x


def counted_flops(n: int, batch: int) -> tuple[float, float]:
    """(forward, backward) FLOPs of one training step's generator, from the operators' shapes."""
    problem, model, u0, x = setup(n, batch)
    with FlopCounterMode(display=False) as fwd:
        raw = model(x)
    u = problem.assemble(raw, u0)
    loss = problem.loss_terms(u, raw, u0)["total"].mean()
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    return float(fwd.get_total_flops()), float(bwd.get_total_flops())


def timed_step(n: int, batch: int, bf16: bool, steps: int) -> dict[str, float]:
    """Median seconds of each phase of a training step (after one untimed step)."""
    problem, model, u0, x = setup(n, batch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    phases: dict[str, list[float]] = {"forward": [], "loss": [], "backward": [], "optimizer": []}
    for k in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            raw = model(x)
        u = problem.assemble(raw.float(), u0)
        t1 = time.perf_counter()
        loss = problem.loss_terms(u, raw.float(), u0)["total"].mean()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if k:
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[name].append(dt)
    return {name: float(np.median(v)) for name, v in phases.items()}


@torch.inference_mode()
def inference_seconds(n: int, batch: int, bf16: bool, repeats: int) -> float:
    _, model, _, x = setup(n, batch)
    model.eval()

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)

    run()
    return best_of(run, repeats) / batch


def allreduce_seconds(count: int, repeats: int) -> float:
    """Median seconds of an MPI Allreduce of ``count`` float32 between 2 ranks (the pinned mpiexec)."""
    code = ("import sys, time, numpy as np; from mpi4py import MPI; c = MPI.COMM_WORLD; "
            f"buf = np.ones({count}, np.float32); out = np.empty_like(buf); ts = []\n"
            f"for _ in range({repeats + 1}):\n"
            "    c.Barrier(); t = time.perf_counter(); c.Allreduce(buf, out); ts.append(time.perf_counter() - t)\n"
            "if c.rank == 0: print(np.median(ts[1:]))")
    proc = subprocess.run([str(BIN / "mpiexec"), "-n", "2", sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=300)
    return float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else float("nan")


def profile_table(n: int, batch: int, rows: int = 15) -> str:
    problem, model, u0, x = setup(n, batch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        raw = model(x)
        u = problem.assemble(raw, u0)
        loss = problem.loss_terms(u, raw, u0)["total"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return "\n".join(line for line in table.splitlines() if not line.startswith("USDT:"))  # profiler's own log


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64^2 and 256^2 only, fewer repeats (under 3 minutes)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    grids = (64, 256) if a.quick else (64, 128, 256, 512, 1024)
    repeats, steps = (3, 3) if a.quick else (5, 5)
    report = Report()
    emit = report.emit
    native = native_bf16()
    emit(f"# Roofline: training and inference against the matmul peak ({'quick' if a.quick else 'full'}), "
         f"{time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Machine: {cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads; bf16 "
         f"{'native (avx512_bf16/amx)' if native else 'emulated'}. U-Net base 16, depth 3, channels_last, "
         "Burgers residual (tvd2_cn) as the loss; batch 4 per step, inference batch 8.\n")
    peak = {name: matmul_peak(dt, 2048, repeats) for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    emit(f"Matmul peak (2048^3 torch.mm, best of {repeats}): fp32 {peak['fp32']:.1f} GFLOP/s, bf16 "
         f"{peak['bf16']:.1f} GFLOP/s ({peak['bf16'] / peak['fp32']:.2f}x).\n")
    params = sum(p.numel() for p in UNet(3, 16, 3).parameters())
    t_ar = allreduce_seconds(params, 20)
    emit(f"All-reduce of the gradient ({params} float32, 2 ranks, median of 20): {1e3 * t_ar:.3f} ms.\n")
    emit("| grid | precision | fwd GFLOP | bwd GFLOP | forward s | loss s | backward s | optimizer s | step s | "
         "conv GFLOP/s (fwd+bwd) | of fp32 peak | inference s/solution |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|---|")
    batch = 4
    step_time: dict[tuple[int, str], float] = {}
    fraction: dict[tuple[int, str], float] = {}
    for n in grids:
        fwd, bwd = counted_flops(n, batch)
        for precision in ("fp32", "bf16"):
            bf16 = precision == "bf16"
            if n >= 1024 and bf16 and not native:
                continue
            t = timed_step(n, batch, bf16, max(2, steps if n <= 256 else 2))
            total = sum(t.values())
            achieved = (fwd + bwd) / (t["forward"] + t["backward"]) / 1e9
            step_time[(n, precision)] = total
            fraction[(n, precision)] = achieved / peak["fp32"]
            inf = inference_seconds(n, 8 if n <= 256 else 2, bf16, repeats)
            emit(f"| {n}^2 | {precision} | {fwd / 1e9:.2f} | {bwd / 1e9:.2f} | {t['forward']:.4f} | {t['loss']:.4f} | "
                 f"{t['backward']:.4f} | {t['optimizer']:.5f} | {total:.4f} | {achieved:.1f} | "
                 f"{achieved / peak['fp32']:.2f} | {inf:.4f} |")
    emit("\nThe fraction is of the fp32 matmul peak for both precisions (bf16's own peak is above), and counts "
         "only the generator's FLOPs against forward + backward time.\n")
    emit("## Top operators of a 256^2 training step (fp32, 3 steps, torch.profiler)\n")
    emit("```")
    emit(profile_table(256, batch))
    emit("```")
    ratio = step_time[(256, "fp32")] / step_time[(256, "bf16")]
    emit(f"\nbf16 / fp32 training step at 256^2: {ratio:.2f}x ({'native' if native else 'emulated'} bf16).")
    report.results += [
        ("train_step_fp32_256_fraction_of_fp32_peak", fraction[(256, "fp32")], ">=0.5"),
        ("train_step_bf16_speedup_256", ratio, ">=1.5" if native else "info (bf16 emulated)"),
        ("matmul_peak_fp32_gflops", peak["fp32"], "info"),
        ("matmul_peak_bf16_gflops", peak["bf16"], "info"),
    ]
    report.finish(a.out)


if __name__ == "__main__":
    main()
