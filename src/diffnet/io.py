"""The NetCDF contract between stages: variable names, CF attributes, provenance, atomic writes.

Every stage reads and writes through this module, so it is the only place that knows what a file
holds. Writes go to a hidden temporary file in the same directory and are renamed into place: a killed
job never leaves a file that looks complete. Reads check the variables a stage needs and fail with one
line saying which file is wrong and which stage writes it.
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from diffnet.config import ExperimentConfig

if TYPE_CHECKING:
    from diffnet.problems.base import Problem

CONVENTIONS = "CF-1.10"


class ContractError(ValueError):
    """An input file is missing, unreadable, or does not hold what the stage needs."""


class OutputError(OSError):
    """An output could not be written (full disk, read-only file system, no permission): one line, the output
    path and the cause; nothing partial is left behind (``atomic_path``)."""


_CAUSES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
           errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied"}


_STORAGE = re.compile(r"NetCDF|HDF|StreamWriter|writ", re.IGNORECASE)


def _write_failure(path: Path, exc: BaseException) -> OutputError:
    """Why writing ``path`` failed, in words: from the errno, else (the NetCDF library hides it) from the disk."""
    cause = _CAUSES.get(getattr(exc, "errno", None) or -1)
    if cause is None:
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        if free is not None and free < 64 * 2**20:
            cause = f"no space left on the device ({free // 2**20} MiB free)"
        elif not os.access(path.parent, os.W_OK):
            cause = "the directory is not writable"
        else:
            cause = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return OutputError(f"cannot write '{path}': {cause}; nothing was written there")


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
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The file gets the permissions a plain ``open()`` would give it (0o666 less the umask, or what the
    directory's default ACL grants), not mkstemp's private 0600. A write that fails for lack of space or
    permission raises OutputError naming ``path`` (not the temporary file) and the cause.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, mode = _fresh_temporary(path)
    except OSError as exc:
        raise _write_failure(path, exc) from None
    try:
        try:
            yield tmp
        except (OSError, RuntimeError) as exc:
            # A RuntimeError is a storage failure only as netCDF4/HDF5 ("NetCDF: HDF error") or torch.save
            # ("PytorchStreamWriter failed writing file") phrase one; anything else is not ours to reword.
            if isinstance(exc, OutputError) or (isinstance(exc, RuntimeError) and not _STORAGE.search(str(exc))):
                raise
            raise _write_failure(path, exc) from None
        try:
            # Writers reuse the file we made; one that swaps in its own (temp + rename) must not bring its mode.
            if tmp.stat().st_mode & 0o7777 != mode:
                os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_failure(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)


def _fresh_temporary(path: Path) -> tuple[Path, int]:
    while True:
        # mkstemp only picks a unique name: its file is 0600. Creating the file anew with mode 0o666 lets
        # the kernel apply the umask and any default ACL exactly as open() does. Reading the umask instead
        # means setting it (os.umask), which is process-wide and races with files other threads create.
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(name)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # someone took the freed name in between: never write into their file
            continue
        break
    try:
        return Path(name), os.fstat(fd).st_mode & 0o7777
    finally:
        os.close(fd)


def write_dataset(ds: xr.Dataset, path: str | Path) -> None:
    encoding = {}
    for name in ds.coords:
        encoding[name] = {"_FillValue": None}  # CF forbids fill values on coordinates
    for name, var in ds.data_vars.items():
        enc = {"zlib": True, "complevel": 4}
        if var.dtype.kind == "f":
            enc["_FillValue"] = np.nan
        if "sample" in var.dims and var.ndim > 1:
            # One chunk per sample (and rung): reading one solution field is one decompression.
            enc["chunksizes"] = tuple(1 if d in ("sample", "rung") else var.sizes[d] for d in var.dims)
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


# Files written before the contract named its variables held the Burgers family's.
_LEGACY = {"parameters": "c", "inputs": "u0"}


def _names(ds: xr.Dataset, kind: str) -> list[str]:
    """The parameter or input variable names a file declares in its global attributes."""
    return str(ds.attrs.get(kind, ds.attrs.get("parameter") if kind == "parameters" else None)
               or _LEGACY[kind]).split()


def summary_of(metrics: xr.Dataset) -> str:
    """The name of the per-sample scalar a metrics file plots errors against (c, log10_contrast)."""
    return str(metrics.attrs.get("summary", metrics.attrs.get("parameter", "c")))


def parameters_of(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """The per-sample parameters a file holds ({'c': (sample,)} or {'omega': (sample, mode), ...})."""
    return {name: ds[name].values for name in _names(ds, "parameters")}


def record_of(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Parameters and input fields of every sample: what a family derives the network's condition from."""
    return {name: ds[name].values for name in (*_names(ds, "parameters"), *_names(ds, "inputs")) if name in ds}


def _sample_coord(n: int) -> xr.DataArray:
    return xr.DataArray(np.arange(n, dtype=np.int32), dims="sample", attrs={"long_name": "sample index"})


def _base(exp: ExperimentConfig, problem: Problem, params: dict[str, np.ndarray], title: str,
          inputs: dict[str, np.ndarray] | None = None, axes: bool = True) -> xr.Dataset:
    """Coordinates, parameters (and inputs) of a batch of samples, with provenance and the declarations."""
    n = len(next(iter(params.values())))
    coords: dict[str, xr.DataArray] = {"sample": _sample_coord(n)}
    declared = {**problem.parameters, **(problem.inputs if inputs is not None else {})}
    used = {d for spec in declared.values() for d in spec.dims}
    for axis in problem.axes:
        if axes or axis.name in used:
            coords[axis.name] = xr.DataArray(axis.values, dims=axis.name, attrs=dict(axis.attrs))
    data = {}
    for name, spec in problem.parameters.items():
        data[name] = (("sample", *spec.dims), np.asarray(params[name], dtype=np.float64), dict(spec.attrs))
    for name, values in (inputs or {}).items():
        spec = problem.inputs[name]
        data[name] = (("sample", *spec.dims), np.asarray(values, dtype=np.float64), dict(spec.attrs))
    ds = xr.Dataset(data, coords=coords, attrs=provenance(exp, title))
    for dim in used - {a.name for a in problem.axes}:
        # Vector parameters (omega(sample, mode)) get a 1-based index coordinate of their own.
        ds = ds.assign_coords({dim: xr.DataArray(np.arange(1, ds.sizes[dim] + 1, dtype=np.int32), dims=dim,
                                                 attrs={"long_name": f"{dim} number", "units": "1"})})
    ds.attrs["problem"] = problem.name
    ds.attrs["parameters"] = " ".join(problem.parameters)
    if inputs is not None:
        ds.attrs["inputs"] = " ".join(inputs)
    if "c" in problem.parameters and len(problem.parameters) == 1:
        ds.attrs["parameter"] = "c"  # read by tools written against the first Burgers files
    return ds


def samples_dataset(exp: ExperimentConfig, problem: Problem, params: dict[str, np.ndarray],
                inputs: dict[str, np.ndarray], split: np.ndarray) -> xr.Dataset:
    """samples.nc: every sample's parameters, the input fields the network sees, and the train/test split."""
    ds = _base(exp, problem, params, "DiffNet samples: parameters, network inputs and split", inputs=inputs, axes=False)
    ds["split"] = ("sample", np.asarray(split, dtype=str), {"long_name": "dataset split: train or test"})
    return ds


def read_samples(path: str | Path) -> xr.Dataset:
    ds = read_dataset(path, (), "sample")
    missing = [v for v in (*_names(ds, "inputs"), "split", *_names(ds, "parameters")) if v not in ds]
    if missing:
        raise ContractError(f"input file '{path}' lacks {', '.join(missing)}; it must come from `diffnet sample`")
    return ds


def select_split(samples: xr.Dataset, split: str) -> xr.Dataset:
    chosen = samples.isel(sample=np.flatnonzero(samples["split"].values == split))
    if chosen.sizes["sample"] == 0:
        raise ContractError(f"no '{split}' samples in the samples file (splits present: "
                            f"{', '.join(sorted(set(samples['split'].values)))})")
    return chosen


def check_grid(ds: xr.Dataset, problem: Problem, path: str | Path, what: str) -> None:
    """The file's axes must be the problem's: a model or config of another grid cannot use it."""
    for axis in problem.axes:
        if axis.name in ds.dims and ds.sizes[axis.name] != axis.size:
            raise ContractError(f"'{path}' has {ds.sizes[axis.name]} {axis.name} nodes but {what} has "
                                f"{axis.size}; rerun `diffnet sample` with the same config")


def read_inputs(path: str | Path, problem: Problem) -> dict[str, np.ndarray]:
    """A user's own input fields (``diffnet infer --inputs``), each as (sample, *dims) on the problem's grid.

    The file holds every input the family declares (Darcy: nu(sample, y, x)); a field without a sample
    dimension is one sample. Refused in one line: a missing variable, other dimensions, another grid (node
    counts, or coordinates that are not the model's nodes). Values are the family's to check
    (``problems.check_fields``).
    """
    ds = read_dataset(path, (), "sample (or write your own: see diffnet infer --help)")
    axes = {a.name: a for a in problem.axes}
    out = {}
    for name, spec in problem.inputs.items():
        want = ("sample", *spec.dims)
        shape = " x ".join(str(axes[d].size) if d in axes else d for d in spec.dims)
        usage = f"give {name}({', '.join(want)}) on the model's {shape} grid"
        if name not in ds:
            present = ", ".join(map(str, ds.data_vars)) or "nothing"
            raise ContractError(f"'{path}' has no variable '{name}' (it has {present}); {usage}")
        var = ds[name]
        if var.dims == tuple(spec.dims):
            var = var.expand_dims("sample")
        if set(var.dims) != set(want) or var.ndim != len(want):
            raise ContractError(f"'{path}': {name} has dimensions ({', '.join(map(str, var.dims))}); {usage}")
        var = var.transpose(*want)
        for d in spec.dims:
            if d not in axes:
                continue
            if var.sizes[d] != axes[d].size:
                raise ContractError(f"'{path}': {name} has {var.sizes[d]} {d} nodes but the model's grid has "
                                    f"{axes[d].size}; resample it to the model's {shape} grid")
            if d in var.coords and not np.allclose(var[d].values, axes[d].values, rtol=0.0, atol=1e-9):
                raise ContractError(f"'{path}': {name}'s {d} coordinates are not the model's nodes "
                                    f"(i/{axes[d].size - 1} on [0, 1]); resample it to the model's {shape} grid")
        if var.sizes["sample"] == 0:
            raise ContractError(f"'{path}': {name} holds no samples; {usage}")
        out[name] = np.asarray(var.values, dtype=np.float64)
    return out


def field_dataset(exp: ExperimentConfig, problem: Problem, params: dict[str, np.ndarray],
                  fields: dict[str, tuple[np.ndarray, str]],
                  extra: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]] | None = None,
                  title: str = "DiffNet fields", inputs: dict[str, np.ndarray] | None = None) -> xr.Dataset:
    """Fields u(sample, *axes) stored as float32, with the samples' parameters (and inputs) and extras."""
    ds = _base(exp, problem, params, title, inputs=inputs)
    dims = ("sample", *(a.name for a in problem.axes))
    for name, (values, long) in fields.items():
        ds[name] = (dims, np.asarray(values, dtype=np.float32), {**problem.field_attrs, "long_name": long})
    for name, (vdims, values, attrs) in (extra or {}).items():
        ds[name] = (vdims, values, attrs)
    return ds


def with_ladder(ds: xr.Dataset, problem: Problem, ladder) -> xr.Dataset:
    """reference.nc's ladder: u_ladder(rung, sample, *axes), seconds_ladder and qoi_ladder (rung, sample),
    with each rung's solver and node count as coordinates."""
    rung = len(ladder.nodes)
    dims = ("rung", "sample", *(a.name for a in problem.axes))
    ds = ds.assign_coords(
        rung=xr.DataArray(np.arange(rung, dtype=np.int32), dims="rung", attrs={"long_name": "ladder rung index"}),
        rung_solver=xr.DataArray(np.asarray(ladder.solver, dtype=str), dims="rung",
                                 attrs={"long_name": "classical solver of the rung"}),
        rung_nodes=xr.DataArray(np.asarray(ladder.nodes, dtype=np.int32), dims="rung",
                                attrs={"long_name": "nodes (or cells) of the rung's grid along x", "units": "1"}))
    ds["u_ladder"] = (dims, np.asarray(ladder.fields, dtype=np.float32),
                      {**problem.field_attrs, "long_name": "classical solution on the rung's grid, transferred to "
                       "this grid"})
    ds["seconds_ladder"] = (("rung", "sample"), np.asarray(ladder.seconds, dtype=np.float64),
                            {"units": "s", "long_name": "wall time per solve, transfer to this grid included"})
    ds["qoi_ladder"] = (("rung", "sample"), np.asarray(ladder.qoi, dtype=np.float64),
                        {**problem.qoi_attrs, "long_name": f"{problem.qoi_attrs['long_name']} on the rung's grid"})
    return ds


def ensemble_chunk_dataset(exp: ExperimentConfig, problem: Problem, params: dict[str, np.ndarray],
                           index: np.ndarray, per_sample: dict[str, np.ndarray], count: int, mean: np.ndarray,
                           m2: np.ndarray, spot_u: np.ndarray, fields: np.ndarray | None) -> xr.Dataset:
    """One ensemble chunk: per draw its parameters, QoI, self-check and inference time; the chunk's field
    statistics (count, mean, sum of squared deviations, float64); the spot checks' predicted fields; and,
    when kept, every predicted field."""
    ds = _base(exp, problem, params, "DiffNet ensemble chunk")
    ds = ds.assign_coords(sample=xr.DataArray(np.asarray(index, dtype=np.int64), dims="sample",
                                              attrs={"long_name": "draw index in the Sobol sequence"}))
    axes = tuple(a.name for a in problem.axes)
    q = problem.qoi_attrs
    ds["qoi"] = ("sample", per_sample["qoi"], {k: v for k, v in q.items() if k != "definition"})
    ds["residual"] = ("sample", per_sample["residual"], {"units": "1", "long_name": "self-check: mean square "
                                                         "of the family's discrete residual on the prediction"})
    ds["trusted"] = ("sample", per_sample["trusted"].astype(np.int8), {
        "long_name": "self-check verdict", "flag_values": np.array([0, 1], dtype=np.int8),
        "flag_meanings": "untrusted trusted"})
    ds["seconds"] = ("sample", per_sample["seconds"], {"units": "s", "long_name": "batched inference wall time "
                                                       "per draw"})
    ds["u_mean"] = (axes, mean, {**problem.field_attrs, "long_name": "mean of the chunk's predicted u"})
    ds["u_m2"] = (axes, m2, {"units": "1", "long_name": "sum of squared deviations of the chunk's predicted u "
                             "from its mean"})
    if len(spot_u):
        ds["u_spot"] = (("spot", *axes), np.asarray(spot_u, dtype=np.float32),
                        {**problem.field_attrs, "long_name": "predicted u of the spot-check draws"})
    if fields is not None:
        ds["u"] = (("sample", *axes), np.asarray(fields, dtype=np.float32),
                   {**problem.field_attrs, "long_name": "DiffNet prediction of u"})
    ds.attrs["stat_count"] = int(count)
    return ds


def read_ensemble_chunk(path: str | Path) -> xr.Dataset:
    return read_dataset(path, ("qoi", "u_mean", "u_m2", "trusted"), "ensemble")


def read_prediction(path: str | Path) -> xr.Dataset:
    return read_dataset(path, ("u", "seconds_infer"), "infer")


def read_reference(path: str | Path) -> xr.Dataset:
    ds = read_dataset(path, (), "reference")
    methods = str(ds.attrs.get("methods", "exact fem")).split()
    required = [f"{kind}_{m}" for m in methods for kind in ("u", "seconds")]
    missing = [v for v in required if v not in ds]
    if missing:
        raise ContractError(f"input file '{path}' lacks {', '.join(missing)}; it must come from `diffnet reference`")
    return ds


def read_metrics(path: str | Path) -> xr.Dataset:
    return read_dataset(path, ("rel_l2", "l1", "linf"), "evaluate")
