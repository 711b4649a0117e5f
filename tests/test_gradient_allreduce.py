"""The gradient all-reduce and the start-up broadcast, in process, with a communicator that plays the other ranks.

The MPI tests (test_parallel.py) check the same thing end to end under mpiexec; these run in a second and
see a mutant of ``parallel.gradients`` (docs/mutation.md), which a subprocess under mpiexec does not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from diffnet.parallel import FlatGradients, broadcast_parameters


class OtherRanks:
    """A communicator of ``size`` ranks whose other ranks hold ``others`` (summed) and rank 0's ``root``."""

    rank = 0

    def __init__(self, size: int, others: np.ndarray | None = None, root: list[np.ndarray] | None = None):
        self.size = size
        self.others = others
        self.root = list(root or [])
        self.reduced: list[np.ndarray] = []
        self.broadcast: list[int] = []

    def allreduce_sum_(self, buf: np.ndarray) -> None:
        self.reduced.append(buf)
        buf += self.others

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        self.broadcast.append(root)
        buf[...] = self.root.pop(0)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False))


def test_every_gradient_is_a_view_into_one_buffer_in_parameter_order():
    model = _model()
    grads = FlatGradients(model)
    sizes = [p.numel() for p in model.parameters()]
    assert grads.buffer.shape == (sum(sizes),) and grads.buffer.dtype == torch.float32
    grads.buffer.copy_(torch.arange(sum(sizes), dtype=torch.float32))
    offset = 0
    for p, n in zip(model.parameters(), sizes, strict=True):
        assert p.grad.shape == p.shape
        np.testing.assert_array_equal(p.grad.flatten().numpy(), np.arange(offset, offset + n))
        offset += n
    grads.zero_()
    assert all(torch.all(p.grad == 0) for p in model.parameters())


def test_the_buffer_takes_the_parameter_dtype_and_layout():
    model = _model().to(torch.float64)
    assert FlatGradients(model).buffer.dtype == torch.float64
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    FlatGradients(conv)
    for p in conv.parameters():  # same strides as the parameter, so autograd adds in place
        assert p.grad.stride() == p.stride() and p.grad.shape == p.shape


def test_frozen_parameters_get_no_slot_and_mixed_dtypes_are_refused():
    model = _model()
    model[0].bias.requires_grad_(False)
    grads = FlatGradients(model)
    assert grads.buffer.numel() == sum(p.numel() for p in model.parameters()) - 4
    assert model[0].bias.grad is None
    mixed = _model()
    mixed[2].to(torch.float64)
    with pytest.raises(ValueError, match=r"one parameter dtype, found \['torch.float32', 'torch.float64'\]"):
        FlatGradients(mixed)


def test_allreduce_sums_every_gradient_over_the_ranks_in_place():
    model = _model()
    grads = FlatGradients(model)
    x = torch.randn(5, 3)
    model(x).square().mean().backward()
    mine = [p.grad.clone() for p in model.parameters()]
    others = np.linspace(-1.0, 1.0, grads.buffer.numel()).astype(np.float32)
    comm = OtherRanks(2, others=others)
    grads.allreduce_(comm)
    assert len(comm.reduced) == 1 and np.shares_memory(comm.reduced[0], grads.buffer.numpy())
    offset = 0
    for p, g in zip(model.parameters(), mine, strict=True):
        expected = g.flatten().numpy() + others[offset : offset + g.numel()]
        np.testing.assert_allclose(p.grad.flatten().numpy(), expected, rtol=1e-6)
        offset += g.numel()
    grads.check_views()


def test_check_views_refuses_a_gradient_outside_the_buffer():
    model = _model()
    grads = FlatGradients(model)
    grads.check_views()
    first = next(iter(model.parameters()))
    first.grad = torch.zeros_like(first)  # autograd replaced the view
    with pytest.raises(RuntimeError, match=r"^a parameter's \.grad no longer points into the flat gradient buffer$"):
        grads.check_views()
    first.grad = None
    with pytest.raises(RuntimeError, match="flat gradient buffer"):
        grads.check_views()
    # The buffer's bounds are half open: a gradient starting right after its last element is outside it.
    model = _model()
    grads = FlatGradients(model)
    total = grads.buffer.numel()
    storage = torch.zeros(2 * total)
    grads.buffer = storage[:total]
    offset = 0
    for p in model.parameters():
        p.grad = storage[offset : offset + p.numel()].view(p.shape)
        offset += p.numel()
    grads.check_views()
    last = list(model.parameters())[-1]
    last.grad = storage[total : total + last.numel()].view(last.shape)
    with pytest.raises(RuntimeError):
        grads.check_views()


def test_broadcast_makes_every_parameter_and_buffer_rank_zeros():
    model = _model()
    tensors = list(model.parameters()) + list(model.buffers())
    root = [np.full(tuple(t.shape), 2 + i, dtype=t.detach().numpy().dtype) for i, t in enumerate(tensors)]
    comm = OtherRanks(2, root=root)
    broadcast_parameters(model, comm)
    assert comm.broadcast == [0] * len(tensors) and not comm.root
    for i, t in enumerate(tensors):
        assert torch.all(t == 2 + i), i  # running_mean, running_var and num_batches_tracked too
    single = _model()
    before = [t.clone() for t in single.state_dict().values()]
    alone = OtherRanks(1, root=[])
    broadcast_parameters(single, alone)  # one rank: nothing to send, nothing changes
    assert alone.broadcast == []
    assert all(torch.equal(a, b) for a, b in zip(before, single.state_dict().values(), strict=True))
