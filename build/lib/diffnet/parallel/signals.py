"""Turn SIGTERM / SIGUSR1 (Slurm's warning before a time limit or preemption) into a clean stop.

The handler only records the request. The training loop folds the flag into the per-step all-reduce
of the loss, so every rank sees the same decision at the same step, writes (rank 0) one checkpoint,
and exits with ``EXIT_CODE``, distinct from success and from failure.
"""

from __future__ import annotations

import signal

EXIT_CODE = 75  # EX_TEMPFAIL: "try again later", which is what a resumable stop is.


class StopRequest:
    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGUSR1)):
        self.signum: int | None = None
        self._previous = {}
        for s in signals:
            self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
