"""Grid arithmetic of the generators, torch-free: the config checks use it on a login node.

The models (``models.unet``, ``models.cascade``) re-export these; they are tested against real U-Nets
in tests/test_unet.py and tests/test_cascade.py.
"""

from __future__ import annotations


def receptive_radius(depth: int) -> int:
    """How far (in nodes, along either axis, to both sides) every output sees its input: 6 * 2^depth - 4.

    Two 3x3 convolutions per level, 2x2 pooling and transposed convolutions; the exact reach depends on
    the output's position modulo 2^depth, and this is its minimum, checked against the input-gradient
    support of a real U-Net in tests/test_unet.py.
    """
    return 6 * 2**depth - 4


def coarse_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The next coarser grid of a cascade: half the intervals per axis (256 nodes -> 128 -> 64)."""
    return tuple((n - 1) // 2 + 1 for n in shape)
