"""Outputs honour the umask: every file a stage writes gets the mode a plain ``open()`` would give it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import xarray as xr

from diffnet import checkpoint, io
from tests.conftest import write_config


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask(request) -> Iterator[int]:
    """Run the test under ``request.param`` as umask; the previous one is restored whatever happens."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


UMASKS = [0o022, 0o002, 0o077]


@pytest.mark.parametrize("umask", UMASKS, indirect=True, ids=oct)
def test_atomic_path_gives_the_mode_open_gives(tmp_path, umask):
    with open(tmp_path / "plain", "w") as fh:
        fh.write("x")
    with io.atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("x")
    assert _mode(tmp_path / "out.txt") == _mode(tmp_path / "plain") == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "plain"]  # no temp file left


@pytest.mark.parametrize("umask", [0o002], indirect=True, ids=oct)
def test_a_writer_that_swaps_in_its_own_private_file_still_gets_the_umask_mode(tmp_path, umask):
    target = tmp_path / "out.bin"
    with io.atomic_path(target) as tmp:
        private = tmp_path / "private"
        os.close(os.open(private, os.O_WRONLY | os.O_CREAT, 0o600))
        os.replace(private, tmp)
    assert _mode(target) == 0o664


def test_atomic_path_never_sets_the_process_umask(tmp_path, monkeypatch):
    # Setting the umask to read it would race with files other threads create meanwhile.
    def forbidden(mask: int) -> int:
        raise AssertionError("atomic_path changed the process-wide umask")

    monkeypatch.setattr(os, "umask", forbidden)
    with io.atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "out.txt").read_text() == "x"


@pytest.mark.parametrize("umask", [0o002], indirect=True, ids=oct)
def test_checkpoints_and_netcdf_files_get_the_umask_mode(tmp_path, umask):
    checkpoint.save({"model": {"w": torch.zeros(2)}, "step": 2}, checkpoint.step_path(tmp_path, 2))
    io.write_dataset(xr.Dataset({"u": ("x", [1.0, 2.0])}, coords={"x": [0.0, 1.0]}), tmp_path / "u.nc")
    assert _mode(tmp_path / "step-00000002.pt") == 0o664
    assert _mode(tmp_path / "u.nc") == 0o664


# All stages of one pipeline in one process, each through the CLI's own main(): one set of imports, not six.
DRIVER = """
import json, sys
from diffnet.cli import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    if code:
        sys.exit(f"stage `diffnet {' '.join(argv)}` exited with {code}")
"""


def _stages(cfg: Path, work: Path) -> list[list[str]]:
    c, d = str(cfg), str(work / "D")
    w = {name: str(work / name) for name in ("samples.nc", "pred.nc", "ref.nc", "m.nc", "m.csv", "R")}
    return [
        ["sample", "--config", c, "--out", w["samples.nc"]],
        ["train", "--config", c, "--samples", w["samples.nc"], "--out-dir", d, "--threads", "1"],
        ["infer", "--model", f"{d}/model.pt", "--samples", w["samples.nc"], "--out", w["pred.nc"], "--threads", "1"],
        ["reference", "--config", c, "--samples", w["samples.nc"], "--out", w["ref.nc"]],
        ["evaluate", "--config", c, "--prediction", w["pred.nc"], "--reference", w["ref.nc"],
         "--out-nc", w["m.nc"], "--out-csv", w["m.csv"]],
        ["report", "--prediction", w["pred.nc"], "--reference", w["ref.nc"], "--metrics", w["m.nc"],
         "--training", f"{d}/training.csv", "--out-dir", w["R"]],
    ]


@pytest.mark.slow
def test_every_file_of_the_tiny_pipeline_gets_the_umask_mode(tmp_path):
    cfg = write_config(tmp_path / "config.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    # Popen's umask= applies in the child only: this process's umask is never touched. The two pipelines
    # are independent, so they run side by side (one core each).
    runs = {}
    for mask in (0o022, 0o002):
        work = tmp_path / f"umask-{mask:03o}"
        work.mkdir()
        log = tmp_path / f"umask-{mask:03o}.log"  # a file, not a pipe: an unread pipe could fill and block
        with open(log, "w") as fh:
            proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(_stages(cfg, work))],
                                    stdout=fh, stderr=subprocess.STDOUT, env=env, umask=mask)
        runs[mask] = work, proc, log
    try:
        for mask, (_, proc, log) in runs.items():
            proc.wait(timeout=300)
            assert proc.returncode == 0, f"umask {mask:03o}: {log.read_text()[-3000:]}"
    finally:
        for _, proc, _ in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for mask, (work, _, _) in runs.items():
        files = [p for p in work.rglob("*") if p.is_file()]
        names = {p.relative_to(work).as_posix() for p in files}
        for kind in ("samples.nc", "pred.nc", "ref.nc", "m.nc", "m.csv", "D/model.pt", "D/training.csv"):
            assert kind in names, f"{kind} not written; got {sorted(names)}"
        assert any(n.startswith("D/checkpoints/step-") and n.endswith(".pt") for n in names), sorted(names)
        assert any(n.startswith("R/") and n.endswith(".png") for n in names), sorted(names)
        # Every file, not just those listed: a writer that bypasses io.atomic_path shows up here too.
        wrong = {p.relative_to(work).as_posix(): oct(_mode(p)) for p in files if _mode(p) != 0o666 & ~mask}
        assert not wrong, f"umask {mask:03o}: expected {0o666 & ~mask:o}, got {wrong}"
        assert not [n for n in names if Path(n).name.startswith(".")], "temporary files left behind"
