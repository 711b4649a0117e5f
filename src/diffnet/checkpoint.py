"""Atomic checkpoints and safe loading (``torch.load(weights_only=True)``: no pickled code runs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from diffnet.io import atomic_path

_NAME = re.compile(r"step-(\d{8})\.pt$")


class CheckpointError(ValueError):
    pass


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


def latest(directory: str | Path) -> Path | None:
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = sorted(p for p in directory.iterdir() if _NAME.search(p.name))
    return found[-1] if found else None


def prune(directory: str | Path, keep: int = 2) -> None:
    """Keep the newest ``keep`` checkpoints: enough to survive one being cut mid-write elsewhere."""
    found = sorted(p for p in Path(directory).iterdir() if _NAME.search(p.name))
    for old in found[:-keep]:
        old.unlink(missing_ok=True)


def set_aside(directory: str | Path, digest: str) -> Path:
    """Rename a checkpoint directory to ``<name>-<digest[:12]>`` (plus a counter if taken); return the new path."""
    directory = Path(directory)
    target = directory.with_name(f"{directory.name}-{digest[:12]}")
    k = 1
    while target.exists():
        target = directory.with_name(f"{directory.name}-{digest[:12]}-{k}")
        k += 1
    return directory.rename(target)
