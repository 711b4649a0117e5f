"""What one training rank needs, estimated from the experiment: the memory a scheduler should grant.

Peak RSS of a rank = a fixed part (interpreter and torch, plus weights, gradients, the flat gradient
buffer and Adam's two moments: 5 copies of the parameters) + the samples in flight x grid nodes x the
activation bytes per pixel. The per-pixel figures are measured by ``benchmarks/memory.py`` for the U-Net
at base 16 (fp32, channels_last, glibc's default allocator) and scale with the base width.
"""

from __future__ import annotations

import math

from diffnet import shapes
from diffnet.config import ExperimentConfig

# The network's input channels are the family's to declare, and families need torch; the Snakemake driver
# does not have it. One input channel is base x 9 weights (under 0.01 MiB at any base we use), so the
# estimate counts the widest input any family has.
WIDEST_NETWORK_INPUT = 4
RUNTIME_MIB = 400.0  # python, torch, mpi4py, numpy, allocator slack: measured 552 MiB with a 7.8M-weight model
# Activation bytes per pixel per sample in flight at base 16: the largest of benchmarks/memory.py's
# 256^2-1024^2 rows over two runs (1.40 KiB without checkpointing, 0.89 KiB with; RSS varies by ~10%
# between runs, and smaller grids are all fixed cost).
BYTES_PER_PIXEL = {False: 1440.0, True: 920.0}  # activation checkpointing off / on
SAFETY = 1.5  # allocator fragmentation, loss transients and smaller grids' relative overheads


def parameter_count(exp: ExperimentConfig, in_channels: int = WIDEST_NETWORK_INPUT) -> int:
    """Weights of the experiment's generator (U-Net or cascade), counted without torch."""
    return shapes.parameter_count(exp.model, in_channels)


def samples_in_flight(exp: ExperimentConfig, ranks: int = 1) -> int:
    """Samples whose activations a rank holds at once: one micro-batch, else its whole shard."""
    t = exp.train
    return t.micro_batch or math.ceil(t.batch_size / ranks)


def train_memory_mib(exp: ExperimentConfig, ranks: int = 1) -> int:
    """Memory to request per training rank, in MiB (with the safety factor)."""
    fixed = RUNTIME_MIB + 5 * 4 * parameter_count(exp) / 2**20
    per_pixel = BYTES_PER_PIXEL[exp.model.activation_checkpointing] * exp.model.base_channels / 16
    activations = samples_in_flight(exp, ranks) * math.prod(exp.grid.shape) * per_pixel / 2**20
    return math.ceil(SAFETY * (fixed + activations))
