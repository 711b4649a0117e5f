"""The communicator: a thin layer over mpi4py's COMM_WORLD, and a serial stand-in.

Only this package imports mpi4py. One process started without mpiexec gets MPI's singleton
COMM_WORLD (size 1); if mpi4py itself is missing it gets ``SerialComm``, so P = 1 always works.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Protocol

import numpy as np


class Comm(Protocol):
    rank: int
    size: int

    def allreduce_sum_(self, buf: np.ndarray) -> None:
        """Sum ``buf`` over ranks, in place."""
        ...

    def allreduce_max_(self, buf: np.ndarray) -> None: ...

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        """Overwrite ``buf`` with root's copy, in place."""
        ...

    def barrier(self) -> None: ...

    def abort(self, code: int = 1) -> None:
        """Kill every rank (never returns): a failed rank must not leave the others waiting."""
        ...

    @property
    def local_size(self) -> int:
        """Ranks sharing this node (for dividing its cores)."""
        ...


class SerialComm:
    rank = 0
    size = 1
    local_size = 1

    def allreduce_sum_(self, buf: np.ndarray) -> None:
        pass

    def allreduce_max_(self, buf: np.ndarray) -> None:
        pass

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        pass

    def barrier(self) -> None:
        pass

    def abort(self, code: int = 1) -> None:
        sys.stderr.flush()
        os._exit(code)


class MPIComm:
    def __init__(self, comm) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self._comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._local_size: int | None = None

    @property
    def local_size(self) -> int:
        # Collective: computed on first use, never on an error path where other ranks may be stuck.
        if self._local_size is None:
            self._local_size = self._comm.Split_type(self._MPI.COMM_TYPE_SHARED).Get_size()
        return self._local_size

    def allreduce_sum_(self, buf: np.ndarray) -> None:
        if self.size > 1:
            self._comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)

    def allreduce_max_(self, buf: np.ndarray) -> None:
        if self.size > 1:
            self._comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.MAX)

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        if self.size > 1:
            self._comm.Bcast(buf, root=root)

    def barrier(self) -> None:
        self._comm.Barrier()

    def abort(self, code: int = 1) -> None:
        sys.stderr.flush()
        sys.stdout.flush()
        self._comm.Abort(code)


ABORT_DRAIN_SECONDS = 0.5


def abort_world(code: int = 1) -> None:
    """Abort every rank of COMM_WORLD if running under MPI with several ranks; otherwise return.

    Makes no collective call, so it is safe while other ranks are blocked in one.
    """
    try:
        from mpi4py import MPI
    except ImportError:
        return
    if MPI.Is_initialized() and MPI.COMM_WORLD.Get_size() > 1:
        sys.stderr.flush()
        sys.stdout.flush()
        # mpiexec forwards a rank's output through its proxy, and Abort tears the job down at once: lines still
        # in the pipe were lost (a CI run saw a traceback cut after its first line). Let them drain first.
        time.sleep(ABORT_DRAIN_SECONDS)
        MPI.COMM_WORLD.Abort(code)


def world() -> Comm:
    """COMM_WORLD when mpi4py is importable, else a serial communicator."""
    try:
        from mpi4py import MPI
    except ImportError:
        return SerialComm()
    return MPIComm(MPI.COMM_WORLD)
