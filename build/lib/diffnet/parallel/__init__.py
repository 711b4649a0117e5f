"""Everything MPI (DeepFusion's data parallelism), kept out of the model, the loss and the problems.

- ``comm``: the communicator (works for one process without mpiexec), abort-on-error
- ``sharding``: global seeded permutations and each rank's contiguous shard of a global batch
- ``batchnorm``: batch norm whose statistics span all ranks (torch's SyncBatchNorm is CUDA-only)
- ``gradients``: a flat gradient buffer the parameters' ``.grad`` point into, all-reduced in place
- ``threads``: torch intra-op threads per rank, never oversubscribing by default
- ``signals``: SIGTERM/SIGUSR1 turned into a stop that every rank agrees on
"""

from diffnet.parallel.batchnorm import SyncBatchNorm2d, convert_sync_batchnorm
from diffnet.parallel.comm import Comm, world
from diffnet.parallel.gradients import FlatGradients, broadcast_parameters
from diffnet.parallel.sharding import epoch_permutation, shard_bounds, shard_indices
from diffnet.parallel.signals import StopRequest
from diffnet.parallel.threads import configure_threads

__all__ = [
    "Comm",
    "FlatGradients",
    "StopRequest",
    "SyncBatchNorm2d",
    "broadcast_parameters",
    "configure_threads",
    "convert_sync_batchnorm",
    "epoch_permutation",
    "shard_bounds",
    "shard_indices",
    "world",
]
