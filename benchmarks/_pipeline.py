"""The pipeline every benchmark runs, and the errors it reports: one copy, shared by the scripts.

- ``diffnet(stage, *args, ranks=None)``: one `diffnet` CLI stage (``python -m diffnet``, under the venv's
  ``mpiexec -n ranks`` when ranks is given); a failed stage ends the benchmark with one line naming the
  command, then the tail of its stderr. ``snakemake(*args)`` does the same for the workflow.
- ``Run(dir)``: the files of one run directory; ``pipeline(dir, experiments, ...)`` writes the experiment
  config, then runs sample, train (timed) and, as far as ``until`` asks, infer, reference and evaluate.
- ``rel_l2`` and ``l1``: per-sample errors by ``diffnet.evaluate.error_norms``, the very norms the
  product's `evaluate` stage reports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from diffnet.evaluate import error_norms

__all__ = ["BIN", "REPO", "Run", "diffnet", "l1", "pipeline", "rel_l2", "snakemake"]

BIN = Path(sys.executable).parent  # the venv's bin: its pinned mpiexec, snakemake
REPO = Path(__file__).resolve().parents[1]
STAGES = ("sample", "train", "infer", "reference", "evaluate")


def _run(cmd: list[str], env: dict[str, str], what: str, cwd: Path | None = None, tail: int = 2000) -> str:
    """Run ``cmd``; on failure end the benchmark with one line naming it, then the last ``tail`` characters
    of its stderr."""
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-tail:]}")
    return proc.stdout


def diffnet(*args: str, ranks: int | None = None, omp_threads: int | None = 1) -> str:
    """Run one stage of the `diffnet` CLI and return its stdout.

    ``ranks``: run it under ``mpiexec -n ranks`` (the venv's MPICH); None: a plain process.
    ``omp_threads``: OMP_NUM_THREADS of the stage (the stage's ``--threads`` sets torch's own); None: inherit.
    """
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if omp_threads is not None:
        env["OMP_NUM_THREADS"] = str(omp_threads)
    cmd = [sys.executable, "-m", "diffnet", *args]
    if ranks is not None:
        cmd = [str(BIN / "mpiexec"), "-n", str(ranks), *cmd]
    return _run(cmd, env, f"diffnet {args[0]}" if args else "diffnet")


def snakemake(*args: str, cores: int = 2) -> str:
    """Run the workflow from the repository root (mtime triggers only: a model trained by an earlier
    version of the workflow is not retrained); returns snakemake's stdout."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg"}
    return _run([str(BIN / "snakemake"), "--cores", str(cores), "--rerun-triggers=mtime", *args], env, "snakemake",
                cwd=REPO, tail=3000)


def _option(flag: str, value: object) -> list[str]:
    return [flag, str(value)] if value not in (None, "") else []


def config_text(experiments: dict) -> str:
    """The YAML of an experiment config holding ``experiments`` (name: section dict)."""
    return yaml.safe_dump({"experiments": experiments})


class Run:
    """The files of one run directory. Stages read config.yaml (and ``experiment``, '' for the file's only
    one), samples.nc and model.pt from ``dir``; infer, reference and evaluate write under ``out`` (default
    ``dir``), so a run the workflow trained can be re-measured elsewhere without touching it."""

    def __init__(self, directory: Path, experiment: str = "", out: Path | None = None,
                 omp_threads: int | None = 1) -> None:
        self.dir, self.experiment, self.out = Path(directory), experiment, Path(out or directory)
        self.omp_threads = omp_threads
        self.train_seconds = float("nan")  # wall time of the train stage, once run (or as recorded, if reused)

    config = property(lambda self: self.dir / "config.yaml")
    model = property(lambda self: self.dir / "model.pt")
    training = property(lambda self: self.dir / "training.csv")
    prediction = property(lambda self: self.out / "prediction.nc")
    reference_nc = property(lambda self: self.out / "reference.nc")
    metrics = property(lambda self: self.out / "metrics.nc")
    metrics_csv = property(lambda self: self.out / "metrics.csv")

    @property
    def samples(self) -> Path:
        """samples.nc; a run made before 0.4.0 has ics.nc instead (the workflow renames it on its next run)."""
        new, old = self.dir / "samples.nc", self.dir / "ics.nc"
        return old if old.is_file() and not new.is_file() else new

    def _config_args(self) -> list[str]:
        return ["--config", str(self.config), *_option("--experiment", self.experiment)]

    def _cli(self, *args: str, ranks: int | None = None) -> str:
        return diffnet(*args, ranks=ranks, omp_threads=self.omp_threads)

    def write_config(self, experiments: dict, resolve: str = "") -> Path:
        """Write config.yaml holding ``experiments``. ``resolve``: the one experiment to keep, resolved by
        `diffnet config` (the source is kept beside it as source.yaml)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not resolve:
            self.config.write_text(config_text(experiments))
            return self.config
        source = self.dir / "source.yaml"
        source.write_text(config_text(experiments))
        self._cli("config", "--config", str(source), "--experiment", resolve, "--out", str(self.config))
        self.experiment = ""
        return self.config

    def sample(self) -> None:
        self._cli("sample", *self._config_args(), "--out", str(self.samples))

    def train(self, ranks: int | None = None, threads: int | None = None, init_from: Path | None = None) -> float:
        """Train (under ``mpiexec -n ranks`` if given); returns and records the stage's wall seconds."""
        extra = [*_option("--threads", threads), *_option("--init-from", init_from)]
        t0 = time.perf_counter()
        self._cli("train", *self._config_args(), "--samples", str(self.samples), "--out-dir", str(self.dir), *extra,
                  ranks=ranks)
        self.train_seconds = time.perf_counter() - t0
        return self.train_seconds

    def infer(self, threads: int | None = None) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        self._cli("infer", "--model", str(self.model), "--samples", str(self.samples), "--out", str(self.prediction),
                  *_option("--threads", threads))
        return self.prediction

    def reference(self, threads: int | None = None) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        self._cli("reference", *self._config_args(), "--samples", str(self.samples), "--out", str(self.reference_nc),
                  *_option("--threads", threads))
        return self.reference_nc

    def evaluate(self) -> Path:
        self._cli("evaluate", *self._config_args(), "--prediction", str(self.prediction), "--reference",
                  str(self.reference_nc), "--out-nc", str(self.metrics), "--out-csv", str(self.metrics_csv))
        return self.metrics


def pipeline(directory: Path, experiments: dict, *, experiment: str = "", resolve: str = "",
             until: str = "infer", ranks: int | None = None, threads: int | None = 1,
             init_from: Path | None = None, infer_threads: int | None = None, reference_threads: int | None = None,
             omp_threads: int | None = 1, reuse: bool = False) -> Run:
    """Write the config holding ``experiments`` into ``directory``, then sample, train and every stage after
    it up to ``until`` (train | infer | reference | evaluate). The train stage is timed (``run.train_seconds``).

    ``experiment``: the experiment every stage runs ('' for the config's only one); ``resolve``: resolve that
    experiment with `diffnet config` first. ``reuse``: a directory whose config.yaml is exactly this config and
    which holds the last stage's output is a finished run: nothing reruns, and its training time is the one
    recorded in training.csv (so an interrupted benchmark continues where it stopped).
    """
    if until not in STAGES[1:]:
        raise ValueError(f"until must be one of {STAGES[1:]}, not {until!r}")
    run = Run(directory, experiment, omp_threads=omp_threads)
    last = {"train": run.model, "infer": run.prediction, "reference": run.reference_nc, "evaluate": run.metrics}[until]
    if reuse and not resolve and last.is_file() and run.config.is_file() \
            and run.config.read_text() == config_text(experiments):
        run.train_seconds = float(pd.read_csv(run.training)["seconds"].iloc[-1])
        return run
    run.write_config(experiments, resolve=resolve)
    run.sample()
    run.train(ranks=ranks, threads=threads, init_from=init_from)
    after = STAGES[2:STAGES.index(until) + 1]
    if "infer" in after:
        run.infer(infer_threads)
    if "reference" in after:
        run.reference(reference_threads)
    if "evaluate" in after:
        run.evaluate()
    return run


def rel_l2(u: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-sample relative L2 error of u (sample, ...) against ref, by ``evaluate.error_norms``. ``mask`` (0/1,
    broadcast to u) restricts both the error and the reference to where it is 1."""
    if mask is not None:
        u, ref = u * mask, ref * mask
    return error_norms(u, ref, 1.0)["rel_l2"]


def l1(u: np.ndarray, ref: np.ndarray, cell: float) -> np.ndarray:
    """Per-sample L1 error, sum |u - ref| times ``cell`` (the node area, e.g. dt dx), by ``evaluate.error_norms``."""
    return error_norms(u, ref, cell)["l1"]
