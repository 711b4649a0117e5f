"""Which samples each rank trains on: one global permutation per epoch, contiguous shards.

Every rank computes the same permutation from (seed, epoch), so no indices are communicated. The
global batch b is cut into p contiguous shards of floor(b/p) or ceil(b/p) samples: the first b mod p
ranks take one extra sample. Nothing is dropped or duplicated, and because the engine sums per-sample
losses and divides by b (not by the local size), uneven shards give exactly the global mean. This is
the seed's rule b_loc = floor(b/p) with the remainder spread instead of discarded.
"""

from __future__ import annotations

import numpy as np


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def shard_bounds(batch: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of ``rank``'s contiguous part of a global batch of ``batch`` samples."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} outside communicator of size {size}")
    base, extra = divmod(batch, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_indices(n: int, batch: int, step: int, seed: int, rank: int, size: int) -> np.ndarray:
    """Sample indices of ``rank``'s shard of global batch number ``step``.

    An epoch holds floor(n / batch) batches; the n mod batch samples left over after the last full
    batch of an epoch are skipped in that epoch (a different set each epoch, since the permutation
    changes).
    """
    per_epoch = n // batch
    if per_epoch == 0:
        raise ValueError(f"global batch {batch} exceeds the {n} training samples")
    epoch, k = divmod(step, per_epoch)
    perm = epoch_permutation(n, seed, epoch)
    start, stop = shard_bounds(batch, rank, size)
    return perm[k * batch + start : k * batch + stop]
