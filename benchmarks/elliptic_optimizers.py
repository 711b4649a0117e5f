"""Adam vs distributed L-BFGS on the Poisson energy, at 1 and 2 ranks, through `diffnet train`.

    python benchmarks/elliptic_optimizers.py [--quick] [--out benchmarks/results/elliptic_optimizers.md]

The Poisson energy is a convex quadratic in the nodal values (not in the weights), so if L-BFGS's claimed
2-3x speed-up over Adam with large batches holds anywhere, it should hold here. Full batch (every step
sees the same 64 training samples), so both loss curves are deterministic and comparable: the reported
figure is the wall time each run needs to first reach Adam's final loss, and their ratio. Both runs use
the product's path (`mpiexec -n P diffnet train`, optimizer: adam | lbfgs); L-BFGS all-reduces the loss
and gradient inside its closure, so every rank takes the same line-search decisions. Ends with `RESULT`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline import pipeline
from _report import Report, cpu_description


def train(workdir: Path, optimizer: str, ranks: int, steps: int, n: int, lr: float) -> pd.DataFrame:
    exp = {
        "problem": {"name": "poisson"},
        "grid": {"nx": n, "ny": n},
        "sampling": {"n_train": 64, "n_test": 4, "seed": 2026},
        "model": {"base_channels": 16, "depth": 3},
        "train": {"steps": steps, "batch_size": 64, "lr": lr, "optimizer": optimizer, "warmup_steps": 0,
                  "lbfgs_max_iter": 20, "checkpoint_every": 10**6, "seed": 0},
    }
    run = pipeline(workdir, {"opt": exp}, until="train", ranks=ranks, threads=2 // ranks)
    return pd.read_csv(run.training)


def time_to(history: pd.DataFrame, target: float) -> float:
    reached = history["loss"].to_numpy() <= target
    return float(history["seconds"].to_numpy()[np.argmax(reached)]) if reached.any() else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps, 1 rank only unless --ranks (about 2 minutes)")
    p.add_argument("--grid", type=int, default=32)
    p.add_argument("--ranks", help="comma-separated rank counts (default: 1 with --quick, else 1,2)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    adam_steps, lbfgs_steps = (150, 10) if a.quick else (600, 40)
    rank_counts = tuple(int(r) for r in a.ranks.split(",")) if a.ranks else ((1,) if a.quick else (1, 2))
    report = Report()
    emit, results = report.emit, report.results
    mode = "quick" if a.quick else "full"
    emit(f"# Adam vs L-BFGS on the Poisson energy ({mode}), {time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Machine: {cpu_description()}. Poisson {a.grid}^2, m = 4, U-Net base 16 depth 3, full batch of 64 "
         f"samples, 2 cores in all (P ranks x 2/P threads). Adam: {adam_steps} steps, lr 2e-3 cosine. L-BFGS: "
         f"{lbfgs_steps} steps of up to 20 inner iterations, strong Wolfe, lr 1.\n")
    emit("| ranks | optimizer | final loss (energy) | wall s | s to Adam's final loss |")
    emit("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="diffnet-opt-") as tmp:
        for ranks in rank_counts:
            adam = train(Path(tmp) / f"adam{ranks}", "adam", ranks, adam_steps, a.grid, 2e-3)
            lbfgs = train(Path(tmp) / f"lbfgs{ranks}", "lbfgs", ranks, lbfgs_steps, a.grid, 1.0)
            target = float(adam["loss"].iloc[-1])
            t_adam, t_lbfgs = time_to(adam, target), time_to(lbfgs, target)
            for name, h, t in (("adam", adam, t_adam), ("lbfgs", lbfgs, t_lbfgs)):
                emit(f"| {ranks} | {name} | {h['loss'].iloc[-1]:.6f} | {h['seconds'].iloc[-1]:.1f} | "
                     f"{t:.1f} |" if np.isfinite(t) else f"| {ranks} | {name} | {h['loss'].iloc[-1]:.6f} | "
                     f"{h['seconds'].iloc[-1]:.1f} | not reached |")
            results.append((f"lbfgs_speedup_over_adam_{ranks}rank", t_adam / t_lbfgs if np.isfinite(t_lbfgs)
                            else 0.0, "info (the source claims 2-3 with large batches)"))
    emit("\nA speed-up above 1 means L-BFGS reached Adam's final loss sooner; 0 means it never did.")
    report.finish(a.out)


if __name__ == "__main__":
    main()
