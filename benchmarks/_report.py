"""The output convention shared by every benchmark: markdown on stdout, then one `RESULT` line per target."""

from __future__ import annotations

import time
from pathlib import Path

from diffnet.machine import cpu_description

__all__ = ["Report", "best_of", "cpu_description"]


def best_of(fn, repeats: int) -> float:
    """Least wall time of ``repeats`` calls of ``fn``: the run least disturbed by the rest of the machine."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.results: list[tuple[str, float, str]] = []

    def emit(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def finish(self, out: Path | None) -> None:
        """Print the RESULT lines and, if asked, write the whole report to ``out``.

        Every report names its machine: figures are only comparable within one machine and one run."""
        if not any(line.startswith("Machine: ") for line in self.lines):
            self.emit(f"\nMachine: {cpu_description()}.")
        self.emit("")
        for name, value, target in self.results:
            self.emit(f"RESULT {name} {value:.4g} {target}")
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(self.lines) + "\n")
