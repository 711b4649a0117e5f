import copy
import warnings

import pytest

from diffnet.config import ConfigError, ReachWarning, experiment_from_dict, load_experiment, validate
from tests.conftest import REPO, TINY, run_cli, write_config


def _with(path: str, value) -> dict:
    doc = copy.deepcopy(TINY)
    node = doc["experiments"]["tiny"]
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return doc


def test_default_config_is_valid_and_complete():
    exp = load_experiment(REPO / "config" / "config.yaml", "burgers64")
    assert (exp.grid.nx, exp.grid.nt) == (64, 64)
    assert exp.loss.scheme == "tvd2_cn"
    assert exp.sampling.n_test >= 16 and exp.sampling.n_train == 256


def test_fine_grid_chain_builds_each_grid_on_the_one_below_with_the_preconditioned_residual():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReachWarning)  # the cascade must see as far as shocks travel
        chain = {n: load_experiment(REPO / "config" / "config.yaml", f"burgers{n}") for n in (64, 128, 256)}
    assert chain[128].train.init_from == "burgers64" and chain[256].train.init_from == "burgers128"
    assert (chain[128].model.cascade_levels, chain[256].model.cascade_levels) == (0, 1)
    assert {chain[n].loss.residual_form for n in (128, 256)} == {"preconditioned"}
    assert {(e.problem.fields["c_min"], e.problem.fields["c_max"]) for e in chain.values()} == {(3.0, 6.0)}


def test_defaults_are_filled_from_the_schema():
    doc = validate({"experiments": {"e": {"problem": {"name": "burgers"}}}})
    exp = experiment_from_dict("e", doc["experiments"]["e"])
    assert exp.train.batch_size == 16 and exp.reference.fem_order == 1
    assert doc["run"] == ["e"]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("problem.c_min", 7.0, "problem.c_min"),  # reversed range (c_max defaults to 6)
        ("problem.c_min", -1.0, "problem.c_min"),
        ("grid.nx", 4, "grid.nx"),
        ("grid.nt", 12, "grid.nt"),  # too coarse for depth 2 needs >= 8: fine; for depth 3 not
        ("problem.name", "heat", "problem.name"),
        ("sampling.n_test", 0, "sampling.n_test"),
        ("train.batch_size", 13, "train.batch_size"),
        ("train.lr", 0, "train.lr"),
        ("loss.scheme", "central", "loss.scheme"),
        ("model.colour", 3, "model"),
    ],
)
def test_bad_fields_are_named(path, value, field):
    doc = _with(path, value)
    if path == "grid.nt":
        doc["experiments"]["tiny"]["model"]["depth"] = 3
    with pytest.raises(ConfigError) as info:
        validate(doc)
    message = str(info.value)
    assert field in message and "\n" not in message


def test_model_that_cannot_see_the_domain_of_dependence_is_warned_about():
    # 64 nodes over t_end = 1/3: characteristics travel up to 21 nodes; depth 2 reaches 20, depth 3 44.
    doc = _with("grid.nx", 64)
    doc["experiments"]["tiny"]["grid"]["nt"] = 64
    with pytest.warns(ReachWarning, match=r"model\.depth'.*travel up to 21 nodes.*depth >= 3"):
        validate(copy.deepcopy(doc))
    doc["experiments"]["tiny"]["model"]["depth"] = 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(doc)


def test_unknown_experiment_in_run_is_rejected():
    doc = copy.deepcopy(TINY)
    doc["run"] = ["nope"]
    with pytest.raises(ConfigError, match="'nope' does not exist"):
        validate(doc)


def test_cli_reports_bad_config_in_one_line(tmp_path):
    bad = write_config(tmp_path / "bad.yaml", _with("problem.c_max", 2.0))
    proc = run_cli(["sample", "--config", str(bad), "--out", str(tmp_path / "samples.nc")], check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "c_min" in lines[0], proc.stderr
    assert not (tmp_path / "samples.nc").exists()


def test_cli_rejects_missing_experiment_and_file(tmp_path, tiny_config):
    proc = run_cli(["sample", "--config", str(tiny_config), "--experiment", "nope", "--out", "x.nc"], check=False)
    assert proc.returncode == 2 and "'nope' does not exist" in proc.stderr
    proc = run_cli(["sample", "--config", str(tmp_path / "missing.yaml"), "--out", "x.nc"], check=False)
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_cli_rejects_impossible_arguments(tmp_path):
    proc = run_cli(["infer", "--model", "m.pt", "--out", "p.nc", "--c", "3,x"], check=False)
    assert proc.returncode == 2 and "comma-separated" in proc.stderr
    proc = run_cli(["train", "--config", "c.yaml", "--samples", "i.nc", "--out-dir", ".", "--threads", "0"],
                   check=False)
    assert proc.returncode == 2 and "positive integer" in proc.stderr
