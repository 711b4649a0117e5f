"""`diffnet archive`: pack one run with a sha256 MANIFEST, and verify such an archive later.

An archive is a plain directory (easy to rsync or tar), built under a temporary name and renamed when
complete, so a killed archive job never leaves something that looks whole.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

MANIFEST = "MANIFEST"
PATTERNS = ("*.nc", "*.csv", "*.pt", "config.yaml", "report/*", "logs/*", "benchmarks/*")


class ArchiveError(ValueError):
    pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_files(run_dir: Path) -> list[Path]:
    files = sorted({p for pattern in PATTERNS for p in run_dir.glob(pattern) if p.is_file()
                    and not p.name.startswith(".")})
    return [p.relative_to(run_dir) for p in files]


def archive(run_dir: str | Path, dest: str | Path) -> Path:
    run_dir, dest = Path(run_dir), Path(dest)
    if not (run_dir / "metrics.nc").is_file() or not (run_dir / "model.pt").is_file():
        raise ArchiveError(f"'{run_dir}' is not a finished run (needs model.pt and metrics.nc); "
                           "run the pipeline first")
    if dest.exists():
        raise ArchiveError(f"destination '{dest}' already exists; choose a new path")
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    lines = []
    for rel in run_files(run_dir):
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run_dir / rel, target)
        lines.append(f"{sha256(target)}  {(target).stat().st_size}  {rel.as_posix()}")
    (tmp / MANIFEST).write_text("\n".join(lines) + "\n")
    os.replace(tmp, dest)
    return dest


def verify(dest: str | Path) -> list[str]:
    """Problems found (empty when the archive is intact): missing, modified or unlisted files."""
    dest = Path(dest)
    manifest = dest / MANIFEST
    if not manifest.is_file():
        raise ArchiveError(f"'{dest}' has no {MANIFEST}; it was not written by `diffnet archive`")
    problems, listed = [], set()
    for n, line in enumerate(manifest.read_text().splitlines(), 1):
        try:
            digest, size, rel = line.split("  ", 2)
        except ValueError:
            problems.append(f"{MANIFEST} line {n} is malformed")
            continue
        listed.add(rel)
        path = dest / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
        elif path.stat().st_size != int(size) or sha256(path) != digest:
            problems.append(f"modified: {rel}")
    for path in sorted(dest.rglob("*")):
        rel = path.relative_to(dest).as_posix()
        if path.is_file() and rel != MANIFEST and rel not in listed:
            problems.append(f"not in {MANIFEST}: {rel}")
    return problems
