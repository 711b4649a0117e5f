"""The NetCDF contract: names, dims, CF attributes, provenance, atomic writes, clear read errors."""

import numpy as np
import pytest
import xarray as xr

from diffnet import io
from diffnet.config import load_experiment
from diffnet.sample import sample


@pytest.fixture
def exp(tiny_config):
    return load_experiment(tiny_config)


def test_ics_file_holds_the_contract(exp, tmp_path):
    path = tmp_path / "samples.nc"
    sample(exp, path)
    ds = io.read_samples(path)
    assert ds["u0"].dims == ("sample", "x")
    assert set(ds["split"].values) == {"train", "test"}
    assert (ds["split"] == "test").sum() == exp.sampling.n_test
    c = ds["c"].values
    assert np.all((c >= exp.problem.c_min) & (c <= exp.problem.c_max))
    np.testing.assert_allclose(ds["u0"].values, 0.5 * (1 - np.cos(2 * np.pi * c[:, None] * ds["x"].values)))
    for var in ("u0", "c", "x"):
        assert "units" in ds[var].attrs and "long_name" in ds[var].attrs
    for key in ("experiment", "config", "config_sha256", "diffnet_version", "git_commit", "date_created",
                "history", "source", "Conventions"):
        assert ds.attrs[key], key
    assert "tiny" in ds.attrs["config"]


def test_coordinates_carry_no_fill_value(exp, tmp_path):
    path = tmp_path / "samples.nc"
    sample(exp, path)
    with xr.open_dataset(path, decode_cf=False) as raw:
        assert "_FillValue" not in raw["x"].attrs
        assert "_FillValue" in raw["u0"].attrs


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.nc"
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half a file")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_reading_a_missing_or_corrupt_file_names_the_producer(tmp_path):
    with pytest.raises(io.ContractError, match="diffnet sample"):
        io.read_samples(tmp_path / "nope.nc")
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"\x89HDF garbage")
    with pytest.raises(io.ContractError, match="not a readable NetCDF"):
        io.read_samples(bad)
    other = tmp_path / "other.nc"
    xr.Dataset({"v": ("x", np.zeros(3))}).to_netcdf(other)
    with pytest.raises(io.ContractError, match="lacks u0"):
        io.read_samples(other)
