"""The training loop: one obvious path, top to bottom.

Data parallelism is the engine's business (``diffnet.parallel``): here a rank only asks which samples
are its shard, sums its per-sample losses divided by the *global* batch size, and all-reduces the
gradients. The sum over ranks is then exactly the global mean, so the loss, the gradients and the
whole trajectory do not depend on the number of ranks.
"""

from __future__ import annotations

import csv
import math
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from diffnet import checkpoint, io, models, problems, selfcheck
from diffnet.config import ExperimentConfig, GridConfig
from diffnet.machine import bf16_or_warn, native_bf16
from diffnet.parallel import (
    Comm,
    FlatGradients,
    StopRequest,
    broadcast_parameters,
    configure_threads,
    convert_sync_batchnorm,
    shard_indices,
    world,
)
from diffnet.parallel.signals import EXIT_CODE as STOPPED_EXIT_CODE
from diffnet.progress import track_steps


def csv_columns(problem) -> tuple[str, ...]:
    """training.csv's columns: the total loss, then one per loss term the family declares."""
    # threads (per rank) beside ranks: the training's core-seconds, which the break-even is counted in.
    return ("step", "epoch", "loss", *(f"loss_{name}" for name in problem.loss_names), "seconds", "ranks",
            "threads")


def loss_keys(problem) -> tuple[str, ...]:
    return ("total", *problem.loss_names)


class TrainingDiverged(RuntimeError):
    pass


class TrainingStopped(Exception):
    """A signal asked for a stop; a checkpoint was written and training can resume."""

    exit_code = STOPPED_EXIT_CODE


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    seconds: float
    ranks: int
    threads: int
    rank: int


def build_model(exp: ExperimentConfig, in_channels: int) -> torch.nn.Module:
    return models.build_model(exp.model, exp.grid.shape, in_channels)


def learning_rate(exp: ExperimentConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to lr * lr_final_ratio at the last step."""
    t = exp.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    span = max(1, t.steps - t.warmup_steps)
    progress = min(1.0, (step - t.warmup_steps) / span)
    floor = t.lr * t.lr_final_ratio
    return floor + 0.5 * (t.lr - floor) * (1 + math.cos(math.pi * progress))


def _memory_format(exp: ExperimentConfig) -> torch.memory_format:
    # torch's L-BFGS flattens gradients with .view(-1), which channels_last strides do not allow.
    if exp.train.channels_last and exp.train.optimizer != "lbfgs":
        return torch.channels_last
    return torch.contiguous_format


def train(exp: ExperimentConfig, samples_path: str | Path, out_dir: str | Path, *, threads: int | None = None,
          comm: Comm | None = None, stop_after: int | None = None, progress: bool = True,
          init_from: str | Path | None = None, early_signals: list[int] | None = None) -> TrainResult:
    """Train the generator on the 'train' split of ``samples_path``; write model.pt and training.csv.

    Resumes from ``out_dir/checkpoints`` when a checkpoint of the same configuration exists; otherwise
    starts from the weights of ``init_from`` (a model.pt, e.g. trained on a coarser grid) if given.
    ``stop_after`` ends the run early (for tests) as if the job had been cut at that step.
    ``early_signals``: stop signals that arrived before training began (recorded by the CLI); they
    stop the run at its first step, with a checkpoint.
    """
    comm = comm or world()
    threads = configure_threads(threads, comm.local_size)
    # One line per rank: where each rank runs (a multi-node job shows every node here).
    print(f"rank {comm.rank} of {comm.size} on host {socket.gethostname()}, {threads} thread(s)", file=sys.stderr,
          flush=True)
    out_dir = Path(out_dir)
    with _locked(out_dir, comm):
        run = build(exp, samples_path, comm)
        if comm.rank == 0:
            print(f"training in {run.precision} (train.precision {exp.train.precision}; compile: {run.compile_mode})",
                  file=sys.stderr, flush=True)
        ckpt_dir = out_dir / "checkpoints"
        start_step, history = resume(exp, run, ckpt_dir, comm, threads, init_from)
        history = run_steps(exp, run, comm, ckpt_dir, start_step, history, threads=threads, stop_after=stop_after,
                            progress=progress, early_signals=early_signals)
        if comm.rank == 0:
            run.grads.check_views()
            record(exp, run.model, history, out_dir, calibration=_calibrate(run.problem, run.model, samples_path, exp),
                   precision=run.precision)
        comm.barrier()
    final = history[-1]["loss"] if history else float("nan")
    return TrainResult(steps=exp.train.steps, final_loss=final, seconds=history[-1]["seconds"] if history else 0.0,
                       ranks=comm.size, threads=threads, rank=comm.rank)


@contextmanager
def _locked(out_dir: Path, comm: Comm) -> Iterator[None]:
    """Rank 0 locks the folder before anything reads or writes its checkpoints; every rank learns the verdict."""
    lock, refusal = None, ""
    if comm.rank == 0:
        try:
            lock = checkpoint.lock_output_dir(out_dir)
        except checkpoint.CheckpointError as exc:
            refusal = str(exc)
    locked = np.array([0 if refusal else 1], dtype=np.int64)
    comm.bcast_(locked)
    if not locked[0]:
        raise checkpoint.TrainingLocked(refusal)
    try:
        yield
    finally:
        if lock is not None:
            lock.close()


@dataclass
class Run:
    """What the steps need, built once: the family, the training conditions, the model and its optimizer."""

    problem: problems.Problem
    warm_problem: problems.Problem  # the loss of the warm-start steps
    conditions: torch.Tensor  # every training sample's condition; a step takes its shard
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    grads: FlatGradients
    memory_format: torch.memory_format
    precision: str  # the arithmetic used: float32, bfloat16 or float64 (train.precision auto resolved)
    forward: torch.nn.Module  # the model, or its torch.compile wrapper (same parameters)
    compile_mode: str  # inductor, or none


def training_precision(requested: str) -> str:
    """train.precision resolved on this CPU: auto is bfloat16 where bf16 kernels are native, else float32."""
    if requested == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return bf16_or_warn(requested, "train.precision")


def compiled_for_training(model: torch.nn.Module, sample: torch.Tensor, bf16: bool) -> tuple[torch.nn.Module, str]:
    """``torch.compile`` of the model, tried on one forward and backward; the eager model, with one warning
    line, where that fails. The trial leaves no trace: gradients are zeroed and buffers (batch-norm
    statistics) restored, so a compiled run starts from exactly the state of an eager one."""
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    try:
        fast = torch.compile(model)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = fast(sample)
        out.float().sum().backward()
        mode = "inductor"
    except Exception as exc:  # inductor raises many types; any failure means eager
        warnings.warn(f"train.compile: torch.compile failed ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:160]}); training eagerly", stacklevel=2)
        fast, mode = model, "none"
    with torch.no_grad():
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    model.zero_grad(set_to_none=True)
    return fast, mode


def build(exp: ExperimentConfig, samples_path: str | Path, comm: Comm) -> Run:
    """Read the training split, check it against the config, and build the model and its optimizer."""
    problem = problems.from_config(exp)
    # The first-order scheme is easy to learn and close to the second-order one: a cheap warm start.
    warm_problem = replace(problem, scheme="godunov1") if exp.loss.warm_start_steps else problem
    t = exp.train
    samples = io.select_split(io.read_samples(samples_path), "train")
    io.check_grid(samples, problem, samples_path, "the config's grid")
    precision = training_precision(t.precision)
    dtype = torch.float64 if precision == "float64" else torch.float32
    conditions = torch.tensor(problem.condition(io.record_of(samples)), dtype=dtype)
    if t.batch_size > len(conditions):
        raise io.ContractError(f"train.batch_size={t.batch_size} exceeds the {len(conditions)} training samples "
                               f"in '{samples_path}'; rerun `diffnet sample` with this config")

    torch.manual_seed(t.seed)
    fmt = _memory_format(exp)
    model = build_model(exp, problem.input_channels).to(dtype=dtype, memory_format=fmt)
    if exp.model.norm == "batch":
        convert_sync_batchnorm(model, comm)
    trainable = [p for p in model.parameters() if p.requires_grad]  # a cascade's coarse levels are frozen
    if t.optimizer == "lbfgs":
        optimizer = torch.optim.LBFGS(trainable, lr=t.lr, max_iter=t.lbfgs_max_iter,
                                      history_size=20, line_search_fn="strong_wolfe")
    else:
        # fused: one kernel over all parameters instead of a loop of small ops; the same update in a fraction
        # of the time (benchmarks/results/engine.md, "Adam's update"), and the update is a tenth of a 64^2 step
        optimizer = torch.optim.Adam(trainable, lr=t.lr, fused=True)
    forward, compile_mode = model, "none"
    if t.compile:
        first = problem.network_input(conditions[:1]).contiguous(memory_format=fmt)
        forward, compile_mode = compiled_for_training(model, first, bf16=precision == "bfloat16")
    return Run(problem, warm_problem, conditions, model, optimizer, FlatGradients(model), fmt, precision, forward,
               compile_mode)


def resume(exp: ExperimentConfig, run: Run, ckpt_dir: Path, comm: Comm, threads: int,
           init_from: str | Path | None) -> tuple[int, list[dict]]:
    """The step to start at and the history so far: from the newest checkpoint of this configuration,
    else step 0 from ``init_from``'s weights (or the seeded initialisation), identical on every rank."""
    # Rank 0 alone moves unreadable checkpoints aside and picks the newest that loads. Broadcasting its
    # step is also the barrier after those renames; the other ranks then load that very file, so all
    # resume from the same state (or one fails loudly and aborts the rest) instead of choosing apart.
    latest, state = checkpoint.load_latest(ckpt_dir, rename=True) if comm.rank == 0 else (None, None)
    chosen = np.array([checkpoint.step_of(latest) if latest is not None else -1], dtype=np.int64)
    comm.bcast_(chosen)
    if comm.rank != 0 and chosen[0] >= 0:
        latest = checkpoint.step_path(ckpt_dir, int(chosen[0]))
        state = checkpoint.load(latest)
    if state is not None and state.get("config_sha256") != exp.digest():
        # A changed configuration starts over; the other configuration's checkpoints are kept, not deleted.
        comm.barrier()  # every rank has read them before rank 0 moves them
        if comm.rank == 0:
            moved = checkpoint.set_aside(ckpt_dir, str(state.get("config_sha256", "unknown")))
            print(f"checkpoints in {ckpt_dir} are of another configuration; moved to {moved}, starting over",
                  file=sys.stderr)
        comm.barrier()
        state = None
    if state is None:
        if init_from is not None:
            _load_init(exp, run.model, init_from)
        broadcast_parameters(run.model, comm)
        return 0, []
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if comm.rank == 0:
        print(f"resuming from {latest} at step {int(state['step'])}", file=sys.stderr)
    columns = csv_columns(run.problem)
    # Checkpoints written before the threads column lack it: those steps ran on this many threads too.
    history = [dict(zip(columns, row if len(row) == len(columns) else [*row, threads], strict=True))
               for row in state["history"].tolist()]
    return int(state["step"]), history


def step_closure(exp: ExperimentConfig, run: Run, comm: Comm, cond: torch.Tensor, step: int, stats: np.ndarray,
                 stop: StopRequest, ckpt_dir: Path) -> Callable[[], torch.Tensor]:
    """The global mean loss and its gradient, identical on every rank.

    L-BFGS calls the closure several times per step, and each rank must take the same line-search
    decisions. ``stats`` receives the all-reduced term sums and the stop flag (last slot).
    """
    t = exp.train
    terms = loss_keys(run.problem)
    active = run.warm_problem if step < exp.loss.warm_start_steps else run.problem

    def closure() -> torch.Tensor:
        run.grads.zero_()
        sums = local_loss_and_gradients(active, run.forward, cond, t.batch_size, t.micro_batch, run.memory_format,
                                        bf16=run.precision == "bfloat16")
        sums[-1] = 1.0 if stop.requested else 0.0
        comm.allreduce_sum_(sums)  # one message: loss terms + the stop flag
        run.grads.allreduce_(comm)
        stats[:] = sums
        means = sums[: len(terms)] / t.batch_size
        if not np.all(np.isfinite(means)) or not torch.isfinite(run.grads.buffer).all():
            raise TrainingDiverged(
                f"loss became {means[0]:.3g} at step {step}; lower train.lr or raise warmup_steps "
                f"(last good checkpoint: {checkpoint.latest(ckpt_dir) or 'none'})")
        return torch.tensor(means[0])

    return closure


def run_steps(exp: ExperimentConfig, run: Run, comm: Comm, ckpt_dir: Path, start_step: int, history: list[dict], *,
              threads: int, stop_after: int | None, progress: bool, early_signals: list[int] | None) -> list[dict]:
    """Steps ``start_step`` .. ``train.steps``: shard, loss and gradients, optimizer; a history row and
    progress per step, checkpoints every ``checkpoint_every`` steps and at a stop (signal or stop_after)."""
    t = exp.train
    columns, terms = csv_columns(run.problem), loss_keys(run.problem)
    n = len(run.conditions)
    per_epoch = n // t.batch_size
    is_root = comm.rank == 0
    meter = track_steps(t.steps, start_step, "step", enabled=progress and is_root)
    stop = StopRequest()
    if early_signals:
        stop.signum = early_signals[0]
    clock = time.perf_counter()
    elapsed_before = history[-1]["seconds"] if history else 0.0
    try:
        for step in range(start_step, t.steps):
            idx = shard_indices(n, t.batch_size, step, t.seed, comm.rank, comm.size)
            stats = np.zeros(len(terms) + 1)
            closure = step_closure(exp, run, comm, run.conditions[idx], step, stats, stop, ckpt_dir)
            if t.optimizer == "lbfgs":
                run.optimizer.step(closure)
            else:
                for group in run.optimizer.param_groups:
                    group["lr"] = learning_rate(exp, step)
                closure()
                if t.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(run.grads.params, t.grad_clip)
                run.optimizer.step()

            means = stats[: len(terms)] / t.batch_size  # the loss at the step's first evaluation
            seconds = elapsed_before + time.perf_counter() - clock
            history.append(dict(zip(columns, (step + 1, step // per_epoch, *means, seconds, comm.size, threads),
                                    strict=True)))
            done = step + 1
            meter.update(done, f"loss {means[0]:.4e} ({seconds:.1f} s)")

            signalled = stats[-1] > 0
            stopping = signalled or (stop_after is not None and done >= stop_after)
            if is_root and (done % t.checkpoint_every == 0 or done == t.steps or stopping):
                _save_checkpoint(exp, run.model, run.optimizer, done, history, ckpt_dir)
            if stopping:
                comm.barrier()
                raise TrainingStopped(f"stopped at step {done} ({'signal' if signalled else 'stop_after'}); "
                                      f"rerun to resume from {ckpt_dir}")
    finally:
        stop.restore()
        meter.close()
    return history


def local_loss_and_gradients(problem, model: torch.nn.Module, cond: torch.Tensor, global_batch: int,
                             micro_batch: int, fmt: torch.memory_format, bf16: bool = False) -> np.ndarray:
    """Sum this rank's per-sample loss terms and accumulate d(sum / global_batch)/d(weights).

    ``cond`` is the shard's per-sample condition (``Problem.condition``). The shard is processed
    ``micro_batch`` samples at a time (0: all at once); gradients add up in the parameters' ``.grad``,
    so any split gives the same sums to rounding. Returns the term sums ('total' first, then the
    family's terms) followed by a free slot for the stop flag.
    """
    keys = loss_keys(problem)
    sums = np.zeros(len(keys) + 1)
    size = micro_batch or max(1, len(cond))
    for start in range(0, len(cond), size):
        part = cond[start : start + size]
        # The U-Net keeps its last layer in float32, so under bf16 autocast only the body is reduced.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            raw = model(problem.network_input(part).contiguous(memory_format=fmt))
        terms = problem.loss_terms(problem.assemble(raw, part), raw, part)
        (terms["total"].sum() / global_batch).backward()
        sums[: len(keys)] += [terms[k].detach().sum().item() for k in keys]
    return sums


def _load_init(exp: ExperimentConfig, model: torch.nn.Module, path: str | Path) -> None:
    """Coarse-to-fine start: the coarser network's weights, or (cascade) the frozen coarse level itself."""
    source = checkpoint.load(path)
    target = model
    if exp.model.cascade_levels:
        target = model.coarse
        grid = _source_grid(source)
        if grid is not None and grid != model.coarse_grid:
            raise checkpoint.CheckpointError(
                f"--init-from '{path}' was trained on a {grid[0]}x{grid[1]} grid; a cascade on "
                f"{exp.grid.shape[0]}x{exp.grid.nx} needs the network of {model.coarse_grid[0]}x{model.coarse_grid[1]}")
    try:
        target.load_state_dict(source["model"])
    except (KeyError, RuntimeError) as exc:
        raise checkpoint.CheckpointError(f"--init-from '{path}' does not fit this model: "
                                         f"{str(exc).splitlines()[0]}") from None


def _source_grid(state: dict) -> tuple[int, int] | None:
    if "config_yaml" not in state:
        return None
    doc = yaml.safe_load(state["config_yaml"])
    return GridConfig(**doc["experiments"][state["experiment"]]["grid"]).shape


def _history_tensor(history: list[dict]) -> torch.Tensor:
    columns = list(history[0]) if history else []
    rows = [[float(h[c]) for c in columns] for h in history]
    return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(columns))


def _save_checkpoint(exp, model, optimizer, step, history, ckpt_dir) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "step": step,  # with the seed this fixes the permutation position: step -> (epoch, batch)
        "history": _history_tensor(history),
        "config_sha256": exp.digest(),
    }
    checkpoint.save(state, checkpoint.step_path(ckpt_dir, step))
    checkpoint.prune(ckpt_dir)


def _calibrate(problem, model: torch.nn.Module, samples_path: str | Path, exp: ExperimentConfig) -> dict[str, float]:
    """The self-check's trust level, from the trained network's residuals on the held-out samples."""
    held_out = io.select_split(io.read_samples(samples_path), "test")
    cond = problem.condition(io.record_of(held_out))
    # Evaluation mode: batch norm uses its running statistics, so rank 0 alone needs no all-reduce.
    model.eval()
    u = selfcheck.predict(problem, model, cond, channels_last=exp.train.channels_last, progress=False)
    calibration = selfcheck.calibrate(selfcheck.residuals(problem, u, cond))
    print(f"self-check calibrated on {len(cond)} held-out samples: residual threshold "
          f"{calibration['residual_threshold']:.3g}", file=sys.stderr)
    return calibration


def record(exp: ExperimentConfig, model: torch.nn.Module, history: list[dict], out_dir: Path,
           calibration: dict[str, float], precision: str) -> None:
    """model.pt (weights, config, provenance, the self-check's calibration) and training.csv, atomically."""
    state = {
        "self_check": calibration,
        "precision": precision,  # what train.precision (maybe auto) resolved to; infer's auto follows it
        "model": {k: v.contiguous() for k, v in model.state_dict().items()},
        "config_yaml": exp.to_yaml(),
        "experiment": exp.name,
        "config_sha256": exp.digest(),
        "diffnet_version": io.package_version(),
        "git_commit": io.git_commit(),
    }
    checkpoint.save(state, out_dir / "model.pt")
    columns = list(history[0])
    with io.atomic_path(out_dir / "training.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in history:
            writer.writerow({k: int(row[k]) if k in ("step", "epoch", "ranks", "threads") else row[k] for k in columns})
