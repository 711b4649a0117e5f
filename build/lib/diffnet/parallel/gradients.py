"""Gradient all-reduce from one flat buffer, and the start-up parameter broadcast.

Every parameter's ``.grad`` is a view into one contiguous tensor, so summing gradients over
ranks is a single in-place ``Allreduce`` on its numpy view: no packing, no copies, one message.
Autograd accumulates into an existing ``.grad`` in place, which keeps the views alive across steps as
long as gradients are zeroed in place (``zero_``), never set to None.
"""

from __future__ import annotations

import torch
from torch import nn

from diffnet.parallel.comm import Comm


class FlatGradients:
    def __init__(self, model: nn.Module):
        self.params = [p for p in model.parameters() if p.requires_grad]
        total = sum(p.numel() for p in self.params)
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ValueError(f"one flat gradient buffer needs one parameter dtype, found {sorted(map(str, dtypes))}")
        self.buffer = torch.zeros(total, dtype=dtypes.pop())
        offset = 0
        for p in self.params:
            n = p.numel()
            # Same strides as the parameter (channels_last included), so autograd can add in place.
            view = self.buffer[offset : offset + n].view(p.shape)
            if not p.is_contiguous():
                view = view.as_strided(p.shape, p.stride())
            p.grad = view
            offset += n
        self._array = self.buffer.numpy()

    def zero_(self) -> None:
        self.buffer.zero_()

    def check_views(self) -> None:
        """Raise if autograd replaced a ``.grad`` instead of accumulating into the buffer."""
        lo = self.buffer.data_ptr()
        hi = lo + self.buffer.numel() * self.buffer.element_size()
        for p in self.params:
            if p.grad is None or not lo <= p.grad.data_ptr() < hi:
                raise RuntimeError("a parameter's .grad no longer points into the flat gradient buffer")

    def allreduce_(self, comm: Comm) -> None:
        """Sum the gradients over all ranks, in place."""
        comm.allreduce_sum_(self._array)


def broadcast_parameters(model: nn.Module, comm: Comm) -> None:
    """Make every rank start from rank 0's weights (and buffers)."""
    if comm.size == 1:
        return
    for tensor in list(model.parameters()) + list(model.buffers()):
        with torch.no_grad():
            data = tensor.detach().contiguous().numpy()
            comm.bcast_(data)
            tensor.copy_(torch.from_numpy(data))
