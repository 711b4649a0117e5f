"""The engine: sharding, the flat gradient buffer, and loss integrity across rank counts under mpiexec."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from diffnet.checkpoint import load
from diffnet.models.unet import UNet
from diffnet.parallel import FlatGradients, shard_bounds, shard_indices
from tests.conftest import TINY, run_cli, write_config


@pytest.mark.parametrize(("batch", "size"), [(1, 1), (6, 1), (6, 2), (6, 3), (16, 3), (17, 5), (3, 5)])
def test_shards_partition_the_global_batch(batch, size):
    bounds = [shard_bounds(batch, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == batch
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_shard_indices_union_is_the_global_batch_for_any_rank_count():
    n, batch = 40, 8
    for step in (0, 3, 4, 9):  # 5 batches per epoch: steps 4 and 9 end epochs
        whole = shard_indices(n, batch, step, seed=1, rank=0, size=1)
        for size in (2, 3):
            parts = np.concatenate([shard_indices(n, batch, step, 1, r, size) for r in range(size)])
            np.testing.assert_array_equal(parts, whole)
    epoch0 = np.concatenate([shard_indices(n, batch, s, 1, 0, 1) for s in range(5)])
    assert sorted(epoch0) == list(range(n))


def test_gradients_accumulate_into_the_flat_buffer_with_channels_last():
    torch.manual_seed(0)
    model = UNet(3, 4, 2).to(memory_format=torch.channels_last)
    grads = FlatGradients(model)
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        grads.zero_()
        model(x).square().mean().backward()
        grads.check_views()
    assert grads.buffer.abs().sum() > 0
    # The buffer holds exactly what autograd computed.
    reference = UNet(3, 4, 2)
    reference.load_state_dict(model.state_dict())
    reference(x.contiguous()).square().mean().backward()
    for mine, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-6)


def _train(tmp_path, ranks, steps, name, extra=None, loss=None):
    doc = {**TINY, "experiments": {"tiny": {**TINY["experiments"]["tiny"]}}}
    doc["experiments"]["tiny"]["train"] = {**doc["experiments"]["tiny"]["train"], "steps": steps,
                                           **(extra or {})}
    if loss:
        doc["experiments"]["tiny"]["loss"] = {**doc["experiments"]["tiny"].get("loss", {}), **loss}
    cfg = write_config(tmp_path / "config.yaml", doc)
    samples = tmp_path / "samples.nc"
    if not samples.exists():
        run_cli(["sample", "--config", str(cfg), "--out", str(samples)])
    out = tmp_path / name
    run_cli(["train", "--config", str(cfg), "--samples", str(samples), "--out-dir", str(out), "--threads", "1"],
            ranks=ranks)
    return pd.read_csv(out / "training.csv"), load(out / "model.pt")["model"]


@pytest.mark.mpi
def test_loss_and_weights_do_not_depend_on_the_rank_count(tmp_path):
    # Batch 6 splits evenly over 1, 2 and 3 ranks; 50 steps cross several epochs (2 batches each).
    runs = {p: _train(tmp_path, p, 50, f"p{p}", {"batch_size": 6}) for p in (1, 2, 3)}
    base_hist, base_w = runs[1]
    assert (base_hist["ranks"] == 1).all() and (runs[3][0]["ranks"] == 3).all()
    assert base_hist["loss"].iloc[-1] < base_hist["loss"].iloc[0]
    for p in (2, 3):
        hist, weights = runs[p]
        np.testing.assert_allclose(hist["loss"], base_hist["loss"], rtol=1e-5)
        for key, w in base_w.items():
            torch.testing.assert_close(weights[key], w, rtol=1e-5, atol=1e-6)


@pytest.mark.mpi
def test_uneven_shards_keep_the_global_mean(tmp_path):
    # Batch 5 over 2 ranks: shards of 3 and 2 samples. The first 20 losses still match one rank.
    one, _ = _train(tmp_path, None, 20, "p1", {"batch_size": 5})
    two, _ = _train(tmp_path, 2, 20, "p2", {"batch_size": 5})
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)


@pytest.mark.mpi
@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_preconditioned_residual_keeps_loss_integrity(tmp_path):
    # Each rank preconditions its own samples' residuals (no communication): still the global mean.
    pre = {"residual_form": "preconditioned"}
    one, w1 = _train(tmp_path, None, 12, "p1", {"batch_size": 5}, loss=pre)
    two, w2 = _train(tmp_path, 2, 12, "p2", {"batch_size": 5}, loss=pre)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    assert one["loss"].iloc[-1] < one["loss"].iloc[0]
    for key, w in w1.items():
        torch.testing.assert_close(w2[key], w, rtol=1e-5, atol=1e-6)
