"""Intra-op threads per rank (hybrid ranks x threads)."""

from __future__ import annotations

import os

import torch


def configure_threads(requested: int | None, local_ranks: int) -> int:
    """Set torch's intra-op threads and return the count.

    Priority: an explicit request, then Slurm's ``SLURM_CPUS_PER_TASK``, then this node's usable cores
    divided by the ranks sharing it, so ranks x threads never exceeds the cores by default.
    """
    if requested is None:
        slurm = os.environ.get("SLURM_CPUS_PER_TASK")
        if slurm:
            requested = int(slurm)
        else:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            requested = max(1, (cores or 1) // max(1, local_ranks))
    if requested < 1:
        raise ValueError(f"threads per rank must be >= 1, got {requested}")
    torch.set_num_threads(requested)
    return requested
