"""Time per solution of the Poisson family: batched DiffNet inference vs scikit-fem + pyamg, on the same cores.

    python benchmarks/elliptic_inference_vs_fem.py [--quick] [--model results/poisson256/model.pt]
                                                   [--out benchmarks/results/elliptic_inference_vs_fem.md]

Every method gets the same 2 threads (torch, and the BLAS under numpy/scipy). For each grid the
classical side is what a user pays for a *new* diffusivity field: assembly + AMG set-up + CG solve
(x0 = 0, relative tolerance 1e-10), split into its parts, with
  - scikit-fem's Q1 assembly (nu at the 2x2 Gauss points),
  - a vectorised stencil assembly of the same matrix on the structured grid (so the ratio is not won by
    a slow assembly),
  - a sparse direct solve (SuperLU) instead of AMG + CG, with the stencil assembly.
DiffNet runs two architectures, base 16: a single U-Net deep enough to see across the whole domain
(receptive radius >= n - 1), and the cascade the elliptic experiments train (config/config.yaml:
poisson128, poisson256): depth-4 U-Nets on n, n/2, ..., 64 nodes, each coarse prediction interpolated
and corrected. Timing does not depend on the weights, so 512^2 and 1024^2 use untrained networks; with
--model (a trained cascade), the row of its grid also reports its accuracy on its held-out samples
(what the speed-up buys). Peak inference memory is measured in a fresh process
(ru_maxrss). Ends with `RESULT` lines.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np

from diffnet.numerics import kl
from diffnet.numerics import q1_fem as fem
from diffnet.shapes import receptive_radius

sys.path.insert(0, str(Path(__file__).parent))
from _report import Report, best_of, cpu_description

THREADS = 2
TARGETS = {512: 10.0, 1024: 20.0}


def depth_for(n: int) -> int:
    return next(d for d in range(1, 12) if receptive_radius(d) >= n - 1)


def cascade_levels(n: int) -> int:
    """Cascade levels above a 64-node grid: 128 -> 1, 256 -> 2, ..."""
    return round(float(np.log2((n - 1) / 63))) if n > 64 else 0


def network_time(n: int, depth: int, levels: int, batch: int, repeats: int) -> tuple[float, float]:
    """(seconds per solution, peak RSS in MiB) of batched inference, in a fresh process."""
    code = textwrap.dedent(f"""
        import resource, time, torch
        from diffnet.config import ModelConfig
        from diffnet.models import build_model
        torch.set_num_threads({THREADS})
        cfg = ModelConfig(base_channels=16, depth={depth}, norm="none", activation_checkpointing=False,
                          cascade_levels={levels})
        model = build_model(cfg, ({n}, {n}), 3).eval().to(memory_format=torch.channels_last)
        x = torch.randn({batch}, 3, {n}, {n}).contiguous(memory_format=torch.channels_last)
        times = []
        with torch.inference_mode():
            for _ in range({repeats} + 1):
                t0 = time.perf_counter(); model(x); times.append(time.perf_counter() - t0)
        print(min(times[1:]) / {batch}, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def fem_times(n: int, omega: np.ndarray, repeats: int, direct: bool) -> dict[str, float]:
    log_nu = kl.kl_log_nu_function(omega, 0.5)
    out: dict[str, float] = {}
    for assembly in ("skfem", "stencil"):
        best = None
        for _ in range(repeats):
            _, t = fem.solve_poisson(log_nu, n, assembly=assembly, tol=1e-10)
            if best is None or t.assembly + t.setup + t.solve < best.assembly + best.setup + best.solve:
                best = t
        out.update({f"{assembly}_assembly": best.assembly, f"{assembly}_setup": best.setup,
                    f"{assembly}_solve": best.solve, f"{assembly}_iterations": best.iterations})
    if direct:
        out["direct"] = best_of(lambda: fem.solve_poisson(log_nu, n, solver="direct", assembly="stencil"), repeats)
    else:
        out["direct"] = float("nan")
    return out


def trained_accuracy(model_path: Path) -> tuple[int, float, float]:
    """(grid, median learning error, median error vs fine) from the metrics.nc beside a trained model.pt."""
    from diffnet import io

    metrics = model_path.parent / "metrics.nc"
    if not metrics.is_file():
        raise SystemExit(f"--model: '{metrics}' not found; build the experiment's pipeline first")
    m = io.read_metrics(metrics)
    pred = io.read_prediction(model_path.parent / "prediction.nc")
    return (pred.sizes["x"], float(np.median(m["rel_l2_discrete"].values)),
            float(np.median(m["rel_l2"].sel(solver="diffnet").values)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="256^2 and 512^2 only, batch 2, one repeat (< 3 min)")
    p.add_argument("--model", type=Path, help="trained model.pt of a Poisson experiment (its metrics.nc beside it)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    import torch

    torch.set_num_threads(THREADS)
    sizes = (256, 512) if a.quick else (256, 512, 1024)
    batch = {256: 2, 512: 2, 1024: 2} if a.quick else {256: 8, 512: 4, 1024: 2}
    repeats = 1 if a.quick else 2
    omega = np.random.default_rng(0).uniform(-3, 3, 4)
    report = Report()
    emit, results = report.emit, report.results
    emit(f"# Poisson: DiffNet inference vs scikit-fem + pyamg ({'quick' if a.quick else 'full'}), "
         f"{time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Machine: {cpu_description()}. {THREADS} threads for every method. Best of {repeats}. One KL sample "
         "(m = 4, eta = 0.5, omega ~ U[-3, 3]^4); the FEM time is the same for any sample up to the CG iteration "
         "count.\n")
    emit("| grid | DiffNet U-Net (depth) s/solution | DiffNet cascade (levels) s/solution | peak MiB (U-Net / "
         "cascade) | skfem assembly | AMG set-up | CG solve (its.) | FEM total (skfem) | stencil assembly | FEM total "
         "(stencil) | direct (stencil + SuperLU) | best classical / U-Net | best classical / cascade |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        net16, mem16 = network_time(n, depth_for(n), 0, batch[n], repeats)
        net8, mem8 = network_time(n, 4, cascade_levels(n), batch[n], repeats)
        f = fem_times(n, omega, repeats, direct=not (a.quick and n > 256))
        total_skfem = f["skfem_assembly"] + f["skfem_setup"] + f["skfem_solve"]
        total_stencil = f["stencil_assembly"] + f["stencil_setup"] + f["stencil_solve"]
        best = np.nanmin([total_skfem, total_stencil, f["direct"]])
        emit(f"| {n}^2 | {net16:.3f} ({depth_for(n)}) | {net8:.3f} ({cascade_levels(n)}) | {mem16:.0f} / {mem8:.0f} | "
             f"{f['skfem_assembly']:.3f} | {f['skfem_setup']:.3f} | {f['skfem_solve']:.3f} "
             f"({f['skfem_iterations']}) | {total_skfem:.3f} | {f['stencil_assembly']:.3f} | {total_stencil:.3f} | "
             f"{f['direct']:.3f} | {best / net16:.2f} | {best / net8:.2f} |")
        results.append((f"best_classical_over_unet_{n}", best / net16, "info"))
        results.append((f"best_classical_over_cascade_{n}", best / net8,
                        f">={TARGETS[n]}" if n in TARGETS and not a.quick else "info"))
        results.append((f"skfem_amg_over_cascade_{n}", total_skfem / net8, "info"))
    if a.model:
        grid, learning, vs_fine = trained_accuracy(a.model)
        emit(f"\nTrained model {a.model} ({grid}^2): held-out median learning error (vs same-grid FEM) "
             f"{learning:.4f}, error vs the refined FEM {vs_fine:.4f}.")
        results.append((f"trained_net_vs_fem_rel_l2_{grid}", learning, "info"))
    emit("\nThe U-Net column is what a network that sees the whole domain in one piece costs; the cascade column is "
         "the architecture trained in config/config.yaml (its accuracy: benchmarks/results/elliptic_accuracy.md).")
    emit("Ratios above 1 mean DiffNet is faster. 'best classical' is the fastest of the three classical "
         "columns. The source talk reported FEM/DiffNet = 6.4 at 512^2 and 40 at 1024^2 against its own FEM.")
    emit("Amortisation: the network's training cost is paid once and is not in these figures.")
    report.finish(a.out)


if __name__ == "__main__":
    main()
