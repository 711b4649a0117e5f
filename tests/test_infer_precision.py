"""Inference precision and compilation: the safe default, bf16 on request, and a compile that falls back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from diffnet import infer, machine
from tests.conftest import run_cli


@pytest.fixture
def trained(tiny_trained):
    return tiny_trained


def _infer(run, out, *args):
    return run_cli(["infer", "--model", str(run / "model.pt"), "--samples", str(run / "samples.nc"), "--out", str(out),
                    *args])


@pytest.mark.slow  # end-to-end subprocess runs: `make test-slow`
def test_auto_keeps_a_float32_model_in_float32_and_bf16_is_recorded_when_asked(trained, tmp_path):
    _infer(trained, tmp_path / "auto.nc")
    proc = _infer(trained, tmp_path / "bf16.nc", "--precision", "bfloat16")
    auto, bf16 = xr.open_dataset(tmp_path / "auto.nc"), xr.open_dataset(tmp_path / "bf16.nc")
    assert (auto.attrs["precision"], auto.attrs["compile"]) == ("float32", "none")
    assert bf16.attrs["precision"] == "bfloat16"
    a, b = auto["u"].values, bf16["u"].values
    assert not np.array_equal(a, b)  # bf16 really ran
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 2e-2
    if not infer.native_bf16():
        assert "no native bf16 kernels" in proc.stderr


def test_auto_follows_a_bf16_trained_model_only_where_bf16_is_native(monkeypatch):
    monkeypatch.setattr(infer, "native_bf16", lambda: True)
    assert infer.resolve_precision("auto", "bfloat16") == "bfloat16"
    assert infer.resolve_precision("auto", "float32") == "float32"
    monkeypatch.setattr(infer, "native_bf16", lambda: False)
    monkeypatch.setattr(machine, "native_bf16", lambda: False)  # the emulation warning's probe
    assert infer.resolve_precision("auto", "bfloat16") == "float32"
    with pytest.warns(UserWarning, match="emulates them"):
        assert infer.resolve_precision("bfloat16", "float32") == "bfloat16"


def test_a_failing_compile_falls_back_to_eager_with_one_warning(trained, tmp_path, monkeypatch):
    def broken(model, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong inductor trace")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning) as caught:
        infer.infer(trained / "model.pt", tmp_path / "c.nc", samples_path=trained / "samples.nc", compile_model=True)
    messages = [str(w.message) for w in caught if "torch.compile" in str(w.message)]
    assert messages == ["--compile: torch.compile failed (RuntimeError: no C++ compiler found); running the model "
                        "eagerly"]
    infer.infer(trained / "model.pt", tmp_path / "e.nc", samples_path=trained / "samples.nc")
    c, e = xr.open_dataset(tmp_path / "c.nc"), xr.open_dataset(tmp_path / "e.nc")
    assert c.attrs["compile"] == "none"
    np.testing.assert_array_equal(c["u"].values, e["u"].values)


@pytest.mark.slow  # inductor compiles C++ (tens of seconds)
def test_compiled_inference_matches_eager_float32(trained, tmp_path):
    _infer(trained, tmp_path / "eager.nc", "--precision", "float32")
    _infer(trained, tmp_path / "compiled.nc", "--precision", "float32", "--compile")
    eager, comp = xr.open_dataset(tmp_path / "eager.nc"), xr.open_dataset(tmp_path / "compiled.nc")
    assert comp.attrs["compile"] == "inductor"
    a, b = eager["u"].values, comp["u"].values
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-3
