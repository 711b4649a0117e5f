"""The output convention shared by every benchmark: markdown on stdout, then one `RESULT` line per target."""

from __future__ import annotations

from pathlib import Path


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
