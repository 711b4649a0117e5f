"""Run under mpiexec with `diffnet train` arguments: rank 1 raises at its 3rd loss evaluation.

The other rank is then blocked in an all-reduce; the CLI must abort the whole job instead of hanging.
"""

import sys

from diffnet import cli
from diffnet.parallel import world
from diffnet.problems.burgers import Burgers

calls = {"n": 0}
original = Burgers.loss_terms


def failing_loss_terms(self, *args, **kwargs):
    calls["n"] += 1
    if world().rank == 1 and calls["n"] == 3:
        raise RuntimeError("injected failure on rank 1")
    return original(self, *args, **kwargs)


Burgers.loss_terms = failing_loss_terms
sys.exit(cli.main(sys.argv[1:]))
