"""DeepFusion engine benchmark: scaling, ranks vs threads, ours vs DDP, throughput levers, L-BFGS vs Adam,
memory per sample. Every comparison is measured side by side in this one run.

    python benchmarks/engine.py [--quick] [--out benchmarks/results/engine.md]

The driver starts workers with the pinned MPICH `mpiexec` (`worker` sub-mode, JSON on stdout) and prints
a markdown report ending in `RESULT <name> <value> <target>` lines. Timings need a quiet machine: run it
alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).parent))
from _report import Report  # noqa: E402


# ----------------------------------------------------------------------------------------------- worker
def _worker(a: argparse.Namespace) -> None:
    from diffnet.models.unet import UNet
    from diffnet.parallel import FlatGradients, broadcast_parameters, configure_threads, shard_indices, world
    from diffnet.problems import Burgers, Grid
    from diffnet.train import local_loss_and_gradients

    if a.mode == "ddp":
        import torch.distributed as dist

        rank, size = int(os.environ.get("PMI_RANK", 0)), int(os.environ.get("PMI_SIZE", 1))
        torch.set_num_threads(a.threads)
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=rank, world_size=size)
        comm = None
    else:
        comm = world()
        rank, size = comm.rank, comm.size
        configure_threads(a.threads, comm.local_size)

    torch.manual_seed(0)
    grid = Grid(a.n, a.n, 1 / 3)
    problem = Burgers(grid, scheme=a.scheme)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = UNet(3, 16, a.depth, activation_checkpointing=a.ckpt).to(memory_format=fmt)
    n_samples = max(a.batch * 4, 64) if a.n <= 256 else a.batch
    u0_all = torch.tensor(problem.initial_condition(np.linspace(3, 6, n_samples)), dtype=torch.float32)

    if a.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model)
        opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)

        def step(k: int) -> float:
            idx = shard_indices(n_samples, a.batch, k, 0, rank, size)
            u0 = u0_all[idx]
            opt.zero_grad(set_to_none=False)
            raw = ddp(problem.network_input(u0).contiguous(memory_format=fmt))
            terms = problem.loss_terms(problem.assemble(raw, u0), raw, u0)
            terms["total"].mean().backward()  # DDP averages over ranks: the global mean for equal shards
            opt.step()
            return float(terms["total"].detach().mean())
    elif a.optimizer == "lbfgs":
        grads = FlatGradients(model)
        broadcast_parameters(model, comm)
        opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=a.lbfgs_iter, history_size=20,
                                line_search_fn="strong_wolfe")

        def step(k: int) -> float:
            idx = shard_indices(n_samples, a.batch, 0, 0, rank, size)  # full-batch: one fixed batch
            u0 = u0_all[idx]
            out = {}

            def closure():
                grads.zero_()
                sums = local_loss_and_gradients(problem, model, u0, a.batch, 0, fmt)
                comm.allreduce_sum_(sums)
                grads.allreduce_(comm)
                out["loss"] = sums[0] / a.batch
                return torch.tensor(out["loss"])

            opt.step(closure)
            return out["loss"]
    else:
        grads = FlatGradients(model)
        broadcast_parameters(model, comm)
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
        # --compile: inductor graphs of the model's forward and backward (same parameters); compiled in warm-up
        forward = torch.compile(model) if a.compile else model

        def step(k: int) -> float:
            idx = shard_indices(n_samples, a.batch, 0 if a.fixed_batch else k, 0, rank, size)
            u0 = u0_all[idx]
            grads.zero_()
            sums = local_loss_and_gradients(problem, forward, u0, a.batch, a.micro_batch, fmt, bf16=a.bf16)
            # --sync-breakdown splits the synchronisation cost: waiting for the slower rank (a barrier the
            # real loop does not have, so only in runs made for this split), then the all-reduces proper.
            t0 = time.perf_counter()
            if a.sync_breakdown:
                comm.barrier()
            t1 = time.perf_counter()
            comm.allreduce_sum_(sums)
            grads.allreduce_(comm)
            sync.append((t1 - t0, time.perf_counter() - t1))
            opt.step()
            return sums[0] / a.batch

    losses, times, sync = [], [], []
    t_start = time.perf_counter()
    for k in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        losses.append(step(k))
        times.append(time.perf_counter() - t0)
        if a.target_loss and k >= a.warmup and losses[-1] <= a.target_loss:
            break
        if a.time_limit:
            # Rank 0's clock decides for all: ranks deciding alone can stop on different steps and leave
            # one waiting forever in the next all-reduce (the loss is the same everywhere, the clock not).
            out_of_time = np.array([float(time.perf_counter() - t_start > a.time_limit)])
            if comm is not None:
                comm.bcast_(out_of_time)
            if out_of_time[0]:
                break
    measured = times[a.warmup :] or times
    result = {
        "rank": rank, "size": size, "step_s": float(np.median(measured)), "mean_step_s": float(np.mean(measured)),
        "loss": losses[-1], "losses": losses, "elapsed_s": float(np.sum(times)),
        "wait_s": float(np.median([w for w, _ in sync[a.warmup :]])) if sync[a.warmup :] else 0.0,
        "allreduce_s": float(np.median([r for _, r in sync[a.warmup :]])) if sync[a.warmup :] else 0.0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if rank == 0:
        print("JSON " + json.dumps(result), flush=True)



# ----------------------------------------------------------------------------------------------- profiles
def profile_step(n: int, batch: int, depth: int, top: int = 6) -> list[tuple[str, float]]:
    """Shares of self CPU time per op in one Adam step (in this process, 2 threads), largest first."""
    from torch.profiler import ProfilerActivity, profile

    from diffnet.models.unet import UNet
    from diffnet.problems import Burgers, Grid
    from diffnet.train import local_loss_and_gradients

    torch.set_num_threads(2)
    torch.manual_seed(0)
    problem = Burgers(Grid(n, n, 1 / 3))
    model = UNet(3, 16, depth).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())
    u0 = torch.tensor(problem.initial_condition(np.linspace(3, 6, batch)), dtype=torch.float32)

    def step() -> None:
        opt.zero_grad()
        local_loss_and_gradients(problem, model, u0, batch, 0, torch.channels_last)
        opt.step()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    shares = [(e.key, e.self_cpu_time_total / total) for e in events[:top]]
    return [*shares, ("everything else", 1 - sum(s for _, s in shares))]


def conv_kernel_times(repeats: int = 5) -> dict[tuple[int, int, int], dict[str, tuple[float, float]]]:
    """Forward and backward ms of single 3x3 convolutions shaped like the U-Net's layers, fp32 and bf16."""
    torch.set_num_threads(2)
    out: dict = {}
    for cin, cout, size in ((3, 16, 256), (16, 16, 256), (32, 32, 128), (64, 64, 64), (256, 256, 16)):
        for dtype in (torch.float32, torch.bfloat16):
            conv = torch.nn.Conv2d(cin, cout, 3, padding=1).to(memory_format=torch.channels_last, dtype=dtype)
            x = torch.randn(4, cin, size, size, dtype=dtype).contiguous(memory_format=torch.channels_last)
            x.requires_grad_(True)

            def both(conv=conv, x=x) -> None:
                y = conv(x)
                y.backward(torch.ones_like(y))

            both()
            t0 = time.perf_counter()
            for _ in range(repeats):
                conv(x)
            forward = (time.perf_counter() - t0) / repeats
            t0 = time.perf_counter()
            for _ in range(repeats):
                both()
            backward = (time.perf_counter() - t0) / repeats - forward
            out.setdefault((cin, cout, size), {})[str(dtype).removeprefix("torch.")] = (1e3 * forward, 1e3 * backward)
    return out


# ----------------------------------------------------------------------------------------------- driver
def adam_step_times(repeats: int = 200) -> dict[str, float]:
    """Median ms of one Adam step over the U-Net's parameters, for each of torch's implementations (the
    updates agree to rounding: the same algorithm, looped, multi-tensor, or one fused kernel)."""
    from diffnet.models.unet import UNet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = UNet(3, 16, 3)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    out = {}
    variants = (("for-loop (default on CPU)", {}), ("foreach", {"foreach": True}),
                ("fused (train.py)", {"fused": True}))
    for name, kw in variants:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, **kw)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - t0)
        out[name] = 1e3 * float(np.median(times[10:]))
    torch.set_num_threads(2)
    return out


def run(ranks: int, threads: int, **kw) -> dict:
    args = [sys.executable, __file__, "worker", "--threads", str(threads)]
    for key, value in kw.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                args.append(flag)
        else:
            args += [flag, str(value)]
    if kw.get("mode") == "ddp":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            args += ["--port", str(s.getsockname()[1])]
    cmd = [str(BIN / "mpiexec"), "-n", str(ranks), *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][5:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and sizes (about 3 minutes)")
    p.add_argument("--out", type=Path, help="also write the report here (markdown)")
    a = p.parse_args()
    q = a.quick
    steps = 4 if q else 10
    report = Report()
    emit, results = report.emit, report.results

    emit(f"# Engine benchmark ({'quick' if q else 'full'}), {time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"torch {torch.__version__}, {os.cpu_count()} cores; U-Net base 16, Burgers godunov1 residual, Adam.")
    emit("Step times are medians over the measured steps, after warm-up; batch = global batch.\n")

    emit("## Strong scaling and ranks vs threads (channels_last, fp32)\n")
    emit("| grid | batch | 1 rank x 1 thread (s/step) | 2 ranks x 1 thread | 1 rank x 2 threads | "
         "efficiency 2 ranks | 2 ranks / 1x2 threads (samples/s) |")
    emit("|---|---|---|---|---|---|---|")
    sync_rows = []
    for n, batch in ((128, 8), (256, 4)):
        common = dict(n=n, batch=batch, steps=steps, warmup=2, channels_last=True, depth=4)
        one = run(1, 1, **common)
        two = run(2, 1, **common)
        thr = run(1, 2, **common)
        eff = one["step_s"] / (2 * two["step_s"])
        emit(f"| {n}^2 | {batch} | {one['step_s']:.3f} | {two['step_s']:.3f} | {thr['step_s']:.3f} | {eff:.3f} | "
             f"{thr['step_s'] / two['step_s']:.2f} |")
        sync_rows.append((n, one, run(2, 1, sync_breakdown=True, **common)))
        results.append((f"scaling_eff_2r_{n}", eff, ">=0.95"))
        results.append((f"ranks_over_threads_{n}", thr["step_s"] / two["step_s"], "info"))

    emit("\nWhere the 2-rank step's time beyond half the 1-rank step goes (medians, ms per step; a separate 2-rank "
         "run with a barrier before the all-reduce, to tell waiting from communicating):\n")
    emit("| grid | half of 1-rank step | 2-rank step (with barrier) | waiting for the other rank | "
         "all-reduce (loss + gradients) |")
    emit("|---|---|---|---|---|")
    for n, one, two in sync_rows:
        emit(f"| {n}^2 | {500 * one['step_s']:.1f} | {1e3 * two['step_s']:.1f} | {1e3 * two['wait_s']:.1f} | "
             f"{1e3 * two['allreduce_s']:.1f} |")

    emit("\n## Our all-reduce vs torch DistributedDataParallel (gloo), 2 ranks x 1 thread\n")
    emit("| grid | batch | ours (s/step) | DDP gloo (s/step) | ours / DDP |")
    emit("|---|---|---|---|---|")
    for n, batch in ((64, 16), (128, 8)):
        common = dict(n=n, batch=batch, steps=steps * 2, warmup=2, channels_last=True, depth=3)
        ours = run(2, 1, **common)
        ddp = run(2, 1, mode="ddp", **common)
        ratio = ours["step_s"] / ddp["step_s"]
        emit(f"| {n}^2 | {batch} | {ours['step_s']:.4f} | {ddp['step_s']:.4f} | {ratio:.3f} |")
        results.append((f"ours_over_ddp_{n}", ratio, "<=0.9"))

    emit("\n## Throughput levers at 256^2 (2 cores in every row, same model and batch)\n")
    emit("| configuration | s/step | samples/s | speed-up | loss after the same steps | rel. diff |")
    emit("|---|---|---|---|---|---|")
    n, batch = 256, 4
    common = dict(n=n, batch=batch, steps=steps, warmup=2, depth=4, fixed_batch=True)
    rows = [
        ("plain eager: 1 rank x 2 threads, NCHW, fp32", run(1, 2, **common)),
        ("1 rank x 2 threads, channels_last, fp32", run(1, 2, channels_last=True, **common)),
        ("2 ranks x 1 thread, channels_last, fp32", run(2, 1, channels_last=True, **common)),
        ("2 ranks x 1 thread, channels_last, bf16 convs (fp32 head, residual, loss)",
         run(2, 1, channels_last=True, bf16=True, **common)),
        ("2 ranks x 1 thread, channels_last, fp32, torch.compile",
         run(2, 1, channels_last=True, compile=True, **common)),
        ("2 ranks x 1 thread, channels_last, bf16, torch.compile",
         run(2, 1, channels_last=True, bf16=True, compile=True, **common)),
    ]
    base = rows[0][1]
    for label, r in rows:
        rel = abs(r["loss"] - base["loss"]) / abs(base["loss"])
        emit(f"| {label} | {r['step_s']:.3f} | {batch / r['step_s']:.2f} | {base['step_s'] / r['step_s']:.2f} | "
             f"{r['loss']:.6e} | {rel:.1e} |")
    best_fp32 = rows[2][1]
    results.append(("speedup_vs_plain_256_fp32", base["step_s"] / best_fp32["step_s"], ">=3"))
    results.append(("speedup_vs_plain_256_bf16", base["step_s"] / rows[3][1]["step_s"], ">=3"))
    results.append(("speedup_vs_plain_256_best", base["step_s"] / min(r["step_s"] for _, r in rows), ">=3"))
    results.append(("bf16_loss_rel_diff_256", abs(rows[3][1]["loss"] - base["loss"]) / abs(base["loss"]), "<=1e-3"))
    compiled_diff = abs(rows[4][1]["loss"] - rows[2][1]["loss"]) / abs(rows[2][1]["loss"])
    results.append(("compiled_loss_rel_diff_256", compiled_diff, "<=1e-3"))

    emit("\n## Where the time goes: one step at 256^2 (1 rank x 2 threads, channels_last, fp32), torch.profiler\n")
    emit("| op | share of self CPU time |")
    emit("|---|---|")
    for op, share in profile_step(256, 4, depth=4):
        emit(f"| {op} | {share:.1%} |")
    emit("\n## oneDNN convolution kernels, fp32 vs bf16 (2 threads, channels_last, batch 4): ms per call\n")
    emit("| layer (in -> out channels, grid) | fp32 forward | bf16 forward | fp32 backward | bf16 backward |")
    emit("|---|---|---|---|---|")
    for (cin, cout, size), t in conv_kernel_times().items():
        emit(f"| {cin} -> {cout}, {size}^2 | {t['float32'][0]:.2f} | {t['bfloat16'][0]:.2f} | "
             f"{t['float32'][1]:.2f} | {t['bfloat16'][1]:.2f} |")

    emit("\n## Adam's update: torch's implementations (1 thread, the 64^2 U-Net's parameters): ms per step\n")
    emit("| implementation | ms per step | vs the for-loop default |")
    emit("|---|---|---|")
    adam_ms = adam_step_times()
    for name, ms in adam_ms.items():
        emit(f"| {name} | {ms:.3f} | {adam_ms['for-loop (default on CPU)'] / ms:.2f}x |")
    results.append(("adam_fused_speedup", adam_ms["for-loop (default on CPU)"] / adam_ms["fused (train.py)"], "info"))

    emit("\n## L-BFGS vs Adam at 64^2: wall time to a target loss (2 ranks x 1 thread, full batch 32)\n")
    limit = 60 if q else 240
    adam = run(2, 1, n=64, batch=32, steps=100000, warmup=0, channels_last=False, depth=3, fixed_batch=True,
               lr=1e-3, time_limit=limit)
    lbfgs = run(2, 1, n=64, batch=32, steps=100000, warmup=0, depth=3, optimizer="lbfgs", lbfgs_iter=20,
                time_limit=limit)
    target = max(min(adam["losses"]), min(lbfgs["losses"])) * 1.0001

    def time_to(r: dict) -> float:
        # Per-step times are not returned; spread the elapsed time evenly over the steps taken.
        hits = [i for i, v in enumerate(r["losses"]) if v <= target]
        return (hits[0] + 1) / len(r["losses"]) * r["elapsed_s"] if hits else float("inf")

    t_adam, t_lbfgs = time_to(adam), time_to(lbfgs)
    emit(f"Target loss {target:.3e} (the worse of the two best losses within {limit} s each).\n")
    emit("| optimizer | best loss | time to target (s) |")
    emit("|---|---|---|")
    emit(f"| Adam lr 1e-3 | {min(adam['losses']):.3e} | {t_adam:.1f} |")
    emit(f"| L-BFGS (20 inner iterations, strong Wolfe) | {min(lbfgs['losses']):.3e} | {t_lbfgs:.1f} |")
    results.append(("lbfgs_speedup_over_adam_64", t_adam / t_lbfgs, "info (seed claims 2-3)"))

    emit("\n## Peak memory per rank (1 rank x 2 threads, channels_last fp32, batch 2, one step)\n")
    emit("| grid | peak RSS (MiB) | per sample (MiB) | per pixel per sample (KiB) |")
    emit("|---|---|---|---|")
    sizes = (64, 128, 256) if q else (64, 128, 256, 512)
    baseline = run(1, 2, n=64, batch=1, steps=0, warmup=1, channels_last=True, depth=4)["peak_rss_mib"]
    for n in sizes:
        r = run(1, 2, n=n, batch=2, steps=1, warmup=0, channels_last=True, depth=4)
        per_sample = (r["peak_rss_mib"] - baseline) / 2
        emit(f"| {n}^2 | {r['peak_rss_mib']:.0f} | {per_sample:.1f} | {per_sample * 1024 / n / n:.2f} |")
    emit(f"\n(per-sample figures subtract the {baseline:.0f} MiB of a 64^2 batch-1 process: interpreter, torch, model)")

    report.finish(a.out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        w = argparse.ArgumentParser()
        w.add_argument("worker")
        for flag, typ, default in (("--n", int, 64), ("--batch", int, 8), ("--steps", int, 10), ("--warmup", int, 2),
                                   ("--threads", int, 1), ("--depth", int, 3), ("--micro-batch", int, 0),
                                   ("--lbfgs-iter", int, 20), ("--port", int, 0), ("--lr", float, 1e-3),
                                   ("--target-loss", float, 0.0), ("--time-limit", float, 0.0)):
            w.add_argument(flag, type=typ, default=default)
        w.add_argument("--mode", default="ours")
        w.add_argument("--scheme", default="godunov1")
        w.add_argument("--optimizer", default="adam")
        for flag in ("--channels-last", "--bf16", "--fixed-batch", "--ckpt", "--sync-breakdown", "--compile"):
            w.add_argument(flag, action="store_true")
        _worker(w.parse_args())
    else:
        main()
