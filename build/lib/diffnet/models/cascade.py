"""A fine-grid correction on top of a frozen coarser network (coarse-to-fine as an architecture).

Convolutions learn stencils in pixels, not in physical units, so a network trained at 128^2 is poor
when applied as it is to a 256^2 input, and continuing its training there starts far from the
answer. Here the coarser network keeps working at its own resolution: the fine input is restricted to
the coarse grid, the coarse prediction is interpolated back, and a fine U-Net whose last layer starts
at zero learns only the correction (mostly: sharper shocks). Training therefore starts from the coarse
network's accuracy instead of from a resolution-mismatched one.

Nodes lie at i / (n - 1) on both grids, so interpolation maps corner node to corner node
(``align_corners=True``); coordinates are reproduced exactly, fields to second order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffnet.shapes import coarse_shape

__all__ = ["Cascade", "coarse_shape", "resample"]


def resample(field: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear interpolation of (batch, channel, t, x) nodal values onto another node grid."""
    return F.interpolate(field, size=shape, mode="bilinear", align_corners=True)


class Cascade(nn.Module):
    """``coarse`` (frozen) at half the nodes, plus ``fine`` fed the input and the coarse prediction."""

    def __init__(self, coarse: nn.Module, fine: nn.Module, coarse_grid: tuple[int, int]):
        super().__init__()
        self.coarse, self.fine, self.coarse_grid = coarse, fine, tuple(coarse_grid)
        self.coarse.requires_grad_(False)
        head = fine.head
        # Zero output at the start: the untrained cascade *is* the interpolated coarse network.
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)

    def train(self, mode: bool = True) -> Cascade:
        super().train(mode)
        self.coarse.eval()  # frozen: batch-norm statistics (if any) stay those it was trained with
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Recomputed every step although frozen: a quarter of the pixels and no backward, so by operation
        # count about 1/12 of a step (a step ~ 3 forwards); a cache per IC would cost memory instead.
        with torch.no_grad():
            guess = resample(self.coarse(resample(x, self.coarse_grid)).to(x.dtype), x.shape[-2:])
        # interpolate and cat keep x's memory format (channels_last included).
        return guess + self.fine(torch.cat([x, guess], dim=1))
