"""Progress for long stages: a tqdm bar on a terminal, plain periodic lines in log files.

Snakemake's `log:` files capture stderr; tqdm's carriage returns would fill them with control
characters, so off a terminal the same information is printed as a few ordinary lines.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def track(items: Iterable[T], total: int, desc: str, enabled: bool = True, every: float = 0.1) -> Iterator[T]:
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, dynamic_ncols=True)
        return
    step = max(1, int(total * every))
    for k, item in enumerate(items, 1):
        yield item
        if k % step == 0 or k == total:
            print(f"{desc}: {k}/{total}", file=sys.stderr, flush=True)
