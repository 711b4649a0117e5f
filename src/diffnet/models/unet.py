"""A fully convolutional U-Net generator: (batch, in_channels, nt, nx) -> (batch, 1, nt, nx).

It knows nothing of ranks, problems or files. Being fully convolutional it accepts any grid size
(inputs are padded to a multiple of 2^depth and the output cropped back), so the same weights can be
trained coarse and continued on finer grids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, norm: str = "none"):
        def normalise() -> list[nn.Module]:
            return [nn.BatchNorm2d(c_out)] if norm == "batch" else []

        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm != "batch"),
            *normalise(),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=norm != "batch"),
            *normalise(),
            nn.SiLU(),
        )


class _UpStage(nn.Module):
    def __init__(self, up: nn.Module, dec: nn.Module):
        super().__init__()
        self.up, self.dec = up, dec

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    def __init__(self, in_channels: int, base_channels: int = 16, depth: int = 3, norm: str = "none",
                 activation_checkpointing: bool = False):
        super().__init__()
        # Recompute each stage's activations in backward instead of storing them: memory for time.
        self.activation_checkpointing = activation_checkpointing
        if norm not in ("none", "batch"):
            raise ValueError(f"unknown norm '{norm}'; use 'none' or 'batch'")
        self.depth = depth
        widths = [base_channels * 2**k for k in range(depth + 1)]
        self.encoders = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.encoders.append(ConvBlock(c, w, norm))
            c = w
        self.bottleneck = ConvBlock(widths[-2], widths[-1], norm)
        self.upsamples = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w_deep, w in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.upsamples.append(nn.ConvTranspose2d(w_deep, w, 2, stride=2))
            self.decoders.append(ConvBlock(2 * w, w, norm))
        # Kept out of any reduced-precision region: the finite-difference residual downstream
        # amplifies rounding in the field it is given.
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, nx = x.shape[-2:]
        m = 2**self.depth
        pad_t, pad_x = (-nt) % m, (-nx) % m
        if pad_t or pad_x:
            x = F.pad(x, (0, pad_x, 0, pad_t), mode="replicate")
        skips = []
        for enc in self.encoders:
            x = self._stage(enc, x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self._stage(self.bottleneck, x)
        for up, dec, skip in zip(self.upsamples, self.decoders, reversed(skips), strict=True):
            x = self._stage(_UpStage(up, dec), x, skip)
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = self.head(x.to(self.head.weight.dtype))
        return out[..., :nt, :nx]

    def _stage(self, block: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *inputs, use_reentrant=False)
        return block(*inputs)
