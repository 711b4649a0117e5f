"""The per-rank memory request: the parameter count is the model's, and the estimate moves the right way."""

import copy

import pytest

from diffnet.config import experiment_from_dict, validate
from diffnet.models.unet import UNet
from diffnet.resources import parameter_count, samples_in_flight, train_memory_mib
from tests.conftest import TINY, run_cli, write_config


def experiment(**model):
    doc = copy.deepcopy(TINY)
    doc["experiments"]["tiny"]["model"] = model
    doc = validate(doc)
    return experiment_from_dict("tiny", doc["experiments"]["tiny"])


@pytest.mark.parametrize("model", [{"depth": 2}, {"depth": 2, "base_channels": 8}, {"depth": 1, "norm": "batch"}])
def test_parameter_count_is_the_models(model):
    exp = experiment(**model)
    m = exp.model
    net = UNet(3, m.base_channels, m.depth, m.norm)
    assert parameter_count(exp) == sum(p.numel() for p in net.parameters())


def test_estimate_grows_with_what_is_in_flight_and_shrinks_with_checkpointing():
    plain, ckpt = experiment(depth=2), experiment(depth=2, activation_checkpointing=True)
    assert samples_in_flight(plain, ranks=1) == plain.train.batch_size
    assert samples_in_flight(plain, ranks=2) == -(-plain.train.batch_size // 2)
    assert train_memory_mib(ckpt) < train_memory_mib(plain)
    assert train_memory_mib(plain, ranks=2) <= train_memory_mib(plain, ranks=1)


def test_resources_cli_prints_every_experiment(tmp_path):
    cfg = write_config(tmp_path / "c.yaml")
    out = run_cli(["resources", "--config", str(cfg)]).stdout
    assert out.splitlines()[1].split()[0] == "tiny"
    assert int(out.splitlines()[1].split()[-1]) == train_memory_mib(experiment_from_dict(
        "tiny", validate(copy.deepcopy(TINY))["experiments"]["tiny"]))
