"""Cascade: a frozen coarser network plus a fine correction that starts at zero."""

import copy

import numpy as np
import pytest
import torch

from diffnet import checkpoint, io
from diffnet.config import ConfigError, experiment_from_dict, validate
from diffnet.infer import load_model, predict
from diffnet.models import Cascade, UNet, build_model, coarse_shape
from diffnet.models.cascade import resample
from diffnet.parallel.comm import SerialComm
from diffnet.sample import sample
from diffnet.train import train
from tests.conftest import TINY


def _doc(**fine_model):
    doc = copy.deepcopy(TINY)
    coarse = doc["experiments"]["tiny"]
    coarse["grid"] = {"nx": 17, "nt": 17}
    fine = copy.deepcopy(coarse)
    fine["grid"] = {"nx": 33, "nt": 33}
    fine["model"] = {**coarse["model"], "cascade_levels": 1, **fine_model}
    fine["train"] = {**coarse["train"], "init_from": "tiny"}
    doc["experiments"]["fine"] = fine
    doc["run"] = ["fine"]
    return doc


def _experiments(doc):
    doc = validate(doc)
    return [experiment_from_dict(n, doc["experiments"][n]) for n in ("tiny", "fine")]


def test_coarse_grid_halves_the_intervals_and_resampling_keeps_linear_fields():
    assert coarse_shape((257, 33)) == (129, 17)
    assert coarse_shape((256, 256)) == (128, 128)
    t, x = torch.meshgrid(torch.linspace(0, 1, 33), torch.linspace(0, 1, 17), indexing="ij")
    field = (2 * t - 3 * x + 1)[None, None].double()
    coarse = resample(field, (17, 9))
    tc, xc = torch.meshgrid(torch.linspace(0, 1, 17), torch.linspace(0, 1, 9), indexing="ij")
    torch.testing.assert_close(coarse[0, 0], (2 * tc - 3 * xc + 1).double(), rtol=0, atol=1e-12)


def test_untrained_cascade_is_the_interpolated_coarse_network_and_only_the_fine_level_learns():
    torch.manual_seed(0)
    coarse = UNet(3, 4, 2).double()
    net = Cascade(coarse, UNet(4, 4, 2).double(), (9, 9))
    x = torch.randn(2, 3, 17, 17, dtype=torch.float64)
    expected = resample(coarse(resample(x, (9, 9))), (17, 17))
    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-14)

    before = {k: v.clone() for k, v in coarse.state_dict().items()}
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
    assert all(torch.equal(before[k], v) for k, v in coarse.state_dict().items())
    assert not torch.allclose(net(x), expected)
    net.train()
    assert not coarse.training  # frozen level stays in eval mode


def test_build_model_nests_one_frozen_level_per_cascade_level():
    _, fine = _experiments(_doc())
    net = build_model(fine.model, fine.grid.shape, 3)
    assert isinstance(net, Cascade) and isinstance(net.coarse, UNet) and net.coarse_grid == (17, 17)


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["experiments"]["fine"]["train"].update(init_from=""), "fine.train.init_from"),
    (lambda d: d["experiments"]["tiny"].update(grid={"nx": 16, "nt": 16}), "fine.train.init_from"),
    (lambda d: d["experiments"]["fine"]["model"].update(cascade_levels=2), "fine.train.init_from"),
    (lambda d: d["experiments"]["fine"]["model"].update(cascade_levels=3), "fine.model.cascade_levels"),
])
def test_bad_cascade_configs_name_the_field(change, field):
    doc = _doc()
    change(doc)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate(doc)


def test_cascade_trains_on_top_of_the_coarse_model_and_infers_from_its_model_file(tmp_path):
    coarse_exp, fine_exp = _experiments(_doc())
    sample(coarse_exp, tmp_path / "c_samples.nc")
    train(coarse_exp, tmp_path / "c_samples.nc", tmp_path / "coarse", comm=SerialComm(), progress=False)
    sample(fine_exp, tmp_path / "f_samples.nc")
    wrong = checkpoint.load(tmp_path / "coarse" / "model.pt")
    wrong["config_yaml"] = wrong["config_yaml"].replace("nx: 17", "nx: 9").replace("nt: 17", "nt: 9")
    checkpoint.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(checkpoint.CheckpointError, match=r"9x9 grid.*needs the network of 17x17"):
        train(fine_exp, tmp_path / "f_samples.nc", tmp_path / "wrong", comm=SerialComm(), progress=False,
              init_from=tmp_path / "wrong.pt")
    train(fine_exp, tmp_path / "f_samples.nc", tmp_path / "fine", comm=SerialComm(), progress=False,
          init_from=tmp_path / "coarse" / "model.pt")

    coarse_state = checkpoint.load(tmp_path / "coarse" / "model.pt")["model"]
    fine_state = checkpoint.load(tmp_path / "fine" / "model.pt")["model"]
    for k, v in coarse_state.items():  # the coarse level travels inside the fine model.pt, unchanged
        torch.testing.assert_close(fine_state[f"coarse.{k}"], v, rtol=0, atol=0)
    exp, model = load_model(tmp_path / "fine" / "model.pt")
    u0 = io.read_samples(tmp_path / "f_samples.nc")["u0"].values[:2]
    u = predict(exp, model, u0)
    assert u.shape == (2, 33, 33) and np.isfinite(u).all()
    np.testing.assert_allclose(u[:, 0], u0, atol=1e-6)
