"""A prediction checks itself: the family's own discrete residual, evaluated on what the network answered.

DiffNet is trained on the PDE, not on data, so the residual of a prediction (Burgers: the scheme's
residual; elliptic families: the Q1 residual, i.e. the energy's gradient) says how far it is from
solving its discrete problem, at the cost of a fraction of an inference. At the end of training the
residual is calibrated on the held-out samples (their ``QUANTILE`` quantile times ``MARGIN``) and stored
in model.pt; a later prediction above that level, or with parameters outside the trained range, is
marked untrusted.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from diffnet.problems import Problem, outside_trained_range
from diffnet.progress import track

QUANTILE = 0.99
MARGIN = 2.0


@torch.inference_mode()
def predict(problem: Problem, model: torch.nn.Module, cond: np.ndarray, channels_last: bool = True,
            batch: int = 64, progress: bool = True, bf16: bool = False) -> np.ndarray:
    """Fields u(sample, *axes) for the samples' conditions (``Problem.condition``), in batches.

    ``bf16``: the generator's body under bf16 autocast (its last layer stays float32, as in training).
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    dtype = next(model.parameters()).dtype  # float64 for a model trained in float64
    out = []
    starts = range(0, len(cond), batch)
    for start in track(starts, len(starts), "infer (batches)") if progress else starts:
        part = torch.tensor(cond[start : start + batch], dtype=dtype)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            raw = model(problem.network_input(part).contiguous(memory_format=fmt))
        out.append(problem.assemble(raw.float(), part.float()).numpy())
    return np.concatenate(out)


_NODES_PER_CALL = 2**22


def residuals(problem: Problem, u: np.ndarray, cond: np.ndarray, batch: int = 64) -> np.ndarray:
    """The family's self-check of each prediction, (sample,), in float32 as the loss is trained."""
    # At most ~4 M nodes per call: a preconditioned residual builds float64 copies of its batch.
    batch = max(1, min(batch, _NODES_PER_CALL // max(1, u[0].size)))
    out = []
    for start in range(0, len(u), batch):
        part = torch.tensor(u[start : start + batch], dtype=torch.float32)
        c = torch.tensor(cond[start : start + batch], dtype=torch.float32)
        out.append(problem.residual(part, c).detach().double().numpy())
    return np.concatenate(out)


def calibrate(held_out: np.ndarray, quantile: float = QUANTILE, margin: float = MARGIN) -> dict[str, float]:
    """The trust level from the held-out samples' residuals: their ``quantile`` quantile times ``margin``."""
    return {"residual_threshold": float(np.quantile(held_out, quantile) * margin), "quantile": quantile,
            "margin": margin, "calibration_samples": float(len(held_out))}


def assess(problem: Problem, params: Mapping[str, np.ndarray], residual: np.ndarray,
           calibration: Mapping[str, float] | None) -> tuple[np.ndarray, list[str]]:
    """(trusted (sample,) bool, the reason per sample: '' when trusted)."""
    reasons = [[] for _ in residual]
    if calibration is not None:
        level = calibration["residual_threshold"]
        for k in np.flatnonzero(residual > level):
            reasons[k].append(f"residual {residual[k]:.3g} above the calibrated {level:.3g}")
    for name, outside in outside_trained_range(problem, params).items():
        spec = problem.parameters[name]
        for k in np.flatnonzero(outside):
            reasons[k].append(f"{name} outside the trained range [{spec.low:g}, {spec.high:g}]")
    text = ["; ".join(r) for r in reasons]
    return np.array([not r for r in text]), text


def describe(problem: Problem, params: Mapping[str, np.ndarray], k: int) -> str:
    """'c = 9.5' or 'omega = (0.5, -1, 2, 0), kappa = 2' for sample k."""
    parts = []
    for name in problem.parameters:
        v = np.asarray(params[name])[k]
        parts.append(f"{name} = {v:g}" if np.ndim(v) == 0 else f"{name} = ({', '.join(f'{x:g}' for x in v)})")
    return ", ".join(parts)
