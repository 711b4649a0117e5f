"""Peak memory and throughput of training against resolution, micro-batch size and activation checkpointing.

    python benchmarks/memory.py [--quick] [--out benchmarks/results/memory.md]

Each configuration runs in a fresh process (so peak RSS is its own): one rank, 2 threads, channels_last,
fp32, U-Net base 16 depth 5, Burgers tvd2 residual. "Per pixel per sample in flight" is
(peak RSS - fixed cost) / (micro-batch x nt x nx), the fixed cost being a 64^2 micro-batch-1 run
(interpreter, torch, model, optimizer). Ends with `RESULT` lines. The full mode also runs one step of
global batch 64 at 1024^2 on 2 ranks (the issue's target) and reports its peak per rank.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import Report, cpu_description
from engine import run

from diffnet.machine import native_bf16


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64, 256 and 512 only; micro-batch 1 (under 3 minutes)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    sizes = (64, 256, 512) if a.quick else (64, 128, 256, 512, 1024)
    largest = sizes[-1]
    micro_batches = (1,) if a.quick else (1, 2)
    report = Report()
    emit, results = report.emit, report.results

    common = dict(depth=5, channels_last=True, warmup=1, steps=1, fixed_batch=True, scheme="tvd2")
    fixed = run(1, 2, n=64, batch=1, micro_batch=1, **common)["peak_rss_mib"]
    emit(f"# Training memory and throughput ({'quick' if a.quick else 'full'}), {time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Machine: {cpu_description()}.\n")
    emit(f"1 rank x 2 threads, U-Net base 16 depth 5, fp32, channels_last. Fixed cost {fixed:.0f} MiB "
         "(64^2, micro-batch 1). Each run: batch = 2 micro-batches, one warm-up step and one timed step.\n")
    emit("| grid | micro-batch | checkpointing | peak RSS (MiB) | KiB per pixel per sample in flight | "
         "samples/s | time per sample vs no checkpointing |")
    emit("|---|---|---|---|---|---|---|")
    for n in sizes:
        for mb in micro_batches:
            plain = None
            for ckpt in (False, True):
                r = run(1, 2, n=n, batch=2 * mb, micro_batch=mb, ckpt=ckpt, **common)
                per_px = (r["peak_rss_mib"] - fixed) * 1024 / (mb * n * n)
                sps = 2 * mb / r["step_s"]
                ratio = "" if plain is None else f"{plain['sps'] / sps:.2f}"
                emit(f"| {n}^2 | {mb} | {'on' if ckpt else 'off'} | {r['peak_rss_mib']:.0f} | {per_px:.3f} | "
                     f"{sps:.3f} | {ratio} |")
                if plain is None:
                    plain = {"sps": sps, "per_px": per_px}
                if n == largest and mb == 1:
                    # The 0.5 KiB target is the full run's, at 1024^2; a quick run reports its figure and
                    # checks what checkpointing is for: less memory, at a bounded cost in time.
                    results.append((f"kib_per_px_{n}_{'ckpt' if ckpt else 'plain'}", per_px,
                                    "<=0.5" if ckpt and not a.quick else "info"))
                    if ckpt:
                        results.append((f"ckpt_time_ratio_{n}", plain["sps"] / sps, "<=1.5"))
                        results.append((f"ckpt_memory_saving_{n}", plain["per_px"] / per_px, ">=1.2"))
    emit(f"\n## Reduced precision at {largest}^2 (micro-batch 1, checkpointing): bf16 convolutions, fp32 head, "
         "residual and loss\n")
    if not native_bf16():
        # Emulated bf16 is slower than fp32 and, measured on an AVX2 machine, needs more memory (0.80 against
        # 0.63 KiB per pixel): the row would only cost minutes to show that.
        emit("Skipped: this CPU has neither avx512_bf16 nor amx_bf16, so torch emulates bf16 and it cannot "
             "save time or memory here.")
    else:
        emit("| precision | peak RSS (MiB) | KiB per pixel per sample in flight | samples/s |")
        emit("|---|---|---|---|")
        for bf16 in (False, True):
            r = run(1, 2, n=largest, batch=2, micro_batch=1, ckpt=True, bf16=bf16, **common)
            per_px = (r["peak_rss_mib"] - fixed) * 1024 / (largest * largest)
            emit(f"| {'bf16' if bf16 else 'fp32'} | {r['peak_rss_mib']:.0f} | {per_px:.3f} | "
                 f"{2 / r['step_s']:.3f} |")
            if bf16:
                results.append((f"kib_per_px_{largest}_ckpt_bf16", per_px, "<=0.5"))
    if not a.quick:
        emit("\n## One step at 1024^2, global batch 64, 2 ranks x 1 thread, micro-batch 1, checkpointing, "
             "depth 6 (the `burgers1024` model: its reach must cover 341 nodes)\n")
        r = run(2, 1, n=1024, batch=64, micro_batch=1, ckpt=True, depth=6, channels_last=True, warmup=0, steps=1,
                fixed_batch=True, scheme="tvd2")
        emit(f"Completed in {r['step_s']:.0f} s; peak RSS of rank 0: {r['peak_rss_mib']:.0f} MiB "
             f"({r['peak_rss_mib'] / 1024:.2f} GiB; the node has 24 GiB).")
        results.append(("step_1024_batch64_peak_gib_per_rank", r["peak_rss_mib"] / 1024, "<=12 (24 GiB node, 2 ranks)"))
    report.finish(a.out)


if __name__ == "__main__":
    main()
