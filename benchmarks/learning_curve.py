"""Learning error against training time at one grid: is the network budget-bound or stuck?

    python benchmarks/learning_curve.py [--quick] [--n 256] [--init-from model.pt] [--steps 1600] ...

One training run (one process, the default recipe's Adam schedule over --steps) is cut every --every
steps; at each cut the checkpointed network answers held-out c in [3, 6] and is compared with the
scheme's own discrete solution (the learning error) and with the exact entropy solution. The last
rows tell whether more steps still buy accuracy. Loss integrity makes one process stand for any rank
count: the trajectory is the same to rounding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffnet import checkpoint, io, problems
from diffnet.config import experiment_from_dict, validate
from diffnet.infer import predict
from diffnet.numerics import exact, marching
from diffnet.parallel.comm import SerialComm
from diffnet.sample import sample
from diffnet.train import TrainingStopped, build_model, train

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline import rel_l2
from _report import Report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64^2, 300 steps (about 3 minutes)")
    p.add_argument("--n", type=int, default=256, help="grid nodes per axis")
    p.add_argument("--scheme", default="tvd2_cn")
    p.add_argument("--residual-form", default="pointwise", choices=("pointwise", "time_integrated", "preconditioned"))
    p.add_argument("--steps", type=int, default=1600)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--every", type=int, default=200, help="evaluate every this many steps")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init-from", type=Path, help="model.pt to start from (e.g. the 128^2 network)")
    p.add_argument("--cascade-levels", type=int, default=0,
                   help="model.cascade_levels: >0 keeps --init-from frozen under a fine correction")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.quick:
        a.n, a.steps, a.batch, a.lr, a.every = 64, 300, 16, 2e-3, 100
    if a.cascade_levels and not a.init_from:
        p.error("--cascade-levels needs --init-from (the coarser network it builds on)")
    if a.every < 1 or a.steps < a.every:
        p.error(f"--every {a.every} must be between 1 and --steps {a.steps}")

    doc = validate({"experiments": {"curve": {
        "problem": {"name": "burgers", "c_min": 3.0, "c_max": 6.0},
        "grid": {"nx": a.n, "nt": a.n},
        "sampling": {"n_train": 256, "n_test": 16, "seed": 2026},
        "model": {"depth": a.depth, "cascade_levels": a.cascade_levels},
        "loss": {"scheme": a.scheme, "residual_form": a.residual_form},
        "train": {"steps": a.steps, "batch_size": a.batch, "lr": a.lr, "checkpoint_every": a.every,
                  "init_from": "coarser" if a.init_from else ""},
    }}}, resolved=True)  # the coarser experiment is --init-from's file, not an entry here
    exp = experiment_from_dict("curve", doc["experiments"]["curve"])
    problem = problems.from_config(exp)
    report = Report()
    emit = report.emit
    emit(f"# Learning curve at {a.n}^2 ({'quick' if a.quick else 'full'}), {time.strftime('%Y-%m-%d %H:%M')}")
    emit(f"Scheme {a.scheme}, residual form {a.residual_form}, U-Net depth {a.depth}, cascade levels "
         f"{a.cascade_levels}, Adam lr {a.lr} "
         f"(warm-up, cosine decay over {a.steps} steps), global batch {a.batch}, 1 process x {a.threads} threads, "
         f"start: {a.init_from or 'random'}. Held-out c in [3, 6] (16 ICs); median / max rel L2.\n")
    emit("| step | train s | loss | network vs discrete | network vs exact | discrete vs exact |")
    emit("|---|---|---|---|---|---|")

    with tempfile.TemporaryDirectory(prefix="diffnet-curve-") as tmp:
        samples_path = Path(tmp) / "samples.nc"
        sample(exp, samples_path)
        test = io.select_split(io.read_samples(samples_path), "test")
        c, u0 = test["c"].values, test["u0"].values
        f0, prim, du0 = exact.cosine_family(c)
        ue = exact.lax_oleinik(f0, prim, problem.grid.x, problem.grid.t, du0=du0)
        ud = marching.march(a.scheme, ue[:, 0], problem.grid.nt, problem.grid.dt, problem.grid.dx)
        disc = np.median(rel_l2(ud, ue))
        model = build_model(exp, problem.input_channels)

        def evaluate(state: dict | None) -> tuple[np.ndarray, np.ndarray]:
            if state is not None:
                model.load_state_dict(state["model"])
            with torch.inference_mode():
                u = predict(exp, model.eval(), u0).astype(np.float64)
            return rel_l2(u, ud), rel_l2(u, ue)

        if a.init_from:  # step 0: the coarse network as it is (a cascade: interpolated; else applied here)
            start = checkpoint.load(a.init_from)
            (model.coarse if a.cascade_levels else model).load_state_dict(start["model"])
            net_disc, net_exact = evaluate(None)
            emit(f"| 0 | 0 | | {np.median(net_disc):.4f} / {net_disc.max():.4f} | "
                 f"{np.median(net_exact):.4f} / {net_exact.max():.4f} | {disc:.4f} |")
        net_disc = np.array([np.nan])
        for stop in range(a.every, a.steps + a.every, a.every):
            stop = min(stop, a.steps)
            try:
                result = train(exp, samples_path, tmp, threads=a.threads, comm=SerialComm(), progress=False,
                               stop_after=stop if stop < a.steps else None, init_from=a.init_from)
                seconds, loss = result.seconds, result.final_loss
            except TrainingStopped:
                state = checkpoint.load(checkpoint.latest(Path(tmp) / "checkpoints"))
                seconds, loss = float(state["history"][-1, 6]), float(state["history"][-1, 2])
            net_disc, net_exact = evaluate(checkpoint.load(checkpoint.latest(Path(tmp) / "checkpoints")))
            emit(f"| {stop} | {seconds:.0f} | {loss:.3e} | {np.median(net_disc):.4f} / {net_disc.max():.4f} | "
                 f"{np.median(net_exact):.4f} / {net_exact.max():.4f} | {disc:.4f} |")
            if stop == a.steps:
                break
    report.results.append((f"{a.scheme}_net_vs_discrete_rel_l2_{a.n}_after_{a.steps}", np.median(net_disc), "<=0.02"))
    report.finish(a.out)


if __name__ == "__main__":
    main()
