"""Training's arithmetic and compilation: precision auto follows the CPU, compile falls back, and the
result does not depend on the number of ranks in any mode (loss integrity)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from diffnet import checkpoint, machine, train
from tests.conftest import TINY, write_config
from tests.test_engine import _assert_same_run, _config, _result, _train_args, run_cli


@pytest.mark.parametrize(("native", "requested", "resolved"), [
    (False, "auto", "float32"), (True, "auto", "bfloat16"), (True, "float32", "float32"),
    (False, "float32", "float32"), (False, "float64", "float64"), (True, "bfloat16", "bfloat16")])
def test_precision_auto_is_bf16_only_where_the_cpu_has_it(monkeypatch, native, requested, resolved):
    monkeypatch.setattr(train, "native_bf16", lambda: native)
    monkeypatch.setattr(machine, "native_bf16", lambda: native)  # the emulation warning's probe
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these may warn
        assert train.training_precision(requested) == resolved


def test_explicit_bf16_on_an_emulating_cpu_trains_but_warns(monkeypatch):
    monkeypatch.setattr(machine, "native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16 kernels"):
        assert train.training_precision("bfloat16") == "bfloat16"


def test_a_failing_compile_trains_eagerly_after_one_warning_and_records_it(tmp_path, monkeypatch):
    cfg, samples = _config(tmp_path, train={"steps": 3, "compile": True, "precision": "auto"})
    monkeypatch.setattr(train, "native_bf16", lambda: False)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong inductor trace")

    monkeypatch.setattr(torch, "compile", broken)
    from diffnet.config import load_experiment

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train.train(load_experiment(cfg, "tiny"), samples, tmp_path / "run", threads=1, progress=False)
    messages = [str(w.message) for w in caught if "torch.compile" in str(w.message)]
    assert messages == ["train.compile: torch.compile failed (RuntimeError: no C++ compiler found); training eagerly"]
    assert result.steps == 3
    state = checkpoint.load(tmp_path / "run" / "model.pt")
    assert state["precision"] == "float32"  # auto on a CPU without native bf16


def test_compiled_trial_leaves_no_trace_in_gradients_or_batchnorm_statistics():
    from diffnet.models.unet import UNet

    torch.manual_seed(0)
    model = UNet(1, 4, 2, norm="batch")
    before = {k: v.clone() for k, v in model.named_buffers()}
    calls = []

    def fake_compile(m):
        calls.append(m)
        return m  # eager stand-in: the trial runs a real forward and backward through it

    orig = torch.compile
    torch.compile = fake_compile
    try:
        _, mode = train.compiled_for_training(model, torch.randn(2, 1, 16, 16) * 3 + 1, bf16=False)
    finally:
        torch.compile = orig
    assert mode == "inductor" and calls == [model]
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), k


@pytest.mark.mpi
@pytest.mark.slow  # 4 subprocess trainings: `make test-slow`
@pytest.mark.parametrize(("precision", "loss_rtol", "weight_rtol"), [("float32", 1e-5, 1e-5), ("bfloat16", 1e-4, 1e-3)])
def test_one_and_two_ranks_train_the_same_in_each_precision(tmp_path, precision, loss_rtol, weight_rtol):
    cfg, samples = _config(tmp_path, train={"steps": 5, "precision": precision})
    run_cli(_train_args(cfg, samples, tmp_path / "p1"))
    run_cli(_train_args(cfg, samples, tmp_path / "p2"), ranks=2)
    one, two = _result(tmp_path / "p1"), _result(tmp_path / "p2")
    # The sharded loss is the whole batch's loss: the first step (same weights on both) agrees to 1e-5.
    assert two[0]["loss"].iloc[0] == pytest.approx(one[0]["loss"].iloc[0], rel=1e-5)
    # Later steps: in bf16 a weight that differs from the 1-rank run by fp32 summation order (1e-7) can
    # round to a neighbouring bf16 value (spacing 4e-3) under autocast, so runs part a little within 5
    # steps (measured: losses by 1.9e-5, one bias tensor by 1.4e-4); in float32 both agree to 1e-5.
    np.testing.assert_allclose(two[0]["loss"], one[0]["loss"], rtol=loss_rtol)
    _assert_same_run(one, two, rtol=weight_rtol)


@pytest.mark.mpi
@pytest.mark.slow  # inductor compiles C++ for the forward and the backward (tens of seconds per rank)
def test_one_and_two_ranks_train_the_same_compiled(tmp_path):
    cfg, samples = _config(tmp_path, train={"steps": 5, "compile": True})
    one = run_cli(_train_args(cfg, samples, tmp_path / "p1"), timeout=900)
    two = run_cli(_train_args(cfg, samples, tmp_path / "p2"), ranks=2, timeout=900)
    assert "compile: inductor" in one.stderr and "compile: inductor" in two.stderr, one.stderr[-2000:]
    _assert_same_run(_result(tmp_path / "p1"), _result(tmp_path / "p2"))
    eager_cfg, _ = _config(tmp_path, train={"steps": 5}, name="eager.yaml")
    run_cli(_train_args(eager_cfg, samples, tmp_path / "eager"))
    _assert_same_run(_result(tmp_path / "eager"), _result(tmp_path / "p1"), rtol=1e-4)


def test_train_precision_auto_and_compile_are_valid_config(tmp_path):
    doc = {**TINY}
    doc["experiments"] = {"tiny": {**TINY["experiments"]["tiny"],
                                   "train": {**TINY["experiments"]["tiny"]["train"], "precision": "auto",
                                             "compile": True}}}
    from diffnet.config import load_experiment

    exp = load_experiment(write_config(tmp_path / "c.yaml", doc), "tiny")
    assert exp.train.precision == "auto" and exp.train.compile is True
