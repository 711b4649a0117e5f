"""Atomic checkpoints and safe loading (``torch.load(weights_only=True)``: no pickled code runs)."""

from __future__ import annotations

import fcntl
import os
import re
import socket
import sys
from pathlib import Path
from typing import IO, Any

import torch

from diffnet.io import atomic_path

_NAME = re.compile(r"step-(\d{8})\.pt$")  # anchored: set-aside "step-….pt.corrupt" files never match
CORRUPT_SUFFIX = ".corrupt"


class CheckpointError(ValueError):
    pass


LOCK_NAME = "train.lock"


class TrainingLocked(CheckpointError):
    """Another run holds the output folder's lock. Every rank knows it (rank 0 broadcast it) and exits on its
    own, so no rank aborts the others; only rank 0 carries the message (``str`` is '' elsewhere)."""


def lock_output_dir(out_dir: str | Path) -> IO[str]:
    """An exclusive lock on a training's output folder, held while the returned file stays open.

    Two trainings writing one folder would interleave their checkpoints. The lock is the kernel's (flock):
    a killed job's lock dies with its process, so a stale lock file never blocks a resume. The file names
    the holder (host and pid) for the refusal message. Raises CheckpointError when another process holds it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    fh = open(path, "a+")  # held open for as long as the lock is needed
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise CheckpointError(f"'{out_dir}' is being trained by {holder} (lock {path}); wait for that run to end "
                              "or stop it, or train into another --out-dir") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
    fh.flush()
    return fh


def save(state: dict[str, Any], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file '{path}' not found; it is written by `diffnet train`")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"'{path}' is not a readable diffnet checkpoint ({type(exc).__name__}); "
                              "delete it and rerun training") from None


def step_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.pt"


def step_of(path: str | Path) -> int:
    """The step in a checkpoint's file name (``step-00000042.pt`` -> 42)."""
    match = _NAME.search(Path(path).name)
    if match is None:
        raise CheckpointError(f"'{path}' is not named like a training checkpoint (step-NNNNNNNN.pt)")
    return int(match.group(1))


def _checkpoints(directory: Path) -> list[Path]:
    """The directory's checkpoints, oldest first (the zero-padded step makes name order step order)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.search(p.name))


def latest(directory: str | Path) -> Path | None:
    found = _checkpoints(Path(directory))
    return found[-1] if found else None


def prune(directory: str | Path, keep: int = 2) -> None:
    """Keep the newest ``keep`` checkpoints: enough to survive one being cut mid-write elsewhere."""
    for old in _checkpoints(Path(directory))[:-keep]:
        old.unlink(missing_ok=True)


def _try_load(path: Path) -> tuple[dict[str, Any] | None, str]:
    """``(state, "")`` if ``path`` holds a training checkpoint, else ``(None, reason)``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a cut file raises whatever the zip/pickle layer meets first
        # torch's messages run to paragraphs of advice; the first sentence says what is wrong.
        detail = str(exc).strip().split("\n")[0].split(". ")[0][:120]
        return None, type(exc).__name__ + (f": {detail}" if detail else "")
    # Loadable but not a training checkpoint would fail later, far from the cause, with a KeyError.
    if not isinstance(state, dict) or not {"model", "step"} <= state.keys():
        return None, "not a training checkpoint (no 'model' and 'step')"
    return state, ""


def _set_aside_file(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt`` (``.corrupt-1``, … if taken): kept for a person to inspect."""
    target = path.with_name(path.name + CORRUPT_SUFFIX)
    k = 1
    while target.exists():
        target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}-{k}")
        k += 1
    return path.rename(target)


def load_latest(directory: str | Path, *, rename: bool = True) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest checkpoint in ``directory`` that loads, as ``(path, state)``; ``(None, None)`` if there is none.

    Checkpoints are tried newest first. One that cannot be loaded (e.g. cut mid-copy, or a disk error)
    is skipped with a one-line message on stderr and, if ``rename``, moved aside to ``<name>.corrupt``:
    never deleted, and no longer seen by :func:`latest` or :func:`prune`. Raises CheckpointError when
    checkpoints exist but none loads.

    Under MPI only one rank may rename (pass ``rename=comm.rank == 0``); the other ranks must then load
    the checkpoint that rank chose (see ``train.train``) rather than call this concurrently.
    """
    directory = Path(directory)
    skipped: list[str] = []
    for path in reversed(_checkpoints(directory)):
        state, why = _try_load(path)
        if state is not None:
            return path, state
        if rename:
            try:
                moved = _set_aside_file(path)
            except OSError as exc:
                raise CheckpointError(f"checkpoint '{path}' is unreadable ({why}) and could not be moved "
                                      f"aside ({exc.strerror or exc}); move or remove it and rerun") from None
            print(f"diffnet: skipping unreadable checkpoint {path} ({why}); moved aside to {moved.name}",
                  file=sys.stderr, flush=True)
            skipped.append(moved.name)
        else:
            print(f"diffnet: skipping unreadable checkpoint {path} ({why})", file=sys.stderr, flush=True)
            skipped.append(path.name)
    if skipped:
        if rename:
            raise CheckpointError(f"no checkpoint in '{directory}' is readable; set aside: {', '.join(skipped)}. "
                                  "Rerun to train from step 0, or restore a good checkpoint there")
        raise CheckpointError(f"no checkpoint in '{directory}' is readable: {', '.join(skipped)}")
    return None, None


def set_aside(directory: str | Path, digest: str) -> Path:
    """Rename a checkpoint directory to ``<name>-<digest[:12]>`` (plus a counter if taken); return the new path."""
    directory = Path(directory)
    target = directory.with_name(f"{directory.name}-{digest[:12]}")
    k = 1
    while target.exists():
        target = directory.with_name(f"{directory.name}-{digest[:12]}-{k}")
        k += 1
    return directory.rename(target)
