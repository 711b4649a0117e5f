"""The NetCDF contract between stages: variable names, CF attributes, provenance, atomic writes.

Every stage reads and writes through this module, so it is the only place that knows what a file
holds. Writes go to a hidden temporary file in the same directory and are renamed into place: a killed
job never leaves a file that looks complete. Reads check the variables a stage needs and fail with one
line saying which file is wrong and which stage writes it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

from diffnet.config import ExperimentConfig

CONVENTIONS = "CF-1.10"


class ContractError(ValueError):
    """An input file is missing, unreadable, or does not hold what the stage needs."""


@functools.cache
def package_version() -> str:
    try:
        return metadata.version("diffnet")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(exp: ExperimentConfig, title: str) -> dict[str, str]:
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    command = "diffnet " + shlex.join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("diffnet") else \
        shlex.join(sys.argv)
    return {
        "Conventions": CONVENTIONS,
        "title": title,
        "institution": "diffnet",
        "source": f"diffnet {package_version()} (git {git_commit()})",
        "history": f"{now} {command}",
        "experiment": exp.name,
        "config": exp.to_yaml(),
        "config_sha256": exp.digest(),
        "diffnet_version": package_version(),
        "git_commit": git_commit(),
        "command": command,
        "date_created": now,
    }


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_dataset(ds: xr.Dataset, path: str | Path) -> None:
    encoding = {}
    for name in ds.coords:
        encoding[name] = {"_FillValue": None}  # CF forbids fill values on coordinates
    for name, var in ds.data_vars.items():
        enc = {"zlib": True, "complevel": 4}
        if var.dtype.kind == "f":
            enc["_FillValue"] = np.nan
        if "sample" in var.dims and var.ndim > 1:
            # One chunk per sample: reading one solution field is one decompression.
            enc["chunksizes"] = tuple(1 if d == "sample" else var.sizes[d] for d in var.dims)
        if var.dtype.kind in "OU":
            enc = {}
        encoding[name] = enc
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, encoding=encoding, format="NETCDF4")


def read_dataset(path: str | Path, required: tuple[str, ...], producer: str) -> xr.Dataset:
    """Open ``path`` fully into memory and check it holds ``required`` variables."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"input file '{path}' not found; it is written by `diffnet {producer}`")
    try:
        with xr.open_dataset(path) as ds:
            ds = ds.load()
    except Exception as exc:  # netCDF4/HDF5 raise many types for a corrupt file
        raise ContractError(f"input file '{path}' is not a readable NetCDF file ({type(exc).__name__}); "
                            f"rerun `diffnet {producer}`") from None
    missing = [v for v in required if v not in ds.variables]
    if missing:
        raise ContractError(f"input file '{path}' lacks {', '.join(missing)}; it must come from "
                            f"`diffnet {producer}`")
    return ds


def _coords(t: np.ndarray | None, x: np.ndarray) -> dict[str, xr.DataArray]:
    # Dimensionless space and time: CF's axis/standard_name attributes would demand metres and
    # "seconds since", so the coordinates carry only long_name and units "1".
    coords = {"x": xr.DataArray(x, dims="x", attrs={"long_name": "dimensionless position x", "units": "1"})}
    if t is not None:
        coords["t"] = xr.DataArray(t, dims="t", attrs={"long_name": "dimensionless time t", "units": "1"})
    return coords


def _param(c: np.ndarray, name: str, attrs: dict[str, str]) -> xr.DataArray:
    return xr.DataArray(np.asarray(c, dtype=np.float64), dims="sample", attrs=dict(attrs))


def _sample_coord(n: int) -> xr.DataArray:
    return xr.DataArray(np.arange(n, dtype=np.int32), dims="sample", attrs={"long_name": "sample index"})


FIELD_ATTRS = {"units": "1", "long_name": "solution u of the conservation law"}


def ics_dataset(exp: ExperimentConfig, x: np.ndarray, params: np.ndarray, u0: np.ndarray,
                split: np.ndarray, param_name: str, param_attrs: dict[str, str]) -> xr.Dataset:
    ds = xr.Dataset(
        {
            "u0": (("sample", "x"), u0.astype(np.float64), {"units": "1", "long_name": "initial condition u(x, 0)"}),
            param_name: _param(params, param_name, param_attrs),
            "split": ("sample", np.asarray(split, dtype=str), {"long_name": "dataset split: train or test"}),
        },
        coords={**_coords(None, x), "sample": _sample_coord(len(params))},
        attrs=provenance(exp, "DiffNet initial conditions"),
    )
    ds.attrs["parameter"] = param_name
    return ds


def read_ics(path: str | Path) -> xr.Dataset:
    ds = read_dataset(path, ("u0", "split", "x"), "sample")
    name = ds.attrs.get("parameter", "c")
    if name not in ds:
        raise ContractError(f"input file '{path}' lacks the parameter variable '{name}'; rerun `diffnet sample`")
    return ds


def select_split(ics: xr.Dataset, split: str) -> xr.Dataset:
    chosen = ics.isel(sample=np.flatnonzero(ics["split"].values == split))
    if chosen.sizes["sample"] == 0:
        raise ContractError(f"no '{split}' samples in the initial conditions (splits present: "
                            f"{', '.join(sorted(set(ics['split'].values)))})")
    return chosen


def field_dataset(exp: ExperimentConfig, t: np.ndarray, x: np.ndarray, params: np.ndarray,
                  param_name: str, param_attrs: dict[str, str], fields: dict[str, tuple[np.ndarray, str]],
                  extra: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]] | None = None,
                  title: str = "DiffNet fields") -> xr.Dataset:
    """A dataset of space-time fields (sample, t, x) stored as float32, plus optional extras."""
    data = {
        name: (("sample", "t", "x"), np.asarray(values, dtype=np.float32), {**FIELD_ATTRS, "long_name": long})
        for name, (values, long) in fields.items()
    }
    data[param_name] = _param(params, param_name, param_attrs)
    for name, (dims, values, attrs) in (extra or {}).items():
        data[name] = (dims, values, attrs)
    ds = xr.Dataset(data, coords={**_coords(t, x), "sample": _sample_coord(len(params))},
                    attrs=provenance(exp, title))
    ds.attrs["parameter"] = param_name
    return ds


def read_prediction(path: str | Path) -> xr.Dataset:
    return read_dataset(path, ("u", "t", "x"), "infer")


def read_reference(path: str | Path) -> xr.Dataset:
    return read_dataset(path, ("u_exact", "u_fem", "seconds_exact", "seconds_fem"), "reference")


def read_metrics(path: str | Path) -> xr.Dataset:
    return read_dataset(path, ("rel_l2", "l1", "linf"), "evaluate")
