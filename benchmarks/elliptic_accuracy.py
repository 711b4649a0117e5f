"""Accuracy of DiffNet on the elliptic families, split into learning and discretisation error.

    python benchmarks/elliptic_accuracy.py [--quick] [--out benchmarks/results/elliptic_accuracy.md]

Per row (family, grid, KL modes m), over 16 held-out diffusivities never trained on:
  - network vs same-grid FEM: the learning error (the FEM solves the very discrete problem whose energy
    the network minimises);
  - same-grid FEM vs the 2x refined FEM: the discretisation error;
  - network vs the refined FEM: what a user gets.
Every network is trained by the product's path: `diffnet sample`, `mpiexec -n 2 diffnet train`, `diffnet
infer`, `diffnet reference`, `diffnet evaluate`. The first grid trains from scratch; each finer grid is
a cascade (``model.cascade_levels``) over the coarser grid's network: that network, frozen, answers on
its own grid, its prediction is interpolated, and a U-Net of the same shape learns the correction. The
KL-mode sweep (m = 2, 4, 6 at 64^2) uses a shorter recipe. Ends with `RESULT` lines per target.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from diffnet import io

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline import pipeline
from _report import Report, cpu_description

# Held-out median of network vs same-grid FEM (learning error), per (family, grid).
TARGETS = {("poisson", 64): 0.01, ("poisson", 128): 0.01, ("poisson", 256): 0.02,
           ("reaction_diffusion", 64): 0.01, ("reaction_diffusion", 128): 0.01}
QUICK_TARGETS = {("poisson", 64): 0.05}
DEPTH = 4  # sees the whole 64^2 domain; finer grids see it through their cascade's coarse levels


def experiment(family: str, n: int, modes: int, recipe: tuple[int, int, float], coarser: str = "") -> dict:
    """One experiment; ``coarser`` names the experiment it is a cascade over ('' = from scratch)."""
    steps, batch, lr = recipe
    exp = {
        "problem": {"name": family, "modes": modes},
        "grid": {"nx": n, "ny": n},
        "sampling": {"n_train": 256, "n_test": 16, "seed": 2026},
        "model": {"base_channels": 16, "depth": DEPTH, "activation_checkpointing": n >= 256},
        "train": {"steps": steps, "batch_size": batch, "lr": lr, "seed": 0, "warmup_steps": 20,
                  "checkpoint_every": 10**6, "micro_batch": 2 if n >= 256 else 0},
    }
    if coarser:
        exp["train"]["init_from"] = coarser
    return exp


def run(workdir: Path, chain: list[dict], init_from: Path | None) -> tuple[dict[str, np.ndarray], float]:
    """Train (the last of ``chain``, a cascade over the ones before it) and evaluate with the CLI.

    Returns (per-sample metrics, training seconds). A workdir holding a finished run of the very same
    config is reused (its training time read from training.csv), so an interrupted benchmark continues.
    """
    names = ["acc"] + [f"coarser{k}" for k in range(1, len(chain))]
    experiments = {}
    for level, (name, exp) in enumerate(zip(names, reversed(chain), strict=True)):
        exp = copy.deepcopy(exp)
        # A cascade level carries the model section of the level above, less one level.
        exp["model"]["activation_checkpointing"] = chain[-1]["model"]["activation_checkpointing"]
        below = len(chain) - 1 - level
        if below:
            exp["model"]["cascade_levels"] = below
            exp["train"]["init_from"] = names[level + 1]
        experiments[name] = exp
    if len(chain) == 1:
        experiments = {"acc": chain[0]}
    done = pipeline(workdir, experiments, experiment="acc", until="evaluate", ranks=2, threads=1,
                    init_from=init_from, infer_threads=2, reuse=True)
    return _metrics(workdir), done.train_seconds


def _metrics(workdir: Path) -> dict[str, np.ndarray]:
    m = io.read_metrics(workdir / "metrics.nc")
    return {
        "learning": m["rel_l2_discrete"].values,
        "net_fine": m["rel_l2"].sel(solver="diffnet").values,
        "fem_fine": m["rel_l2"].sel(solver="fem").values,
        "contrast": 10.0 ** m["log10_contrast"].values,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="Poisson 64^2, 300 steps (about 3 minutes)")
    p.add_argument("--grids", default="64,128", help="Poisson grids, coarse to fine (256 needs ~1 h here)")
    p.add_argument("--modes", default="2,4,6", help="KL mode counts for the 64^2 Poisson sweep")
    p.add_argument("--families", default="poisson,reaction_diffusion")
    p.add_argument("--recipe", action="append", default=[], metavar="N:STEPS:BATCH:LR",
                   help="override one grid's recipe, e.g. 128:800:8:1e-3 (repeatable)")
    p.add_argument("--workdir", type=Path, help="keep every run's files here (default: a temporary directory)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    grids = (64,) if a.quick else tuple(int(v) for v in a.grids.split(","))
    families = ("poisson",) if a.quick else tuple(a.families.split(","))
    sweep = () if a.quick else tuple(int(v) for v in a.modes.split(","))
    recipe = {64: (1500, 16, 2e-3), 128: (300, 8, 1e-3), 256: (200, 4, 5e-4)}
    sweep_recipe = (500, 16, 2e-3)
    if a.quick:
        recipe = {64: (300, 16, 2e-3)}
    for item in a.recipe:
        try:
            n, steps, batch, lr = item.split(":")
            recipe[int(n)] = (int(steps), int(batch), float(lr))
        except ValueError:
            p.error(f"--recipe '{item}': expected N:STEPS:BATCH:LR, e.g. 128:800:8:1e-3")
    report = Report()
    emit, results = report.emit, report.results
    emit(f"# DiffNet on the elliptic families ({'quick' if a.quick else 'full'}), {time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Machine: {cpu_description()}; Python {platform.python_version()}. Training: `mpiexec -n 2 diffnet "
         f"train`, U-Net base 16 depth {DEPTH}, Adam with warm-up and cosine decay; recipe per grid (steps, batch, "
         f"lr): {recipe}; finer grids are cascades over the coarser grid's network; KL-mode sweep: {sweep_recipe}.")
    emit("16 held-out diffusivities (KL, eta = 0.5, omega in [-3, 3]^m, Sobol). Median / max of the relative "
         "L2 error over them. 'fine' = Q1 FEM on the 2x refined grid injected to this grid.\n")
    emit("| family | grid | m | contrast max(nu)/min(nu), median / max | network vs same-grid FEM (learning) | "
         "same-grid FEM vs fine (discretisation) | network vs fine | train s |")
    emit("|---|---|---|---|---|---|---|---|")

    def fmt(v: np.ndarray, digits: int = 4) -> str:
        return f"{np.median(v):.{digits}f} / {np.max(v):.{digits}f}"

    targets = QUICK_TARGETS if a.quick else TARGETS
    with tempfile.TemporaryDirectory(prefix="diffnet-elliptic-") as tmp:
        root = a.workdir or Path(tmp)
        rows = [(f, n, 4, recipe[n]) for f in families for n in (grids if f == "poisson" else grids[:2])]
        rows += [("poisson", 64, m, sweep_recipe) for m in sweep]
        chains: dict[str, list[dict]] = {}
        models: dict[str, Path] = {}
        for family, n, modes, steps in rows:
            short = steps == sweep_recipe
            chain = [] if short else chains.get(family, [])
            chain = [*chain, experiment(family, n, modes, steps)]
            name = f"{family}{n}m{modes}" + ("_short" if short else "")
            res, seconds = run(root / name, chain, None if short or len(chain) == 1 else models[family])
            if not short:
                chains[family], models[family] = chain, root / name / "model.pt"
            label = f"{n}^2" + (" (cascade)" if len(chain) > 1 else "")
            emit(f"| {family} | {label} | {modes}{' (short)' if short else ''}"
                 f" | {np.median(res['contrast']):.3g} / {np.max(res['contrast']):.3g} | "
                 f"{fmt(res['learning'])} | {fmt(res['fem_fine'])} | {fmt(res['net_fine'])} | {seconds:.0f} |")
            if not short and (family, n) in targets:
                results.append((f"{family}_net_vs_fem_rel_l2_{n}", float(np.median(res["learning"])),
                                f"<={targets[(family, n)]}"))
                if (family, n) == ("poisson", 64) and not a.quick:
                    results.append(("poisson_net_vs_fem_rel_l2_64_stretch", float(np.median(res["learning"])),
                                    "<=0.005"))
            else:
                results.append((f"{family}_m{modes}_net_vs_fem_rel_l2_{n}", float(np.median(res["learning"])),
                                "info"))
    report.finish(a.out)


if __name__ == "__main__":
    main()
