"""A fully convolutional U-Net generator: (batch, in_channels, nt, nx) -> (batch, 1, nt, nx).

It knows nothing of ranks, problems or files. Being fully convolutional it accepts any grid size
(inputs are padded to a multiple of 2^depth and the output cropped back), so the same weights can be
trained coarse and continued on finer grids.

Memory is the constraint at 1024^2 (issue 8), and the full-resolution stages hold almost all of it: every
16-channel tensor there costs 64 bytes per pixel. So the forward pass is written to keep few of them:

- ``silu_conv`` stores a convolution's *pre-activation* input and recomputes the SiLU in backward, so a
  conv -> SiLU -> conv chain keeps one tensor per layer instead of two;
- the decoder's first convolution is applied to the upsampled tensor and to the skip separately and
  summed, which is the same convolution as on their concatenation without materialising it;
- with activation checkpointing, each checkpointed stage begins at a tensor that is kept anyway (the
  pooling and the output head live inside the stages), so only the skips and stage outputs are stored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from diffnet.shapes import receptive_radius

__all__ = ["UNet", "receptive_radius", "silu_conv"]


class _SiLUConv(torch.autograd.Function):
    """conv2d(silu(z)) that saves z, not silu(z): backward recomputes the cheap elementwise SiLU."""

    @staticmethod
    def forward(ctx, z, weight, bias, padding: int):
        # Under autocast the convolution runs in the autocast dtype; mirror that in backward.
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else z.dtype
        ctx.save_for_backward(z, weight)
        ctx.padding, ctx.dtype, ctx.has_bias = padding, dtype, bias is not None
        with torch.autocast("cpu", enabled=False):
            a = F.silu(z.to(dtype))
            return F.conv2d(a, weight.to(dtype), None if bias is None else bias.to(dtype), padding=padding)

    @staticmethod
    def backward(ctx, grad):
        z, weight = ctx.saved_tensors
        dtype, p = ctx.dtype, ctx.padding
        zc = z.to(dtype)
        a = F.silu(zc)
        grad_a, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad.to(dtype), a, weight.to(dtype), [weight.shape[0]] if ctx.has_bias else None,
            [1, 1], [p, p], [1, 1], False, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]])
        del a
        grad_z = torch.ops.aten.silu_backward(grad_a, zc).to(z.dtype) if grad_a is not None else None
        grad_w = grad_w.to(weight.dtype) if grad_w is not None else None
        grad_b = grad_b.to(weight.dtype) if grad_b is not None else None
        return grad_z, grad_w, grad_b, None


def silu_conv(z: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(silu(z))`` storing only z for backward (stride 1, symmetric integer padding)."""
    return _SiLUConv.apply(z, conv.weight, conv.bias, conv.padding[0])


class ConvBlock(nn.Module):
    """conv -> [norm] -> SiLU -> conv -> [norm] -> SiLU; ``forward`` returns the last pre-activation."""

    def __init__(self, c_in: int, c_out: int, norm: str = "none"):
        super().__init__()
        bias = norm != "batch"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
        self.norm1 = nn.BatchNorm2d(c_out) if norm == "batch" else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias)
        self.norm2 = nn.BatchNorm2d(c_out) if norm == "batch" else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is None:
            z = self.conv1(x)
        else:
            # conv(cat(x, skip)) as two convolutions over the weight's input-channel halves.
            c = x.shape[1]
            w = self.conv1.weight
            # In place: a convolution's output is not saved for its backward, and the sum is one tensor less.
            z = F.conv2d(x, w[:, :c], self.conv1.bias, padding=1)
            z.add_(F.conv2d(skip, w[:, c:], None, padding=1))
        return self.norm2(silu_conv(self.norm1(z), self.conv2))


class _Encoder(nn.Module):
    def __init__(self, block: ConvBlock, pool: bool):
        super().__init__()
        self.block, self.pool = block, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.block(F.avg_pool2d(x, 2) if self.pool else x))


class _Decoder(nn.Module):
    def __init__(self, up: nn.ConvTranspose2d, block: ConvBlock, head: nn.Conv2d | None):
        super().__init__()
        self.up, self.block, self.head = up, block, head

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        z = self.block(self.up(x), skip)
        if self.head is None:
            return F.silu(z)
        # Kept out of any reduced-precision region: the finite-difference residual downstream
        # amplifies rounding in the field it is given.
        with torch.autocast(device_type=z.device.type, enabled=False):
            return silu_conv(z.to(self.head.weight.dtype), self.head)


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
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, nx = x.shape[-2:]
        m = 2**self.depth
        pad_t, pad_x = (-nt) % m, (-nx) % m
        if pad_t or pad_x:
            x = F.pad(x, (0, pad_x, 0, pad_t), mode="replicate")
        skips = []
        for k, block in enumerate(self.encoders):
            x = self._stage(_Encoder(block, pool=k > 0), x)
            skips.append(x)
        x = self._stage(_Encoder(self.bottleneck, pool=True), x)
        last = len(self.decoders) - 1
        for k, (up, block, skip) in enumerate(zip(self.upsamples, self.decoders, reversed(skips), strict=True)):
            x = self._stage(_Decoder(up, block, self.head if k == last else None), x, skip)
        return x[..., :nt, :nx]

    def _stage(self, stage: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(stage, *inputs, use_reentrant=False)
        return stage(*inputs)
