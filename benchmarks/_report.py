"""The output convention shared by every benchmark: markdown on stdout, then one `RESULT` line per target."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def best_of(fn, repeats: int) -> float:
    """Least wall time of ``repeats`` calls of ``fn``: the run least disturbed by the rest of the machine."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cpu_description() -> str:
    """CPU model, core count and the vector extensions that matter for torch's CPU kernels (Linux)."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    extensions = ", ".join(f for f in wanted if f in flags) or "no AVX2"
    return f"{model} ({os.cpu_count()} cores; {extensions})"


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.results: list[tuple[str, float, str]] = []

    def emit(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def finish(self, out: Path | None) -> None:
        """Print the RESULT lines and, if asked, write the whole report to ``out``."""
        self.emit("")
        for name, value, target in self.results:
            self.emit(f"RESULT {name} {value:.4g} {target}")
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(self.lines) + "\n")
