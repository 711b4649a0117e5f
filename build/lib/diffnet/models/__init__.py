"""Generators: they map an encoded initial condition to a whole space-time field."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from diffnet.models.cascade import Cascade, coarse_shape
from diffnet.models.unet import UNet


def build_model(model_cfg, grid_shape: tuple[int, int], in_channels: int) -> nn.Module:
    """The generator a ``model`` config section describes on a (nt, nx) grid.

    ``cascade_levels`` > 0 nests that many frozen coarser networks, each on half the nodes of the one
    above it, under a fine U-Net that sees the coarse prediction as one more input channel.
    """
    m = model_cfg
    if m.cascade_levels == 0:
        return UNet(in_channels, m.base_channels, m.depth, m.norm, m.activation_checkpointing)
    below = coarse_shape(grid_shape)
    coarse = build_model(replace(m, cascade_levels=m.cascade_levels - 1), below, in_channels)
    fine = UNet(in_channels + 1, m.base_channels, m.depth, m.norm, m.activation_checkpointing)
    return Cascade(coarse, fine, below)


__all__ = ["Cascade", "UNet", "build_model", "coarse_shape"]
