"""Progress for long work: a tqdm bar on a terminal, plain periodic lines in log files.

Snakemake's `log:` files capture stderr; tqdm's carriage returns would fill them with control
characters, so off a terminal the same information is printed as a few ordinary lines: the first
item (the work has started), about every tenth (or twentieth) of the total, and the last.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


class StepMeter:
    """Counts ``initial`` .. ``total``; ``update(done, text)`` after each item, ``close()`` at the end."""

    def __init__(self, total: int, initial: int, label: str, *, enabled: bool = True, every: float = 0.1):
        self.total, self.initial, self.label, self.enabled = total, initial, label, enabled
        self.every = max(1, int(total * every))
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=initial, desc=label, dynamic_ncols=True)

    def update(self, done: int, text: str = "") -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if text:
                self.bar.set_postfix_str(text)
        elif done == self.initial + 1 or done % self.every == 0 or done == self.total:
            print(f"{self.label} {done}/{self.total}{' ' + text if text else ''}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def track_steps(total: int, initial: int, label: str, enabled: bool = True, every: float = 0.05) -> StepMeter:
    """Progress of a loop the caller drives (training: the loss beside the step count)."""
    return StepMeter(total, initial, label, enabled=enabled, every=every)


def track(items: Iterable[T], total: int, desc: str, enabled: bool = True, every: float = 0.1) -> Iterator[T]:
    """Progress of an iterable: yields its items."""
    meter = StepMeter(total, 0, f"{desc}:", enabled=enabled, every=every)
    try:
        for k, item in enumerate(items, 1):
            yield item
            meter.update(k)
    finally:
        meter.close()
