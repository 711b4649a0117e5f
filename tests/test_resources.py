"""The per-rank memory request: the parameter count is the model's, and the estimate moves the right way."""

import copy
import dataclasses

import pytest

from diffnet.config import experiment_from_dict, validate
from diffnet.models import build_model
from diffnet.resources import parameter_count, samples_in_flight, train_memory_mib
from tests.conftest import TINY, run_cli, write_config


def experiment(**model):
    doc = copy.deepcopy(TINY)
    doc["experiments"]["tiny"]["model"] = model
    doc = validate(doc)
    return experiment_from_dict("tiny", doc["experiments"]["tiny"])


@pytest.mark.parametrize("in_channels", [3, 4])
@pytest.mark.parametrize("model", [{"depth": 2}, {"depth": 2, "base_channels": 8}, {"depth": 1, "norm": "batch"},
                                   {"depth": 1, "cascade_levels": 2}])
def test_parameter_count_is_the_models(model, in_channels):
    model = dict(model)  # parametrize shares the dict between the in_channels cases
    levels = model.pop("cascade_levels", 0)
    exp = experiment(**model)
    exp = dataclasses.replace(exp, model=dataclasses.replace(exp.model, cascade_levels=levels))
    net = build_model(exp.model, exp.grid.shape, in_channels)
    assert parameter_count(exp, in_channels) == sum(p.numel() for p in net.parameters())


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
