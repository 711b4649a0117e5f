"""Faults a user meets: a full disk or a forbidden output is one line naming the output; two trainings on one
folder are refused; a killed training's lock never blocks its resume."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections import namedtuple

import pytest
import xarray as xr

from diffnet import checkpoint, cli, io
from tests.conftest import TINY, run_cli, write_config

FAULTS = [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
    (OSError(errno.EROFS, "Read-only file system"), "the file system is read-only"),
    (OSError(errno.EACCES, "Permission denied"), "permission denied"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
]


@pytest.mark.parametrize("fault, cause", FAULTS, ids=["ENOSPC", "EROFS", "EACCES", "EDQUOT"])
def test_a_failed_write_names_the_output_and_the_cause(tmp_path, monkeypatch, capsys, fault, cause):
    cfg = write_config(tmp_path / "config.yaml")

    def refuse(self, *args, **kwargs):
        raise fault

    monkeypatch.setattr(xr.Dataset, "to_netcdf", refuse)
    code = cli.main(["sample", "--config", str(cfg), "--experiment", "tiny",
                     "--out", str(tmp_path / "out" / "samples.nc")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"diffnet sample: error: cannot write '{tmp_path / 'out' / 'samples.nc'}': {cause}; nothing was "
                   "written there"]
    assert list((tmp_path / "out").iterdir()) == []  # no partial file, no temporary left behind


def test_the_netcdf_librarys_hdf_error_on_a_full_disk_is_explained(tmp_path, monkeypatch):
    def hdf_error(self, *args, **kwargs):
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", hdf_error)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(io.shutil, "disk_usage", lambda _: usage(2**30, 2**30 - 2**20, 2**20))
    with pytest.raises(io.OutputError, match=r"cannot write '.*x\.nc': no space left on the device \(1 MiB free\)"):
        io.write_dataset(xr.Dataset({"a": ("n", [1.0])}), tmp_path / "x.nc")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_directory_fails_before_the_temporary_file(tmp_path, monkeypatch):
    def no_temp(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.nc.abc.tmp"))

    monkeypatch.setattr(io.tempfile, "mkstemp", no_temp)
    with pytest.raises(io.OutputError) as caught:
        io.write_dataset(xr.Dataset({"a": ("n", [1.0])}), tmp_path / "x.nc")
    assert str(caught.value) == f"cannot write '{tmp_path / 'x.nc'}': permission denied; nothing was written there"
    assert ".tmp" not in str(caught.value)


def test_a_second_training_on_a_locked_folder_is_refused_and_a_dead_holder_does_not_block(tmp_path):
    held = checkpoint.lock_output_dir(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=rf"is being trained by pid {os.getpid()} on host "):
        checkpoint.lock_output_dir(tmp_path)
    held.close()
    checkpoint.lock_output_dir(tmp_path).close()
    # A holder killed with SIGKILL leaves its lock file behind, naming it, but not its lock.
    code = ("import sys, time; from diffnet import checkpoint; held = checkpoint.lock_output_dir(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(checkpoint.CheckpointError, match=f"pid {proc.pid}"):
            checkpoint.lock_output_dir(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert f"pid {proc.pid}" in (tmp_path / checkpoint.LOCK_NAME).read_text()
    checkpoint.lock_output_dir(tmp_path).close()


@pytest.mark.mpi
def test_diffnet_train_refuses_a_folder_another_run_trains(tmp_path):
    doc = {**TINY, "experiments": {"tiny": {**TINY["experiments"]["tiny"],
                                            "train": {**TINY["experiments"]["tiny"]["train"], "steps": 100000,
                                                      "checkpoint_every": 100000}}}}
    cfg = write_config(tmp_path / "config.yaml", doc)
    run_cli(["sample", "--config", str(cfg), "--experiment", "tiny", "--out", str(tmp_path / "samples.nc")])
    args = ["train", "--config", str(cfg), "--experiment", "tiny", "--samples", str(tmp_path / "samples.nc"),
            "--out-dir", str(tmp_path / "run"), "--threads", "1"]
    first = subprocess.Popen([sys.executable, "-m", "diffnet.cli", *args], stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        lock = tmp_path / "run" / checkpoint.LOCK_NAME
        deadline = time.monotonic() + 120
        while not (lock.is_file() and f"pid {first.pid}" in lock.read_text()):  # the ready signal
            assert first.poll() is None and time.monotonic() < deadline, "the first training did not start"
            time.sleep(0.1)
        second = run_cli(args, ranks=2, check=False)
        assert second.returncode == 2
        lines = [line for line in second.stderr.splitlines() if "error" in line]
        assert len(lines) == 1 and f"is being trained by pid {first.pid} on host" in lines[0], second.stderr
        assert "Abort" not in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
