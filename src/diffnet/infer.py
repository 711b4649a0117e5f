"""Stage `infer`: a trained generator answers a batch of initial conditions in one pass."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import yaml

from diffnet import checkpoint, io, problems
from diffnet.config import ConfigError, ExperimentConfig, experiment_from_dict, validate
from diffnet.models import build_model
from diffnet.progress import track


def load_model(path: str | Path) -> tuple[ExperimentConfig, torch.nn.Module]:
    """The trained weights and the configuration they were trained with."""
    state = checkpoint.load(path)
    if "config_yaml" not in state or "model" not in state:
        raise checkpoint.CheckpointError(f"'{path}' is a training checkpoint, not a final model.pt; "
                                         "finish `diffnet train` first")
    doc = validate(yaml.safe_load(state["config_yaml"]), resolved=True)
    name = state["experiment"]
    exp = experiment_from_dict(name, doc["experiments"][name])
    problem = problems.from_config(exp)
    model = build_model(exp.model, exp.grid.shape, problem.input_channels)
    # Activation checkpointing only matters in training; the weights are the same.
    model.load_state_dict(state["model"])
    return exp, model.eval()


@torch.inference_mode()
def predict(exp: ExperimentConfig, model: torch.nn.Module, u0: np.ndarray, batch: int = 64) -> np.ndarray:
    problem = problems.from_config(exp)
    fmt = torch.channels_last if exp.train.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    out = []
    starts = range(0, len(u0), batch)
    for start in track(starts, len(starts), "infer (batches)"):
        u0_b = torch.tensor(u0[start : start + batch], dtype=torch.float32)
        raw = model(problem.network_input(u0_b).contiguous(memory_format=fmt))
        out.append(problem.assemble(raw.float(), u0_b).numpy())
    return np.concatenate(out)


def infer(model_path: str | Path, out: str | Path, *, ics_path: str | Path | None = None, split: str = "test",
          params: list[float] | None = None, threads: int | None = None) -> None:
    if (ics_path is None) == (params is None):
        raise ConfigError("infer: give exactly one of --ics FILE (with --split) or --c VALUES")
    if threads:
        torch.set_num_threads(threads)
    exp, model = load_model(model_path)
    problem = problems.from_config(exp)
    if ics_path is not None:
        ics = io.select_split(io.read_ics(ics_path), split)
        if ics.sizes["x"] != problem.grid.nx:
            raise io.ContractError(f"'{ics_path}' has {ics.sizes['x']} x nodes, the model was trained on "
                                   f"{problem.grid.nx}")
        values = ics[ics.attrs.get("parameter", "c")].values
        u0 = ics["u0"].values
    else:
        values = np.asarray(params, dtype=np.float64)
        u0 = problem.initial_condition(values)
    start = time.perf_counter()
    u = predict(exp, model, u0)
    seconds = (time.perf_counter() - start) / len(values)
    g = problem.grid
    ds = io.field_dataset(
        exp, g.t, g.x, values, problem.parameter_name, problem.parameter_attrs,
        {"u": (u, "DiffNet prediction of u")},
        extra={"seconds_infer": ("sample", np.full(len(values), seconds),
                                 {"units": "s", "long_name": "batched inference wall time per sample"})},
        title="DiffNet prediction",
    )
    io.write_dataset(ds, out)
