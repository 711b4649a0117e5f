"""The memory-lean U-Net computes exactly the textbook U-Net, and its custom backward is exact."""

import pytest
import torch
import torch.nn.functional as F

from diffnet.models.unet import UNet, receptive_radius, silu_conv


def reference_forward(net: UNet, x: torch.Tensor) -> torch.Tensor:
    """The same weights through the plain formulation: concatenated skips, stored activations."""

    def block(b, v):
        v = F.silu(b.norm1(b.conv1(v)))
        return F.silu(b.norm2(b.conv2(v)))

    skips = []
    for k, b in enumerate(net.encoders):
        x = block(b, F.avg_pool2d(x, 2) if k else x)
        skips.append(x)
    x = block(net.bottleneck, F.avg_pool2d(x, 2))
    for up, b, skip in zip(net.upsamples, net.decoders, reversed(skips), strict=True):
        x = block(b, torch.cat([up(x), skip], dim=1))
    return net.head(x)


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_unet_matches_plain_formulation_in_values_and_gradients(checkpointing, norm):
    torch.manual_seed(0)
    net = UNet(3, 4, 3, norm=norm, activation_checkpointing=checkpointing).double()
    x = torch.randn(2, 3, 16, 24, dtype=torch.float64)
    out = net(x)
    grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    ref = reference_forward(net, x)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(net.parameters()))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_silu_conv_gradients_are_exact():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1).double()
    z = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z, w, b: silu_conv(z, conv), (z, conv.weight, conv.bias))


def test_silu_conv_under_bf16_autocast_matches_autocast_reference():
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    z = torch.randn(1, 4, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = silu_conv(z, conv)
        ref = conv(F.silu(z))
    assert out.dtype == ref.dtype == torch.bfloat16
    g = torch.autograd.grad(out.float().sum(), (z, conv.weight))
    r = torch.autograd.grad(ref.float().sum(), (z, conv.weight))
    for a, b in zip(g, r, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_receptive_radius_is_the_least_support_of_the_input_gradient(depth):
    torch.manual_seed(3)
    n = 256
    net = UNet(3, 2, depth).double()
    reach = []
    for pos in range(n // 2, n // 2 + 2**depth):  # every alignment with the pooling grid
        x = torch.randn(1, 3, 2 ** (depth + 1), n, dtype=torch.float64, requires_grad=True)
        net(x)[0, 0, 2**depth, pos].backward()
        support = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)) > 0).flatten()
        reach += [pos - support.min().item(), support.max().item() - pos]
    assert min(reach) == receptive_radius(depth)
