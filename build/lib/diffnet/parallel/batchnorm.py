"""Synchronized batch norm on CPU: statistics over the global batch, whatever the rank count.

PyTorch's SyncBatchNorm only runs on CUDA, so this is a small autograd function. Forward all-reduces
(sum, sum of squares, count) per channel in one message; backward all-reduces the two per-channel sums
the input gradient needs (sum dy*w and sum dy*w*xhat). Both then equal what one process holding the whole batch
computes. ``convert_sync_batchnorm`` swaps the layers in place, so the model code never sees MPI.
"""

from __future__ import annotations

import torch
from torch import nn

from diffnet.parallel.comm import Comm


def _allreduce(tensor: torch.Tensor, comm: Comm) -> torch.Tensor:
    buf = tensor.detach().to(torch.float64).contiguous().numpy().copy()
    comm.allreduce_sum_(buf)
    return torch.from_numpy(buf).to(tensor.dtype)


def global_moments(x: torch.Tensor, comm: Comm) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-channel mean and biased variance of x(N, C, H, W) over all ranks, and the global count."""
    dims = (0, 2, 3)
    c = x.shape[1]
    local = torch.cat([x.sum(dims), (x * x).sum(dims), torch.tensor([x.numel() / c], dtype=x.dtype)])
    total = _allreduce(local.detach(), comm)
    count = float(total[-1])
    mean = total[:c] / count
    var = (total[c : 2 * c] / count - mean * mean).clamp(min=0)
    return mean, var, count


class _SyncBatchNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, count, eps, comm):
        invstd = torch.rsqrt(var + eps)
        xhat = (x - mean[None, :, None, None]) * invstd[None, :, None, None]
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.count, ctx.comm = count, comm
        return xhat * weight[None, :, None, None] + bias[None, :, None, None]

    @staticmethod
    def backward(ctx, dy):
        xhat, weight, invstd = ctx.saved_tensors
        dims = (0, 2, 3)
        dxhat = dy * weight[None, :, None, None]
        c = xhat.shape[1]
        sums = _allreduce(torch.cat([dxhat.sum(dims), (dxhat * xhat).sum(dims)]), ctx.comm)
        g1, g2 = sums[:c], sums[c:]
        dx = invstd[None, :, None, None] / ctx.count * (
            ctx.count * dxhat - g1[None, :, None, None] - xhat * g2[None, :, None, None]
        )
        # Parameter gradients stay local: the engine's gradient all-reduce sums them like any other.
        return dx, (dy * xhat).sum(dims), dy.sum(dims), None, None, None, None, None


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span all ranks of ``comm``."""

    def __init__(self, num_features: int, comm: Comm, **kwargs):
        super().__init__(num_features, **kwargs)
        self.comm = comm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        mean, var, count = global_moments(x, self.comm)
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * count / max(count - 1, 1.0))
                self.num_batches_tracked.add_(1)
        weight = self.weight if self.affine else torch.ones_like(mean)
        bias = self.bias if self.affine else torch.zeros_like(mean)
        return _SyncBatchNormFn.apply(x, weight, bias, mean, var, count, self.eps, self.comm)


def convert_sync_batchnorm(module: nn.Module, comm: Comm) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by a SyncBatchNorm2d sharing its parameters and buffers."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SyncBatchNorm2d):
            sync = SyncBatchNorm2d(child.num_features, comm, eps=child.eps, momentum=child.momentum,
                                   affine=child.affine, track_running_stats=child.track_running_stats)
            reference = child.weight if child.affine else child.running_mean
            if reference is not None:
                sync = sync.to(dtype=reference.dtype, device=reference.device)
            sync.load_state_dict(child.state_dict())
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm(child, comm)
    return module

