"""Stage `infer`: a trained generator answers a batch of samples (stored, or given as parameters) in one pass."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from diffnet import checkpoint, io, problems, selfcheck
from diffnet.config import ConfigError, ExperimentConfig, config_from_yaml
from diffnet.machine import bf16_or_warn, native_bf16
from diffnet.models import build_model

# Samples per inference batch of `diffnet infer`.
BATCH = 64


def read_model(path: str | Path) -> tuple[ExperimentConfig, dict]:
    """The configuration a model.pt was trained with, and its saved state (weights, self-check level)."""
    state = checkpoint.load(path)
    if "config_yaml" not in state or "model" not in state:
        raise checkpoint.CheckpointError(f"'{path}' is a training checkpoint, not a final model.pt; "
                                         "finish `diffnet train` first")
    return config_from_yaml(state["config_yaml"], state["experiment"]), state


def load_model(path: str | Path) -> tuple[ExperimentConfig, torch.nn.Module]:
    """The trained weights and the configuration they were trained with."""
    exp, state = read_model(path)
    return exp, model_from_state(exp, state)


def model_from_state(exp: ExperimentConfig, state: dict) -> torch.nn.Module:
    problem = problems.from_config(exp)
    model = build_model(exp.model, exp.grid.shape, problem.input_channels)
    # Activation checkpointing only matters in training; the weights are the same.
    model.load_state_dict(state["model"])
    return model.eval()


def predict(exp: ExperimentConfig, model: torch.nn.Module, cond: np.ndarray, batch: int = BATCH,
            bf16: bool = False) -> np.ndarray:
    """Fields u(sample, *axes) for the samples' conditions (``Problem.condition``), in batches."""
    return selfcheck.predict(problems.from_config(exp), model, cond, exp.train.channels_last, batch, bf16=bf16)


def resolve_precision(requested: str, trained: str) -> str:
    """The arithmetic of inference. auto: bfloat16 where the CPU has native bf16 kernels and the model was
    trained in bfloat16 (so its accuracy was measured in it), float32 otherwise; bf16 inference of a float32
    model costs accuracy (benchmarks/results/bf16_inference.md: up to 10% more error for the elliptic
    families), so it is only done when asked for."""
    if requested == "auto":
        return "bfloat16" if trained == "bfloat16" and native_bf16() else "float32"
    return bf16_or_warn(requested, "--precision")


def compiled(problem: problems.Problem, model: torch.nn.Module, cond: np.ndarray, channels_last: bool,
             bf16: bool) -> tuple[torch.nn.Module, str]:
    """``torch.compile`` (inductor) of the model, compiled and tried on ``cond``: the conditions of the first
    batch, so that the batches predicted afterwards find their graph ready instead of recompiling inside the
    timed inference. The eager model, with one warning line, where compilation fails (no C++ compiler, an
    unsupported operator)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    dtype = next(model.parameters()).dtype
    try:
        fast = torch.compile(model)
        # The trial input is made inside inference mode, as selfcheck.predict makes its batches: a tensor made
        # outside has another dispatch key set, and the first real batch would recompile.
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            fast(problem.network_input(torch.tensor(cond, dtype=dtype)).contiguous(memory_format=fmt))
        return fast, "inductor"
    except Exception as exc:  # inductor raises many types; any failure means eager
        warnings.warn(f"--compile: torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                      "running the model eagerly", stacklevel=2)
        return model, "none"


def parameters_from_values(problem: problems.Problem, given: dict[str, list[list[float]]]) -> dict[str, np.ndarray]:
    """Parameter arrays from command-line vectors (one list per sample), checked against the family.

    A scalar parameter takes one value per sample (``--c 3.3,4.7`` is two samples); a vector parameter
    one vector per sample (``--omega "0.5,-1,2,0;1,1,0,-2"``). A parameter given once while another
    is given for several samples applies to all of them.
    """
    unknown = sorted(set(given) - set(problem.parameters))
    if unknown:
        raise ConfigError(f"--{unknown[0]}: the {problem.name} family has no such parameter; it takes "
                          + ", ".join(f"--{p}" for p in problem.parameters))
    arrays = {}
    for name, spec in problem.parameters.items():
        if name not in given:
            raise ConfigError(f"--{name} is missing: the {problem.name} family needs "
                              + " and ".join(f"--{p}" for p in problem.parameters))
        rows = given[name]
        if not spec.dims:
            values = np.asarray([v for row in rows for v in row], dtype=np.float64)
        else:
            width = spec.shape[0]
            bad = [len(row) for row in rows if len(row) != width]
            if bad:
                raise ConfigError(f"--{name}: each vector needs {width} values ({spec.dims[0]} count of this "
                                  f"model), got {bad[0]}; separate vectors with ';'")
            values = np.asarray(rows, dtype=np.float64)
        arrays[name] = values
    count = max(len(v) for v in arrays.values())
    for name, values in arrays.items():
        if len(values) == 1 and count > 1:
            arrays[name] = np.repeat(values, count, axis=0)
        elif len(values) != count:
            raise ConfigError(f"--{name} gives {len(values)} samples, another parameter {count}; give one or "
                              f"{count}")
    return arrays


def infer(model_path: str | Path, out: str | Path, *, samples_path: str | Path | None = None, split: str = "test",
          params: dict[str, list[list[float]]] | None = None, threads: int | None = None,
          precision: str = "auto", compile_model: bool = False, inputs_path: str | Path | None = None) -> None:
    if sum((samples_path is not None, bool(params), inputs_path is not None)) != 1:
        raise ConfigError("infer: give exactly one of --samples FILE (with --split), --inputs FILE (your own fields) "
                          "or parameter values (--c, or --omega with --kappa where the family has it)")
    if threads:
        torch.set_num_threads(threads)
    exp, state = read_model(model_path)
    problem = problems.from_config(exp)
    if inputs_path is not None:
        # Every check comes before the network is built: nothing is written for a refused field.
        values, record = _user_fields(problem, inputs_path)
    elif params:
        # Bad values are refused before the network is built: nothing is written for them.
        values = parameters_from_values(problem, params)
        _check(problem, values)
        record = {**values, **problem.input_fields(values)}
    else:
        samples = io.select_split(io.read_samples(samples_path), split)
        io.check_grid(samples, problem, samples_path, "the model's grid")
        values = io.parameters_of(samples)
        _check(problem, values)
        record = io.record_of(samples)
    model = model_from_state(exp, state)
    cond = problem.condition(record)
    arithmetic = resolve_precision(precision, state.get("precision", exp.train.precision))
    bf16 = arithmetic == "bfloat16"
    compile_mode = "none"
    if compile_model:  # outside the timed inference
        model, compile_mode = compiled(problem, model, cond[:BATCH], exp.train.channels_last, bf16)
    start = time.perf_counter()
    u = predict(exp, model, cond, batch=BATCH, bf16=bf16)
    count = len(u)
    seconds = (time.perf_counter() - start) / count
    # The self-check is timed apart from inference: it is what a user pays on top for the trust flag.
    residual = selfcheck.residuals(problem, u, cond)
    calibration = state.get("self_check")  # None for models trained before the self-check existed
    trusted, reasons = selfcheck.assess(problem, values, residual, calibration)
    for k in np.flatnonzero(~trusted):
        warnings.warn(f"sample {k} ({selfcheck.describe(problem, values, k)}) is untrusted: {reasons[k]}",
                      stacklevel=2)
    level = "not calibrated (model trained before the self-check existed)" if calibration is None else \
        f"{calibration['residual_threshold']:.6g} ({calibration['quantile']:g} quantile of the held-out " \
        f"residuals x {calibration['margin']:g})"
    inputs = {name: record[name] for name in problem.inputs}
    ds = io.field_dataset(
        exp, problem, values, {"u": (u, "DiffNet prediction of u")},
        extra={
            "seconds_infer": ("sample", np.full(count, seconds),
                              {"units": "s", "long_name": "batched inference wall time per sample"}),
            "residual": ("sample", residual, {"units": "1", "long_name": "self-check: mean square of the "
                                              "family's discrete residual evaluated on the prediction"}),
            "trusted": ("sample", trusted.astype(np.int8), {
                "long_name": "self-check verdict: residual within the calibrated level and parameters "
                             "inside the trained range", "flag_values": np.array([0, 1], dtype=np.int8),
                "flag_meanings": "untrusted trusted"}),
        },
        title="DiffNet prediction", inputs=inputs,
    )
    ds.attrs["residual_threshold"] = level
    ds.attrs["threads"] = torch.get_num_threads()  # the per-query cost in core-seconds is seconds x threads
    ds.attrs["precision"] = arithmetic
    ds.attrs["compile"] = compile_mode
    io.write_dataset(ds, out)
    print(f"inferred {count} samples on {torch.get_num_threads()} thread(s) in {arithmetic} (compile: {compile_mode}): "
          f"{seconds * 1e3:.3g} ms per sample",
          file=sys.stderr)


def _user_fields(problem: problems.Problem, path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(parameters, record) of samples given by a user's own input fields, checked (``--inputs``)."""
    if not problems.accepts_fields(problem):
        raise ConfigError(f"--inputs: the {problem.name} family derives its input fields from its parameters "
                          f"({', '.join(problem.parameters)}); give those, or --samples FILE")
    fields = io.read_inputs(path, problem)
    try:
        problems.check_fields(problem, fields)
    except problems.ParameterError as exc:
        raise ConfigError(f"--inputs '{path}': {exc}") from None
    values = problem.from_inputs(fields)
    _check(problem, values)  # outside the trained range: a warning here, untrusted in the file
    return values, {**values, **fields}


def _check(problem: problems.Problem, values: dict[str, np.ndarray]) -> None:
    try:
        advice = problems.check_values(problem, values)
    except problems.ParameterError as exc:
        raise ConfigError(str(exc)) from None
    for line in advice:
        warnings.warn(line, stacklevel=2)
