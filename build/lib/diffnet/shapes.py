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


def unet_parameter_count(in_channels: int, base_channels: int, depth: int, norm: str = "none") -> int:
    """Weights of ``models.unet.UNet``, counted without building it (the driver has no torch)."""
    widths = [base_channels * 2**k for k in range(depth + 1)]
    bias = 0 if norm == "batch" else 1
    affine = 2 if norm == "batch" else 0

    def block(c_in: int, c_out: int) -> int:
        return c_out * (9 * c_in + bias + affine) + c_out * (9 * c_out + bias + affine)

    total, c = 0, in_channels
    for w in widths[:-1]:
        total, c = total + block(c, w), w
    total += block(widths[-2], widths[-1])
    for w_deep, w in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
        total += w * (4 * w_deep + 1) + block(2 * w, w)
    return total + widths[0] + 1


def parameter_count(model_cfg, in_channels: int) -> int:
    """Weights of ``models.build_model(model_cfg, ...)``: a cascade level is one more U-Net, fed one more
    channel (the coarse prediction)."""
    m = model_cfg
    plain = unet_parameter_count(in_channels, m.base_channels, m.depth, m.norm)
    return plain + m.cascade_levels * unet_parameter_count(in_channels + 1, m.base_channels, m.depth, m.norm)
